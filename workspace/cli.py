"""The ``glassbox`` command line. Every long step shows a progress bar; errors are one clear line.

    glassbox demo [--workspace DIR] [--force] [--retrain [--seed N] [--ship]]
    glassbox check --cohort MANIFEST [--model MODEL]
    glassbox predict --model MODEL --cohort MANIFEST [--out FILE.csv|.parquet]
    glassbox explain --model MODEL --cohort MANIFEST --case ID --method NAME [--target CLASS] [--out FILE.npy]
    glassbox subgroups --model MODEL --cohort MANIFEST --by sex,site [--threshold T] [--out table.csv]
                       [--max-gap METRIC=VALUE]
    glassbox uncertainty --model MODEL [--model MODEL2 ...] --cohort MANIFEST --method mc_dropout|tta|ensemble
    glassbox tcav --model MODEL --cohort MANIFEST --concept NAME[,NAME] [--layer L] [--class C] [--out FILE.csv]
    glassbox serve [--workspace DIR ...] [--model-root DIR ...] [--data-root DIR ...] [--port N]

MODEL is a model folder (with model.json) or the json; the demo's are ``<workspace>/models/v1`` and ``v2``, its
cohort ``<workspace>/cohorts/demo2d/manifest.csv``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from data_adapters.errors import GlassboxError, InvalidInputError
from data_adapters.records import ModelHandle
from evaluation.cohort_summary import with_bands
from evaluation.metrics import METRICS
from evaluation.subgroups import board_view, labelled_frame, subgroup_report
from explainers.device import best_device
from explainers.saliency import SALIENCY_METHODS
from explainers.uncertainty import METHODS as UNCERTAINTY_METHODS
from workspace.demo import TRAINING_SEED, build_demo, ship_weights
from workspace.store import Workspace, default_workspace

#: exit codes of a release gate (``subgroups --max-gap``): 0 pass, 1 a gap above its limit, 2 bad input or another
#: error, 3 could not judge (fewer than two groups large enough to compare): never read as a pass
EXIT_FAIL = 1
EXIT_COULD_NOT_JUDGE = 3
GAP_METRICS = [*METRICS.names(), "equalized_odds_difference", "demographic_parity_difference"]

Progress = Callable[[int, int], None]


class _Bars:
    """One tqdm bar per named step, fed by ``progress(done, total)`` callbacks."""

    def __init__(self) -> None:
        self.bars: list[tqdm] = []

    def __call__(self, name: str) -> Progress:
        bar = tqdm(desc=name, unit="it", leave=True, file=sys.stderr, dynamic_ncols=True)
        self.bars.append(bar)

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()

        return update

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


@contextlib.contextmanager
def bars() -> Iterator[_Bars]:
    b = _Bars()
    try:
        yield b
    finally:
        b.close()


def _model(path: str, workspace: str | Path) -> ModelHandle:
    handle = Workspace(workspace).load_model(path)  # bundles only from the workspace's model roots
    handle.module.to(best_device())
    return handle


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _out_path(text: str | None) -> Path | None:
    """An output file whose folder exists (named in the error otherwise)."""
    if text is None:
        return None
    out = Path(text)
    if not out.parent.is_dir():
        raise InvalidInputError(f"--out {text}: folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise InvalidInputError(f"--out {text} is a folder; give a file name")
    return out


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"--param {pair!r}: expected NAME=VALUE, e.g. n_steps=100")
        out[name.strip()] = value.strip()
    return out


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``) prefixed with
    a quote; numbers are left alone (OWASP CSV injection)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA) else v)
    return out


def _write_table(frame: pd.DataFrame, out: Path) -> None:
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        spreadsheet_safe(frame).to_csv(out, index=False)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.ship and not args.retrain:
        raise InvalidInputError("--ship writes newly trained weights into the source tree: it needs --retrain")
    with bars() as step:
        build_demo(args.workspace, force=args.force, retrain=args.retrain, seed=args.seed, step=step,
                   log=lambda m: print(m, file=sys.stderr))
    if args.ship:
        print(f"shipped weights: {ship_weights(args.workspace)}", file=sys.stderr)
    print(args.workspace)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    handle = _model(args.model, args.workspace) if args.model else None
    with bars() as step:
        cohort = Workspace(args.workspace).load_cohort(args.cohort, class_names=handle.class_names if handle else None,
                               input_shape=handle.preprocessing.accepts if handle else None,
                               progress=step("checking rows"))
    report = cohort.report
    print(report.summary())
    if handle:
        print(f"checked against model {handle.label}: {handle.preprocessing.describe()}, "
              f"classes {list(handle.class_names)}")
    for note in report.notes:
        print(f"note: {note}")
    for r in report.rejections:
        print(f"rejected {r}")
    return 0 if len(cohort) else 1


def cmd_predict(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    with bars() as step:
        cohort = Workspace(args.workspace).load_cohort(args.cohort, class_names=handle.class_names, input_shape=handle.preprocessing.accepts,
                               progress=step("loading cohort"))
        if cohort.report.n_rejected:
            print(f"warning: {cohort.report.summary()} (see `glassbox check`)", file=sys.stderr)
        if not len(cohort):
            raise InvalidInputError(f"no case of {args.cohort} loaded ({cohort.report.summary()}); nothing to "
                                    "predict: see `glassbox check`")
        frame = Workspace(args.workspace).predictions(handle, cohort, progress=step("predicting"))
    frame = frame.rename(columns={f"p_{k}": f"p_{name}" for k, name in enumerate(handle.class_names)})
    if out:
        _write_table(frame, out)
        print(f"wrote {len(frame)} predictions to {out}")
    else:
        print(spreadsheet_safe(frame).to_csv(index=False), end="")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    SALIENCY_METHODS.get(args.method).params(_params(args.param))  # bad names and values fail before any loading
    out = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    cohort = Workspace(args.workspace).load_cohort(args.cohort, class_names=handle.class_names,
                                                   input_shape=handle.preprocessing.accepts)
    case = cohort.case(args.case)
    target = args.target if args.target is not None else handle.n_classes - 1
    target = int(target) if str(target).isdigit() else target
    params = _params(args.param)
    with bars() as step:
        (a,) = Workspace(args.workspace).attributions(handle, [case], args.method, target, params,
                                                      progress=step(args.method))
    out = out or Path(f"{case.case_id}_{a.method}.npy")
    np.save(out, a.array)
    delta = f", convergence delta {a.convergence_delta:.3g}" if a.convergence_delta is not None else ""
    print(f"wrote {a.method} map {a.array.shape} for case {case.case_id}, class "
          f"{handle.class_names[a.target]!r}, to {out} ({a.seconds:.2f} s{delta})")
    return 0


def _where(frame, clauses: list[str]):
    for clause in clauses:
        name, sep, value = clause.partition("=")
        if not sep or name not in frame.columns:
            raise InvalidInputError(f"--where {clause!r}: expected ATTRIBUTE=VALUE with an attribute of the cohort "
                                    f"({', '.join(c for c in frame.columns if c not in ('case_id', 'label'))})")
        frame = frame[frame[name].astype(str) == value]
    return frame


def _gate(clauses: list[str]) -> dict[str, float]:
    gates = {}
    for clause in clauses:
        name, sep, value = clause.partition("=")
        try:
            gates[name] = float(value)
        except ValueError:
            raise InvalidInputError(f"--max-gap {clause!r}: expected METRIC=NUMBER, e.g. sensitivity=0.1") from None
        if not sep or name not in GAP_METRICS:
            raise InvalidInputError(f"--max-gap {clause!r}: metric must be one of {', '.join(GAP_METRICS)}")
    return gates


def cmd_subgroups(args: argparse.Namespace) -> int:
    gates = _gate(args.max_gap)
    out = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    with bars() as step:
        cohort = Workspace(args.workspace).load_cohort(args.cohort, class_names=handle.class_names, input_shape=handle.preprocessing.accepts,
                               progress=step("loading cohort"))
        preds = Workspace(args.workspace).predictions(handle, cohort, progress=step("predicting"))
    k = handle.class_index(int(args.target) if str(args.target).isdigit() else args.target) \
        if args.target is not None else handle.n_classes - 1
    frame = _where(labelled_frame(with_bands(cohort.frame()), preds, k), args.where)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise InvalidInputError(f"--threshold {args.threshold:g}: a threshold is a probability, between 0 and 1")
    threshold, described = args.threshold, None
    if threshold is None and args.rule is None:  # the model's shared operating threshold, as every page uses
        point = Workspace(args.workspace).operating_point(handle, cohort, k)
        threshold, described = point.threshold, point.describe()
    report = subgroup_report(frame, args.by.split(","), class_index=k, threshold=threshold, rule=args.rule or "youden",
                             n_boot=args.n_boot, min_n=args.min_n, seed=args.seed)
    table = board_view(report.table, args.board) if args.board else report.table
    print(f"{handle.label}, class {handle.class_names[k]!r}, {len(frame)} labelled cases, threshold "
          f"{described or f'{report.threshold:.3f} ({report.threshold_rule})'}, {report.n_boot} stratified "
          "bootstrap resamples")
    shown = ["group", "n", "events", "auroc", "sensitivity", "specificity", "ece"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(_with_intervals(report.table, shown).to_string(index=False))
    for flag in report.flags():
        print(f"gap: {flag}")
    for row in report.gaps[report.gaps["note"] != ""].itertuples():
        print(f"gap note: {row.metric}: {row.note}")
    print(f"judgement: {report.judgement()}")
    for note in report.table.loc[report.table["notes"] != "", ["group", "notes"]].itertuples():
        print(f"note: {note.group}: {note.notes}")
    if out:
        spreadsheet_safe(table).to_csv(out, index=False)
        spreadsheet_safe(report.gaps).to_csv(out.with_suffix(".gaps.csv"), index=False)
        print(f"wrote {out} and {out.with_suffix('.gaps.csv')}")
    failed, unjudged = 0, 0
    for metric, limit in gates.items():
        row = report.gaps.set_index("metric").loc[metric]
        if row["groups_compared"] < 2 or pd.isna(row["difference_lo"]):
            print(f"COULD NOT JUDGE: {metric}: {row['groups_compared']} of {row['groups']} group(s) large enough "
                  f"to compare (needs 2; --min-n {report.min_n}, ≥{report.min_events} cases of each class)")
            unjudged += 1
        elif row["difference_lo"] > limit:
            print(f"FAIL: {metric} gap {row['difference']:.3f} ({row['higher_group']} vs {row['lower_group']}), "
                  f"95% interval {row['difference_lo']:.3f} to {row['difference_hi']:.3f} (simultaneous over "
                  f"{row['pairs']} pair(s)) lies above {limit}")
            failed += 1
        else:
            print(f"pass: {metric} gap interval does not lie above {limit} ({row['groups_compared']} groups compared)")
    if failed:
        return EXIT_FAIL
    return EXIT_COULD_NOT_JUDGE if unjudged else 0


def _with_intervals(table, columns):
    out = table[[c for c in columns if c in table]].copy()
    for c in columns:
        if f"{c}_lo" in table:
            out[c] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(v) else "n/a"
                      for v, lo, hi in zip(table[c], table[f"{c}_lo"], table[f"{c}_hi"])]
    return out


def cmd_uncertainty(args: argparse.Namespace) -> int:
    out_path = _out_path(args.out)
    handles = [_model(m, args.workspace) for m in args.model]
    first = handles[0]
    with bars() as step:
        cohort = Workspace(args.workspace).load_cohort(args.cohort, class_names=first.class_names, input_shape=first.preprocessing.accepts,
                               progress=step("loading cohort"))
        frame = Workspace(args.workspace).uncertainty(handles, cohort, args.method, samples=args.samples,
                                                      seed=args.seed, progress=step(args.method))
    out = out_path or Path(f"uncertainty_{args.method}.csv")
    _write_table(frame, out)
    print(f"wrote {len(frame)} cases to {out}: mean entropy {frame['entropy'].mean():.3f} nats, "
          f"mean mutual information {frame['mutual_information'].mean():.4f}")
    return 0


def cmd_tcav(args: argparse.Namespace) -> int:
    out_path = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    with bars() as step:
        cohort = Workspace(args.workspace).load_cohort(args.cohort, class_names=handle.class_names, input_shape=handle.preprocessing.accepts,
                               progress=step("loading cohort"))
        target = (int(args.target) if str(args.target).isdigit() else args.target) if args.target else None
        frame = Workspace(args.workspace).concept_scores(
            handle, cohort, Path(args.cohort).resolve().parent, [c.strip() for c in args.concept.split(",")],
            args.layer.split(",") if args.layer else None, target, n_random=args.random, seed=args.seed,
            progress=step("TCAV"))
    print(f"{handle.label}, class {handle.class_names[int(frame['target'].iloc[0])]!r}, {args.random} random "
          f"concepts, Holm-corrected across {len(frame)} tests")
    for r in frame.itertuples():
        print(f"{r.concept:>14} @ {r.layer:<22} TCAV {r.score:.2f} ± {r.spread:.2f} (random {r.null_score:.2f} ± "
              f"{r.null_spread:.2f}), CAV acc {r.cav_accuracy:.2f}, p {r.p_value:.2g}, adjusted {r.p_adjusted:.2g}: "
              f"{'SIGNIFICANT' if r.significant else 'not significant'}")
    if out_path:
        _write_table(frame, out_path)
        print(f"wrote {out_path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parent.parent / "app.py"
    workspaces = [Path(w).resolve() for w in (args.workspace or [default_workspace()])]
    for w in workspaces:
        Workspace(w).remove_orphans()
    env = {**os.environ, "GLASSBOX_WORKSPACE": str(workspaces[0]),
           "GLASSBOX_WORKSPACES": os.pathsep.join(map(str, workspaces))}
    for name, given in (("GLASSBOX_MODEL_ROOTS", args.model_root), ("GLASSBOX_DATA_ROOTS", args.data_root)):
        if given:
            env[name] = os.pathsep.join(str(Path(p).resolve()) for p in given)
    return subprocess.call([sys.executable, str(app), "--server.address", args.address,
                            "--server.port", str(args.port), "--server.headless", "true",
                            "--browser.gatherUsageStats", "false"], env=env)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glassbox", description="Explainability dashboard for clinical model review.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_: str, *, workspace: bool = True) -> argparse.ArgumentParser:
        escaped = help_.replace("%", "%%")  # argparse formats help with %
        s = sub.add_parser(name, help=escaped, description=escaped)
        if workspace:
            s.add_argument("--workspace", default=str(default_workspace()),
                           help="workspace folder (caches; the demo's models and cohorts)")
        s.set_defaults(fn=fn)
        return s

    s = add("demo", cmd_demo, "build the demo workspace from the shipped weights (reuses what exists), then check "
                              "its planted properties")
    s.add_argument("--force", action="store_true", help="rebuild everything")
    s.add_argument("--retrain", action="store_true", help="train the demo models here instead of using the "
                                                          "shipped weights (the same checks run)")
    s.add_argument("--seed", type=int, default=TRAINING_SEED, help="training seed with --retrain")
    s.add_argument("--ship", action="store_true", help="maintainers: after --retrain, replace the shipped weights")
    s = add("check", cmd_check, "validate a cohort (and its fit to a model); print the load report")
    s.add_argument("--cohort", required=True)
    s.add_argument("--model")
    s = add("predict", cmd_predict, "write per-case class probabilities")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--out")
    s = add("explain", cmd_explain, "write one saliency map as .npy (C, *spatial)")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--case", required=True)
    s.add_argument("--method", required=True, help=", ".join(SALIENCY_METHODS.names()))
    s.add_argument("--target", help="class index or name (default: the last class)")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    s.add_argument("--out")
    s = add("subgroups", cmd_subgroups, "subgroup performance with 95% bootstrap intervals and between-group gaps")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--by", required=True, help="attribute(s), comma-separated for intersections, e.g. sex,site")
    s.add_argument("--target", help="class index or name (default: the last class)")
    s.add_argument("--threshold", type=float, help="operating threshold (default: the model's shared one, as the "
                                                   "pages use: settings.json operating_point, else Youden on the "
                                                   "validation or test split)")
    s.add_argument("--rule", help="re-choose the threshold on the cases given: youden | sensitivity=0.9 | "
                                  "specificity=0.9")
    s.add_argument("--where", action="append", default=[], metavar="ATTR=VALUE", help="keep only these cases")
    s.add_argument("--n-boot", type=_positive_int, default=1000)
    s.add_argument("--min-n", type=_positive_int, default=30, help="groups smaller than this are flagged, not compared")
    s.add_argument("--board", type=_positive_int, metavar="K",
                   help="write the ethics-board view: groups under K suppressed")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-gap", action="append", default=[], metavar="METRIC=VALUE",
                   help="release gate: exit 1 when the gap's simultaneous 95%% interval lies above VALUE, 3 when "
                        "fewer than two groups could be compared (could not judge), 0 when it passes")
    s.add_argument("--out")
    s = add("uncertainty", cmd_uncertainty, "write per-case uncertainty (mean, spread, entropy, mutual information)")
    s.add_argument("--model", required=True, action="append", help="repeat for an ensemble")
    s.add_argument("--cohort", required=True)
    s.add_argument("--method", required=True, choices=list(UNCERTAINTY_METHODS))
    s.add_argument("--samples", type=_positive_int, help="draws per case (default 16 for mc_dropout, 8 for tta)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out")
    s = add("tcav", cmd_tcav, "concept attributions (TCAV) with significance against random concepts")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--concept", required=True, help="names (folders under the cohort's concepts/), folders, or "
                                                    "filters like 'site == B'; comma-separated")
    s.add_argument("--layer", help="layer name(s), comma-separated (default: the network's usual choices)")
    s.add_argument("--target", "--class", dest="target", help="class index or name (default: the last class)")
    s.add_argument("--random", type=_positive_int, default=16,
                   help="random concepts for the significance test (with 8, the random-vs-random spread hides real "
                        "effects)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out")
    s = add("serve", cmd_serve, "start the dashboard on this machine; what it may open and trust is set here, "
                                "never in the browser", workspace=False)
    s.add_argument("--workspace", action="append", metavar="DIR",
                   help="a workspace the app may open (repeat for several; default: the demo workspace)")
    s.add_argument("--model-root", action="append", metavar="DIR",
                   help="a folder whose MONAI bundles may run their config code (repeat; none by default)")
    s.add_argument("--data-root", action="append", metavar="DIR",
                   help="a folder manifests' images and concept folders may come from besides the cohort's own")
    s.add_argument("--address", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8501)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except GlassboxError as e:
        print(f"glassbox {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
