"""The ``glassbox`` command line. Every long step shows a progress bar; errors are one clear line.

    glassbox demo [--workspace DIR] [--force] [--retrain [--seed N] [--ship]] [--scale N [--distinct U]]
    glassbox check --cohort MANIFEST [--model MODEL]
    glassbox predict --model MODEL --cohort MANIFEST [--out FILE.csv|.parquet]
    glassbox explain --model MODEL --cohort MANIFEST --case ID --method NAME [--target CLASS] [--out FILE.npy]
    glassbox subgroups --model MODEL --cohort MANIFEST --by sex,site [--threshold T] [--out table.csv]
                       [--max-gap METRIC=VALUE] [--board [K]]
    glassbox uncertainty --model MODEL [--model MODEL2 ...] --cohort MANIFEST --method mc_dropout|tta|ensemble
    glassbox tcav --model MODEL --cohort MANIFEST --concept NAME[,NAME] [--layer L] [--class C] [--out FILE.csv]
    glassbox compare --baseline MODEL --candidate MODEL --cohort MANIFEST [--by site] [--where split=test]
                     [--max-regression auroc=0.02,sensitivity=0.03] [--out deltas.csv] [--flips flips.csv]
                     [--region x0,y0,x1,y1|demo-marker --perturb mean|blur|noise|mirror]
    glassbox trust --model MODEL --cohort MANIFEST [--methods saliency,grad_cam] [--cases N] [--by site] [--out F]
    glassbox serve [--workspace DIR ...] [--model-root DIR ...] [--data-root DIR ...] [--port N]
                   [--auth single|local|oidc] [--board-k K]
    glassbox user add NAME --role radiologist|developer|board|admin [--no-password] | list | role NAME --role R
                  | password NAME | disable NAME | enable NAME
    glassbox audit verify | export [--out FILE.csv] [--actor NAME] [--action NAME] [--since DATE]
    glassbox verify-report FILE.html|FILE.pdf [--workspace DIR]
    glassbox verdicts [--model MODEL] [--out FILE.csv]
    glassbox monitor --model MODEL --reference COHORT --current COHORT [--window acquired_month]
                     [--alert mmd_p=0.01] [--out windows.csv]
    glassbox precompute --model MODEL --cohort MANIFEST [--methods ig,grad_cam] [--uncertainty mc_dropout]
                        [--target CLASS] [--shard-size N] [--ray auto|ADDRESS [--workers N]]
    glassbox report --model MODEL --cohort MANIFEST [--compare BASELINE] [--by site] [--k K] [--monitor COHORT]
                    --out report.pdf|.html
                    [--expect HASH]

Exit codes: 0 pass, 1 shown beyond a limit (or an alert, a changed record), 2 bad input, 3 could not judge, 4 not
shown: the command maps the Verdict :mod:`evaluation.gates` makes (:func:`exit_code`), never judges itself. K is the
board's smallest shown group: the operator's (``serve --board-k``, ``$GLASSBOX_BOARD_K``, default 10) unless a
larger one is asked for.

MODEL is a model folder (with model.json), the json, or the name of a version in the workspace (``--model v2``);
MANIFEST a manifest, a DICOM folder, or the name of a cohort in the workspace (``--cohort demo2d``). A multi-class
model is judged by its top class against the label; ``--target CLASS`` views one class versus the rest.
"""
from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from data_adapters.errors import GlassboxError, InvalidInputError
from data_adapters.records import ModelHandle
from data_adapters.tables import ENTROPY, MUTUAL_INFORMATION, mean_column, probability_column, std_column
from evaluation.calibration import ece_text
from evaluation.cohort_summary import board_decision, held_out_split, with_bands
from evaluation.explanation_quality import in_words, quality_summary
from evaluation.gates import (ALERTS, alert_levels, cav_gate, drift_gate, gap_limits, integrity_verdict, loaded_verdict,
                              margins, noninferiority_gate, same_report, shown_gaps)
from evaluation.inference import Verdict
from evaluation.metrics import ONE_VS_REST, TOP_CLASS, gap_metric_names, metric_names
from evaluation.multiclass import confusion_by_group, multiclass_report
from evaluation.outcomes import judged_class, uses_top_class
from evaluation.subgroups import labelled_frame, subgroup_report
from evaluation.uncertainty_report import uncertainty_report
from evaluation.version_comparison import comparable, mcnemar_design
from explainers.device import best_device
from explainers.concepts import default_target
from explainers.perturbation import PERTURBATIONS
from explainers.inference import explained_class, predict_cases
from explainers.saliency import SALIENCY_METHODS
from workspace.selection import board_view, board_where, group_by, select_where
from workspace.settings import Operator, operator_settings, safe_file_stem
from explainers.uncertainty import METHODS as UNCERTAINTY_METHODS
from data_adapters.demo.synthesis import generate_scale_cohort
from workspace.demo import TRAINING_SEED, build_demo, ship_weights
from workspace.access import AUTH_MODES, ROLES, Users, operator
from workspace.review import Record, record_path, spreadsheet_safe
from workspace.cache import remove_orphans, write_file
from workspace.comparison import compare
from workspace.concepts import concept_scores
from workspace.monitoring import monitor
from workspace.region_test import region_test
from workspace.store import Workspace, default_workspace
from workspace.trust import explanation_quality
from workspace.uncertainty import uncertainty

#: exit codes of a release gate (``subgroups --max-gap``, ``compare --max-regression``): 0 pass (shown within the
#: limit), 1 fail (shown beyond it), 2 bad input or another error, 3 could not judge (too few cases to test),
#: 4 not shown (neither shown within nor beyond): only 0 is a pass
EXIT_FAIL = 1
EXIT_COULD_NOT_JUDGE = 3
EXIT_NOT_SHOWN = 4
#: a gate's :class:`evaluation.inference.Verdict` outcome → exit code, and the word each of its lines starts with
EXIT_CODES = {"pass": 0, "fail": EXIT_FAIL, "could not judge": EXIT_COULD_NOT_JUDGE, "not shown": EXIT_NOT_SHOWN}
GATE_LABELS = {"pass": "pass", "fail": "FAIL", "could not judge": "COULD NOT JUDGE", "not shown": "NOT SHOWN"}


def exit_code(verdict: Verdict) -> int:
    """The one map from a Verdict (made in ``evaluation/``, :mod:`evaluation.gates`) to the command's exit code."""
    return EXIT_CODES[verdict.outcome]


def _print_gate(verdict: Verdict) -> int:
    """A gate as the command states it: its error control, then each part's reasons under its outcome; the exit
    code of :func:`exit_code`."""
    if verdict.error_control:
        print(f"gate: {verdict.error_control}")
    for part in verdict.parts or (verdict,):
        for reason in part.reasons:
            print(f"{GATE_LABELS[part.outcome]}: {reason}")
    return exit_code(verdict)

Progress = Callable[[int, int], None]


class _Bars:
    """One progress bar per named step, fed by ``progress(done, total)`` callbacks. On a terminal, a live tqdm bar;
    otherwise (a log file, CI) one line per step when it ends, not one per refresh."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bars: list[tqdm] = []

    def __call__(self, name: str) -> Progress:
        if not self.live:
            started = time.perf_counter()
            done_once = []

            def line(done: int, total: int) -> None:
                if done >= total and not done_once:
                    done_once.append(True)
                    print(f"{name}: {done}/{total} in {time.perf_counter() - started:.1f} s", file=self.stream)

            return line
        bar = tqdm(desc=name, unit="it", leave=True, file=self.stream, dynamic_ncols=True)
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
    """A model by path, or by name within ``--workspace`` (``--model v2``); bundles only from its model roots."""
    ws = Workspace(workspace)
    handle = ws.load_model(ws.resolve_model(path))
    handle.module.to(best_device())
    return handle


def _cohort(args: argparse.Namespace, handle: ModelHandle | None, progress: Progress | None = None):
    """``--cohort`` by path or by name within ``--workspace``, as ``handle`` sees it."""
    ws = Workspace(args.workspace)
    path = ws.resolve_cohort(args.cohort)
    if handle is None:
        return ws.load_cohort(path, progress=progress)
    return ws.cohort_for(handle, path, progress=progress)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _count(high: int, why: str):
    """An argparse type: a whole number from 1 to ``high`` (a count whose time or memory grows with it), the limit
    and its reason named when exceeded."""
    def parse(text: str) -> int:
        value = _positive_int(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"{value} is over the limit of {high} ({why})")
        return value
    return parse


#: upper bounds of counts whose time grows with them, stated in the refusal
_RESAMPLES = _count(100_000, "each resample recomputes every metric of every group")
_RANDOM_CONCEPTS = _count(1_000, "each random concept trains one linear classifier per layer")
_SAMPLED_CASES = _count(10_000, "every check runs on each sampled case")


#: the largest seed every generator Glassbox seeds accepts (numpy's legacy RandomState takes 32 bits)
MAX_SEED = 2 ** 32 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} must be a whole number from 0 to {MAX_SEED}")
    return value


def _attribute_list(text: str) -> str:
    """``--by a,b``: each attribute once (``site,site`` would group a column against itself)."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, twice))} named more than once in {text!r}; name each "
                                         "attribute once")
    return text


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


def _write_table(frame: pd.DataFrame, out: Path) -> None:
    """A table to ``--out``, atomically (a full disk is a named error and leaves no partial file)."""
    if out.suffix == ".parquet":
        write_file(out, frame.to_parquet(index=False))
    else:
        write_file(out, spreadsheet_safe(frame).to_csv(index=False))


def cmd_demo(args: argparse.Namespace) -> int:
    if args.ship and not args.retrain:
        raise InvalidInputError("--ship writes newly trained weights into the source tree: it needs --retrain")
    with bars() as step:
        build_demo(args.workspace, force=args.force, retrain=args.retrain, seed=args.seed, step=step,
                   log=lambda m: print(m, file=sys.stderr))
        if args.scale:
            if args.scale < 1:
                raise InvalidInputError(f"--scale must be a positive number of cases, got {args.scale}")
            folder = Path(args.workspace) / "cohorts" / f"scale_{args.scale}"
            manifest = generate_scale_cohort(folder, args.scale, distinct=args.distinct,
                                             progress=step(f"generating {min(args.distinct, args.scale)} distinct "
                                                           "cases"))
            print(f"scale cohort: {args.scale} rows sharing {min(args.distinct, args.scale)} image files: {manifest}",
                  file=sys.stderr)
    if args.ship:
        print(f"shipped weights: {ship_weights(args.workspace)}", file=sys.stderr)
    print(args.workspace)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """Exit 1 when a Holm-adjusted p-value is under its ``--alert`` level, so a site can run it on a schedule."""
    levels = alert_levels(args.alert)
    handle = _model(args.model, args.workspace)
    ws = Workspace(args.workspace)
    with bars() as step:
        reference = ws.cohort_for(handle, ws.resolve_cohort(args.reference), progress=step("checking reference"))
        current = ws.cohort_for(handle, ws.resolve_cohort(args.current), progress=step("checking current"))
        report = monitor(ws, handle, reference, current, window=args.window, alpha=levels["mmd_p"],
                         target=getattr(args, "target", None), progress=step("embedding"))
    print(f"{handle.label} judged by its {report.operating_point}")
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    columns = ["window", "n", "mmd_p_adj", "permutations", "mean_probability", "called_positive", "referred",
               "intensity_shift_sd", "estimated_accuracy", "accuracy", "labelled"]
    shown = report.windows[[c for c in columns if c != "called_positive" or report.class_index is not None]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    verdict = drift_gate(report, levels)
    fired = verdict.reasons if not verdict.passed else ()
    for line in report.alerts:
        print(f"  {line}")
    if args.out:
        _write_table(report.windows, Path(args.out))
    Record(args.workspace).log(operator(), "monitor_run", model=handle.weights_hash[:16],
                               reference=reference.content_hash[:16], current=current.content_hash[:16],
                               windows=len(report.windows), alerts=len(fired))
    if fired:
        print("ALERT: " + "; ".join(fired), file=sys.stderr)
    else:
        print("; ".join(verdict.reasons))
    return exit_code(verdict)


def cmd_precompute(args: argparse.Namespace) -> int:
    from workspace.precompute import Plan, precompute

    aliases = {"ig": "integrated_gradients"}
    methods = tuple(aliases.get(m.strip(), m.strip()) for m in (args.methods or "").split(",") if m.strip())
    target = None
    if args.target is not None:
        handle = _model(args.model, args.workspace)
        target = handle.class_index(args.target)
    plan = Plan(workspace=str(args.workspace), model=args.model, cohort=args.cohort, methods=methods, target=target,
                uncertainty=args.uncertainty, shard_size=args.shard_size)
    with bars() as step:
        summary = precompute(plan, ray=args.ray, workers=args.workers, progress=step("shards"))
    print(f"{summary.cases} cases in {summary.shards} shard(s): {summary.computed} computed, {summary.skipped} "
          f"already done (resumed); {summary.seconds:.1f} s" + (f" on Ray ({args.ray})" if args.ray else ""))
    for path in summary.outputs:
        print(f"  wrote {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    handle = _model(args.model, args.workspace) if args.model else None
    with bars() as step:
        cohort = _cohort(args, handle, step("checking rows"))
    report = cohort.report
    print(report.summary())
    if handle:
        print(f"checked against model {handle.label}: {handle.preprocessing.describe()}, "
              f"classes {list(handle.class_names)}")
    if cohort.n_patients:
        print(f"patients: {cohort.n_patients} for {len(cohort)} images; intervals resample patients")
    for note in report.notes:
        print(f"note: {note}")
    for line in report.grouped_lines():  # identical reasons once, with the first rows
        print(f"rejected {line}")
    if args.all_rows:
        for r in report.rejections:
            print(f"rejected {r}")
    return exit_code(loaded_verdict(len(cohort), report.summary()))


def cmd_predict(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    with bars() as step:
        cohort = _cohort(args, handle, step("loading cohort"))
        if cohort.report.n_rejected:
            print(f"warning: {cohort.report.summary()} (see `glassbox check`)", file=sys.stderr)
        if not len(cohort):
            raise InvalidInputError(f"no case of {args.cohort} loaded ({cohort.report.summary()}); nothing to "
                                    "predict: see `glassbox check`")
        preds = Workspace(args.workspace).predictions(handle, cohort, progress=step("predicting"))
    frame = named_columns(preds.frame, handle)
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
    cohort = _cohort(args, handle)
    case = cohort.case(args.case)
    if args.target is None:  # what the model said about this case: its top class (binary: the positive class)
        (prediction,) = predict_cases(handle, [case])
        target = explained_class(handle, prediction)
    else:
        target = handle.class_index(int(args.target) if str(args.target).isdigit() else args.target)
    params = _params(args.param)
    with bars() as step:
        (a,) = Workspace(args.workspace).attributions(handle, [case], args.method, target, params,
                                                      progress=step(args.method))
    # the default name is made from the case id, which came from a file: never a path (../../x would climb out)
    out = out or Path(f"{safe_file_stem(case.case_id)}_{safe_file_stem(a.method)}.npy")
    buffer = io.BytesIO()
    np.save(buffer, a.array)
    write_file(out, buffer.getvalue())  # atomically: a full disk leaves no truncated map
    delta = f", convergence delta {a.convergence_delta:.3g}" if a.convergence_delta is not None else ""
    print(f"wrote {a.method} map {a.array.shape} for case {case.case_id}, class "
          f"{handle.class_names[a.target]!r}, to {out} ({a.seconds:.2f} s{delta})")
    return 0


def cmd_subgroups(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    if args.target is not None:
        k = handle.class_index(int(args.target) if str(args.target).isdigit() else args.target)
    else:  # a multi-class model is judged by its top class; one class versus the rest is asked for with --target
        k = judged_class(handle)
    gates = gap_limits(args.max_gap, gap_metric_names(TOP_CLASS if k is None else ONE_VS_REST))
    if args.board is not None:  # the operator's k unless a larger one is asked for; never a smaller one
        args.board = operator_settings().k_for(args.board or None, "--board")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise InvalidInputError(f"--threshold {args.threshold:g}: a threshold is a probability, between 0 and 1")
    if k is None and (args.threshold is not None or args.rule is not None):
        raise InvalidInputError("--threshold and --rule apply to one class versus the rest: add --target CLASS "
                                f"(one of {', '.join(handle.class_names)}); the default top-class view needs none")
    with bars() as step:
        cohort = _cohort(args, handle, step("loading cohort"))
        preds = Workspace(args.workspace).predictions(handle, cohort, progress=step("predicting"))
    attributes = list(cohort.attribute_schema)
    banded = with_bands(cohort.frame())
    by, by_notes = group_by(banded, args.by, attributes)
    if args.board:  # checked first: a board selects cases only as its tables group them, and no error lists values
        board_where(args.where, board_decision(cohort, args.board))
    frame = select_where(labelled_frame(banded, preds, k if k is not None else 0), args.where, attributes)
    for note in by_notes:
        print(f"note: {note}")
    hide = board_view(cohort, args.board, frame, by, args.where) if args.board else None
    n_cases = len(frame) if hide is None or hide.shows("overall") else f"<{args.board}"
    if k is None:
        report = multiclass_report(frame, by, handle.class_names, n_boot=args.n_boot, min_n=args.min_n,
                                   seed=args.seed)
        print(f"{handle.label}, all {handle.n_classes} classes (each case's top class against its label), "
              f"{n_cases} labelled cases, {report.n_boot} resamples ({report.resampling})")
        shown = ["group", "n", "patients", *metric_names(TOP_CLASS)]
    else:
        threshold, described = args.threshold, None
        if threshold is None and args.rule is None:  # the model's shared operating threshold, as every page uses
            point = Workspace(args.workspace).operating_point(handle, cohort, k)
            threshold, described = point.threshold, point.describe()
        report = subgroup_report(frame, by, class_index=k, threshold=threshold, rule=args.rule or "youden",
                                 n_boot=args.n_boot, min_n=args.min_n, seed=args.seed)
        versus = " versus the rest" if handle.n_classes > 2 else ""
        print(f"{handle.label}, class {handle.class_names[k]!r}{versus}, {n_cases} labelled cases, threshold "
              f"{described or f'{report.threshold:.3f} ({report.threshold_rule})'}, {report.n_boot} resamples "
              f"({report.resampling})")
        shown = ["group", "n", "patients", "events", "auroc", "sensitivity", "specificity", "ece", "ece_chance"]
    table = hide.table(report.table) if hide else report.table
    # a board judges gaps among the groups it sees: no gap figure computed from a hidden group
    judged = shown_gaps(report, frame, by, hide, rebuild=lambda seen: (
        multiclass_report(seen, by, handle.class_names, n_boot=args.n_boot, min_n=args.min_n, seed=args.seed)
        if k is None else subgroup_report(seen, by, class_index=k, threshold=report.threshold, n_boot=args.n_boot,
                                          min_n=args.min_n, seed=args.seed)))
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(_with_intervals(table if args.board else report.table, shown).to_string(index=False))
    if k is None:
        for group, confusion in confusion_by_group(report, args.board).items():
            if group == "overall":
                print("confusion matrix, overall (rows: true class; columns: top class):")
                print(confusion.to_string())
    # a board sees only what its table shows: no hidden group named, no count or gap that points at one
    gaps = judged.gaps()
    for flag in judged.flags():
        print(f"gap: {flag}")
    for row in gaps[gaps["note"] != ""].itertuples():
        if not hide or not hide.names_hidden(row.note):
            print(f"gap note: {row.metric}: {row.note}")
    print(f"judgement: {judged.judgement()}")
    if "ece_chance" in report.table and (not hide or hide.shows("overall")):
        overall = report.table.iloc[0]
        print(f"calibration: ECE overall {overall['ece']:.3f}; {overall['ece_chance']:.3f} expected by chance for a "
              f"perfectly calibrated model at n={overall['n']} (column ece_chance, per group)")
        if "ece_p" in report.table:  # the test's verdict, worded as the Subgroups page and the report word it
            print(f"calibration test: ECE overall {ece_text(overall['ece'], overall['ece_chance'], overall['ece_p'])}"
                  " (outcomes redrawn as a calibrated model would give them; ece_p_holm per group, Holm over the "
                  "groups)")
    for note in report.table.loc[report.table["notes"] != "", ["group", "notes"]].itertuples():
        if not hide or hide.shows(note.group):
            print(f"note: {note.group}: {note.notes}")
    if out:
        _write_table(table, out)
        if hide:
            gaps = gaps.assign(note=[n if not hide.names_hidden(n) else "" for n in gaps["note"]])
        _write_table(gaps, out.with_suffix(".gaps.csv"))
        print(f"wrote {out} and {out.with_suffix('.gaps.csv')}")
    if not gates:
        return 0
    return _print_gate(judged.gate(gates))


def _with_intervals(table, columns):
    out = table[[c for c in columns if c in table]].copy()
    for c in columns:
        if f"{c}_lo" in table and c in out:
            out[c] = [_interval_text(v, lo, hi) for v, lo, hi in zip(table[c], table[f"{c}_lo"], table[f"{c}_hi"])]
    return out


def _interval_text(v, lo, hi) -> str:
    try:
        if pd.notna(v) and (pd.isna(lo) or pd.isna(hi)):  # a group too small to judge: no interval, never [v, v]
            return f"{float(v):.3f} [too small to judge]"
        return f"{float(v):.3f} [{float(lo):.3f}, {float(hi):.3f}]" if pd.notna(v) else "n/a"
    except (TypeError, ValueError):  # the board view's suppressed cells ("<10") and blanks
        return str(v) or "n/a"


def named_columns(frame: pd.DataFrame, handle: ModelHandle) -> pd.DataFrame:
    """Per-class columns named by class, the same way in every output: ``p_<class>`` (probability; the mean over
    draws for uncertainty) and ``std_<class>`` (its spread over draws)."""
    names = {}
    for k, name in enumerate(handle.class_names):
        names |= {probability_column(k): probability_column(name), mean_column(k): probability_column(name),
                  std_column(k): std_column(name)}
    return frame.rename(columns=names)


def cmd_uncertainty(args: argparse.Namespace) -> int:
    out_path = _out_path(args.out)
    handles = [_model(m, args.workspace) for m in args.model]
    first = handles[0]
    with bars() as step:
        cohort = _cohort(args, first, step("loading cohort"))
        unc = uncertainty(Workspace(args.workspace), handles, cohort, args.method, samples=args.samples,
                          seed=args.seed, progress=step(args.method))
    out = out_path or Path(f"uncertainty_{args.method}.csv")
    _write_table(named_columns(unc.frame, first), out)
    k = judged_class(first)
    point = Workspace(args.workspace).operating_point(first, cohort, k) if k is not None else None
    rule = ("top class against the label" if k is None else
            f"class {first.class_names[k]!r} at the shared threshold {point.describe()}")
    report = uncertainty_report(cohort.frame(), Workspace(args.workspace).predictions(first, cohort), unc,
                                task=first.task, class_index=k, threshold=point.threshold if point else None,
                                rule=rule, seed=args.seed)
    (h, h_lo, h_hi), (mi, mi_lo, mi_hi) = report.means[ENTROPY], report.means[MUTUAL_INFORMATION]
    print(f"wrote {len(unc)} cases to {out}: mean entropy {h:.3f} [{h_lo:.3f}, {h_hi:.3f}] nats, "
          f"mean mutual information {mi:.4f} [{mi_lo:.4f}, {mi_hi:.4f}] (95% intervals, {report.design})")
    detect = report.detection
    if detect is not None:
        print(f"errors ({report.rule}): {detect['errors']} of {detect['n']} labelled cases{report.held_out}; entropy "
              f"flags them with AUROC {detect['auroc']:.3f} [{detect['lo']:.3f}, {detect['hi']:.3f}] "
              f"({report.design})")
    if report.recalibration:
        print(report.recalibration)
    return 0


def cmd_tcav(args: argparse.Namespace) -> int:
    out_path = _out_path(args.out)
    handle = _model(args.model, args.workspace)
    with bars() as step:
        cohort = _cohort(args, handle, step("loading cohort"))
        if args.target:
            target = handle.class_index(int(args.target) if str(args.target).isdigit() else args.target)
        else:
            target = default_target(handle, cohort)
            if uses_top_class(handle):
                print(f"note: no --class given: testing {handle.class_names[target]!r}, the class with the most "
                      "labelled cases", file=sys.stderr)
        folder = Workspace(args.workspace).resolve_cohort(args.cohort)
        folder = folder if folder.is_dir() else folder.resolve().parent
        frame = concept_scores(
            Workspace(args.workspace), handle, cohort, folder, [c.strip() for c in args.concept.split(",")],
            args.layer.split(",") if args.layer else None, target, n_random=args.random, seed=args.seed,
            progress=step("TCAV"))
    from evaluation.concept_significance import GATE

    first = frame.iloc[0]
    print(f"{handle.label}, class {handle.class_names[int(first['target'])]!r}: {int(first['runs'])} runs per concept "
          f"and layer, each with its own half of the concept ({int(first['sample'])} images), its own random sample "
          f"and its own CAV; the null is {int(first['references'])} reference concepts drawn from the random pool and "
          f"run the same way (smallest possible p {first['p_floor']:.2g}); Holm-corrected across {len(frame)} tests")
    print(f"gate: {GATE}")
    for r in frame.itertuples():
        gate = "passes" if cav_gate(r.cav_accuracy).passed else "FAILS: not judged"
        print(f"{r.concept:>14} @ {r.layer:<22} TCAV {r.score:.2f} ± {r.spread:.2f} (reference {r.null_score:.2f} ± "
              f"{r.null_spread:.2f}); sensitivity {r.sensitivity:+.3f} vs {r.null_sensitivity:+.3f}, effect "
              f"{r.effect:+.3f} [{r.effect_lo:+.3f}, {r.effect_hi:+.3f}]; CAV acc {r.cav_accuracy:.2f} (gate {gate}); "
              f"p {r.p_value:.2g}, adjusted {r.p_adjusted:.2g}: {'SIGNIFICANT' if r.significant else 'not significant'}")
        if r.agreement:
            print(f"{'':>16}causal check: {r.agreement}")
    if out_path:
        _write_table(frame, out_path)
        print(f"wrote {out_path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    flips_out = _out_path(args.flips)
    base = _model(args.baseline, args.workspace)
    cand = _model(args.candidate, args.workspace)
    if args.target is not None:
        k = base.class_index(int(args.target) if str(args.target).isdigit() else args.target)
    else:
        k = judged_class(base)
    gates = margins(args.max_regression, metric_names(TOP_CLASS if k is None else ONE_VS_REST))
    comparable(base, cand)  # before any prediction: a 2D and a 3D version are refused by name
    ws = Workspace(args.workspace)
    with bars() as step:
        cohort = _cohort(args, base, step("loading cohort"))
        ws.predictions(base, cohort, progress=step(f"predicting {base.version}"))
        ws.predictions(cand, cohort, progress=step(f"predicting {cand.version}"))
    attributes = list(cohort.attribute_schema)
    banded = with_bands(cohort.frame())
    by, notes = group_by(banded, args.by, attributes) if args.by else ([], [])
    where = list(args.where)
    if not where and (held_out := held_out_split(banded)):
        where = [f"split={held_out}"]
        notes.append(f"judged on split {held_out!r} (held out); --where changes it")
    select_where(banded[banded["label"].notna()], where, attributes)  # names the values when one does not exist
    chosen = dict(clause.partition("=")[::2] for clause in where)
    result = compare(ws, base, cand, cohort, by=by, where=chosen, class_index=k, margins=gates or None,
                     n_boot=args.n_boot, seed=args.seed, min_n=args.min_n)
    report, thresholds = result.report, result.thresholds
    for note in notes:
        print(f"note: {note}")
    view = "top class against the label" if k is None else f"class {base.class_names[k]!r}" + (
        f" at thresholds {thresholds[0]:.3f} / {thresholds[1]:.3f} (each version's shared one)" if thresholds else "")
    print(f"{cand.label} against {base.label} on {len(result.changes)} labelled cases of {cohort.name}: {view}; "
          f"{report.n_boot} paired resamples ({report.resampling}); non-inferiority bounds Bonferroni-adjusted over "
          f"{report.adjusted_over} group(s)")
    table = report.table if by else report.table[report.table["group"] == "overall"]
    default = ["accuracy", "balanced_accuracy", "macro_auroc"] if k is None else ["auroc", "sensitivity", "specificity"]
    shown = table[table["metric"].isin(list(gates) or default)]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(shown.assign(delta=[f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                                  zip(shown["delta"], shown["delta_lo"], shown["delta_hi"])])
              [["group", "n", "metric", "baseline", "candidate", "delta", "margin", "verdict"]]
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = result.summary
    print(f"flips: {summary['fixed']} fixed, {summary['broken']} broken, {summary['still wrong']} still wrong, "
          f"{summary['both right']} both right; McNemar p = {summary['mcnemar_p']:.3g} ({mcnemar_design(summary)})")
    if out:
        _write_table(report.table.assign(**result.provenance), out)
        print(f"wrote {out}")
    if flips_out:
        keep = ["case_id", *by, "label", "p_baseline", "p_candidate", "p_change", "predicted_baseline",
                "predicted_candidate", "change"]
        changes = result.changes
        _write_table(changes[[c for c in keep if c in changes]].assign(**result.provenance), flips_out)
        print(f"wrote {flips_out}")
    if args.region:
        shift = region_test(ws, [base, cand], cohort, result.changes["case_id"].tolist(), args.region, args.perturb,
                            result.changes, result.grouping, k, n_boot=args.n_boot, seed=args.seed)
        what = f"p({base.class_names[k]})" if k is not None else "the probability of each case's top class"
        print(f"region test: {args.region} perturbed by '{args.perturb}' in {len(result.changes)} cases; mean shift "
              f"of {what}:")
        for r in shift.itertuples():
            print(f"  {r.group:>10} {r.version:>12}: {r.mean_shift:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]"
                  + ("  (excludes 0)" if r.excludes_zero else ""))
    if not gates:
        return 0
    return _print_gate(noninferiority_gate(report, list(gates)))


def cmd_trust(args: argparse.Namespace) -> int:
    out = _out_path(args.out)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        SALIENCY_METHODS.get(m)  # unknown names fail before any loading, with a did-you-mean
    handle = _model(args.model, args.workspace)
    ws = Workspace(args.workspace)
    with bars() as step:
        cohort = _cohort(args, handle, step("loading cohort"))
        attributes = list(cohort.attribute_schema)
        strata = [a for a in (args.by.split(",") if args.by else []) if a]
        for a in strata:
            if a not in attributes:
                raise InvalidInputError(f"--by {a!r} is not an attribute of the cohort ({', '.join(attributes)})")
        checks, sample = explanation_quality(ws, handle, cohort, methods, n_cases=args.cases, strata=strata,
                                             seed=args.seed, progress=step("trust checks"))
    summary = quality_summary(checks, sample, seed=args.seed)
    print(f"{handle.label}: {len(sample)} cases sampled across {' × '.join([*strata, 'outcome'])}; "
          "mean over cases with 95% interval (the pointing game: hit rate with its Wilson interval, against chance "
          "and the clinical reference); localisation as a multiple of chance; cases: judged / applicable")
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(summary.assign(mean=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(m) else "–" for m, lo, hi in
                                   zip(summary["mean"], summary["lo"], summary["hi"])],
                             cases=[f"{c}/{o}" for c, o in zip(summary["cases"], summary["of"])])
              [["method", "check", "mean", "chance", "reference", "passing", "cases", "band"]]
              .to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"))
    for r in summary.itertuples():  # why a check could not be judged, and what the hit rate was read against
        if r.band == "could not judge" or r.check == "pointing_game":
            print(f"  {r.method} {r.check}: {r.band}: {r.reason}")
    if (summary["check"] == "pointing_game").any():
        from explainers.trust import TRUST_CHECKS

        point = TRUST_CHECKS.get("pointing_game")
        print(f"  clinical reference {point.reference:.3f}: {point.reference_source}")
    for line in in_words(summary):
        print(line.replace("**", ""))
    if out:
        _write_table(checks, out)
        print(f"wrote {len(checks)} per-case results to {out}")
    return 0


def _password(args: argparse.Namespace, name: str) -> str:
    """A new password: from stdin with ``--password-stdin`` (scripts), else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise InvalidInputError("no terminal to ask for a password: pipe it with --password-stdin")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInputError("the two passwords differ; nothing was changed")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    """Accounts are the operator's: created and changed here, never in the browser; every change is in the audit
    log of ``--workspace``."""
    users = Users(args.users) if args.users else Users()
    record = Record(args.workspace)
    who = operator()
    if args.action == "list":
        frame = users.frame()
        print(frame.to_string(index=False) if len(frame) else f"no accounts in {users.path} (single-user mode)")
        return 0
    if not args.name:
        raise InvalidInputError(f"glassbox user {args.action} needs a user NAME")
    if args.action == "add":
        if not args.role:
            raise InvalidInputError(f"--role is required: one of {', '.join(ROLES)}")
        users.add(args.name, args.role, None if args.no_password else _password(args, args.name))
        record.log(who, "user_added", user=args.name, role=args.role, password=not args.no_password)
        print(f"added {args.name} ({args.role}) to {users.path}")
    elif args.action == "role":
        if not args.role:
            raise InvalidInputError(f"--role is required: one of {', '.join(ROLES)}")
        users.set_role(args.name, args.role)
        record.log(who, "role_changed", user=args.name, role=args.role)
        print(f"{args.name} is now {args.role}; their open sessions end at their next action")
    elif args.action == "password":
        users.set_password(args.name, _password(args, args.name))
        record.log(who, "password_changed", user=args.name)
        print(f"password of {args.name} changed; their open sessions end at their next action")
    else:
        users.set_active(args.name, args.action == "enable")
        record.log(who, f"user_{args.action}d", user=args.name)
        print(f"{args.name} {args.action}d" + ("; their open sessions end at their next action"
                                               if args.action == "disable" else ""))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """``verify``: exit 0 when the chain is intact, 1 naming the first entry edited, deleted or reordered.
    ``export``: the log (filtered) as CSV, itself recorded in the log (not in a read-only copy)."""
    if not record_path(args.workspace).exists():
        raise InvalidInputError(f"no review record at {record_path(args.workspace)}")
    record = Record(args.workspace)
    if args.action == "verify":
        check = record.verify()
        print(check.describe())
        print(f"head file: {record.head_path}" + ("" if os.environ.get("GLASSBOX_AUDIT_HEAD") else
                                                  " (beside the record; $GLASSBOX_AUDIT_HEAD keeps it elsewhere)"))
        return exit_code(integrity_verdict(check.ok, check.describe()))
    frame = record.audit(actor=args.actor, action=args.filter_action, since=args.since)
    text = spreadsheet_safe(frame).to_csv(index=False)
    _emit(text, args.out, f"{len(frame)} audit entries")
    if record.read_only:
        print("the review record is read-only: this export is not itself recorded", file=sys.stderr)
    else:
        record.log_export(operator(), "audit", text, actor=args.actor, action=args.filter_action, since=args.since)
    return 0


def cmd_verify_report(args: argparse.Namespace) -> int:
    """Exit 0 when a kept HTML or PDF report is as Glassbox wrote it and the sign-offs it states are in the
    workspace's audit log; 1 naming what changed (section or page, and line)."""
    from workspace.report import verify_report

    record = Record(args.workspace) if record_path(args.workspace).exists() else None
    check = verify_report(args.file, record)
    print(check.describe())
    return exit_code(integrity_verdict(check.ok, check.describe()))


def cmd_verdicts(args: argparse.Namespace) -> int:
    """Every verdict row with its provenance (history included: a change of mind is a new row)."""
    ws = Workspace(args.workspace)
    record = Record(args.workspace)
    model_hash = ws.load_model(ws.resolve_model(args.model)).weights_hash if args.model else None
    text = record.export_verdicts(operator(), model_hash=model_hash)
    _emit(text, args.out, f"{max(text.count(chr(10)) - 1, 0)} verdict rows")
    return 0


def _emit(text: str, out: str | None, what: str) -> None:
    """CSV text to ``--out`` (saying what was written), else to standard output."""
    path = _out_path(out)
    if path:
        write_file(path, text)
        print(f"wrote {what} to {path}")
    else:
        print(text, end="")


def cmd_report(args: argparse.Namespace) -> int:
    """The board report (HTML or PDF from one template), named by its content hash; says who signed it. With
    ``--expect HASH``: exit 1 when the report made now is not that one (the model, cohort or answers changed since
    it was signed), naming what differs."""
    from workspace.report import gather, write_report

    ws = Workspace(args.workspace)
    handle = _model(args.model, args.workspace)
    baseline = _model(args.compare, args.workspace) if args.compare else None
    if baseline is not None:
        comparable(baseline, handle)
    out = _out_path(args.out)
    if out is not None and out.suffix.lower() not in (".pdf", ".html", ".htm"):  # said before minutes of work
        raise InvalidInputError(f"--out {args.out}: give a .pdf or .html file")
    k = operator_settings().k_for(args.k, "--k")  # the operator's k, or a larger one asked for
    cohort = ws.cohort_for(handle, ws.resolve_cohort(args.cohort))
    by = [b.strip() for b in args.by.split(",") if b.strip()] if args.by else []
    reference = None
    if args.reference:
        try:
            reference = json.loads(Path(args.reference).read_text())
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"--reference {args.reference}: not a readable JSON file of attribute -> "
                                    f"{{group: share}} ({e})") from e
    with bars() as progress:
        step = progress("report")
        sections = ["provenance", "cohort", "performance", "explanations", "comparison", "reviewers"]
        data = gather(ws, handle, cohort, baseline=baseline, by=by, k=k, author=operator(),
                      trust_methods=[m for m in args.trust.split(",") if m] if args.trust else [],
                      trust_cases=args.trust_cases, reference=reference,
                      monitoring=(ws.cohort_for(handle, ws.resolve_cohort(args.monitor)) if args.monitor else None),
                      progress=lambda name: step(min(sections.index(name.split(" ")[0]) + 1, len(sections))
                                                 if name.split(" ")[0] in sections else 0, len(sections)))
    record = Record(args.workspace)
    digest = data.content_hash
    if out:
        write_report(data, out, record)
        if record.read_only:
            print("the review record is read-only: this report is not recorded in its audit log", file=sys.stderr)
        else:
            record.log(operator(), "report_made", report=digest, model=handle.weights_hash[:16],
                       cohort=cohort.content_hash[:16], file=out.suffix.lstrip("."))
        print(f"wrote {out} (check a kept copy with `glassbox verify-report {out.name}`)")
    if args.model_card:
        from workspace.report import model_card

        path = _out_path(args.model_card)
        write_file(path, json.dumps(model_card(data), indent=2))
        print(f"wrote the model card to {path}")
    print(f"report {digest}")
    signed = record.signoffs(digest)
    print("signed by " + "; ".join(f"{s.actor} ({s.role}) at {s.at}" for s in signed.itertuples())
          if len(signed) else "not signed")
    expected = same_report(args.expect, digest, args.expect and (
        f"this is not report {args.expect[:16]}: the model, cohort, comparison or the board's answers changed "
        f"since (model now {handle.weights_hash[:16]}, cohort {cohort.content_hash[:16]}); a signature of "
        f"{args.expect[:16]} does not hold for it" + (f" ({n} sign-off(s) on record)" if (
            n := len(record.audit(action="sign_off"))) else "")))
    if not expected.passed:
        print("; ".join(expected.reasons))
    return exit_code(expected)


def serve_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The Streamlit command line and environment ``glassbox serve`` runs: what may be opened and trusted is fixed
    here, from the operator's flags; the app's static files and settings come from the package, wherever the
    command runs from."""
    app = Path(__file__).resolve().parent.parent / "app.py"
    workspaces = [Path(w).resolve() for w in (args.workspace or [default_workspace()])]
    # the operator's flags over what their environment already says, checked by name before the server starts
    settings = Operator.from_flags(board_k=args.board_k, model_roots=args.model_root, data_roots=args.data_root,
                                   auth=args.auth, inherit=operator_settings())
    env = {**os.environ, "GLASSBOX_WORKSPACE": str(workspaces[0]),
           "GLASSBOX_WORKSPACES": os.pathsep.join(map(str, workspaces)), **settings.environment()}
    command = [sys.executable, str(app), "--server.address", args.address, "--server.port", str(args.port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               # .streamlit/config.toml is read from the working directory; what must hold everywhere is set here
               "--client.showErrorDetails", "none", "--client.toolbarMode", "minimal",
               "--server.fileWatcherType", "none", "--server.runOnSave", "false",
               "--theme.primaryColor", "#2b6cb0"]
    return command, env


def cmd_serve(args: argparse.Namespace) -> int:
    from workspace.settings import check_operator

    command, env = serve_command(args)
    workspaces = [Path(w) for w in env["GLASSBOX_WORKSPACES"].split(os.pathsep)]
    os.environ.update(env)  # the server's own environment, checked here before it starts (the app re-checks per run)
    check_operator(workspaces)
    for w in workspaces:
        remove_orphans(Workspace(w).cache)
    # the server replaces this process: a SIGTERM or Ctrl-C sent to `glassbox serve` reaches Streamlit itself, and no
    # child is left serving the port
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(command[0], command, env)
    return 0  # not reached


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
    s.add_argument("--seed", type=_seed, default=TRAINING_SEED, help="training seed with --retrain")
    s.add_argument("--ship", action="store_true", help="maintainers: after --retrain, replace the shipped weights")
    s.add_argument("--scale", type=int, metavar="N", help="also write cohort scale_N: N rows (for the scale "
                   "benchmarks) made from the demo generator, sharing --distinct image files")
    s.add_argument("--distinct", type=int, default=5000, metavar="U", help="distinct images behind --scale "
                   "(default 5000)")
    s = add("monitor", cmd_monitor, "drift of a deployment cohort against the validation cohort, per window; exits 1 "
                                    "on an alert")
    s.add_argument("--model", required=True)
    s.add_argument("--reference", required=True, help="the cohort the model was validated on")
    s.add_argument("--current", required=True, help="incoming cases, with a window column")
    s.add_argument("--window", default="acquired_month", help="the attribute that says each case's window "
                   "(default acquired_month: 2026-03 style)")
    s.add_argument("--alert", action="append", default=[], metavar="NAME=LEVEL",
                   help=f"Holm-adjusted p under LEVEL exits 1: {', '.join(ALERTS)} (default mmd_p=0.01)")
    s.add_argument("--target", help="judge one class versus the rest at its operating point, by index or name "
                                    "(default: a multi-class model's top class against the label; binary: the "
                                    "positive class)")
    s.add_argument("--out", help="the per-window table (.csv or .parquet)")
    s = add("precompute", cmd_precompute, "predictions, uncertainty and maps for a whole cohort into the cache the app "
                                          "reads; resumes after a kill; --ray runs it on a Ray cluster")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--methods", default="", help="saliency methods, comma-separated (ig = integrated_gradients)")
    s.add_argument("--uncertainty", choices=("mc_dropout", "tta"))
    s.add_argument("--target", help="class the maps explain (default: the last class)")
    s.add_argument("--shard-size", type=_positive_int, default=1024, help="cases per shard (default 1024)")
    s.add_argument("--ray", metavar="auto|ADDRESS", help="run the shards on Ray: auto (this machine's cluster, or a "
                   "local instance) or a cluster address")
    s.add_argument("--workers", type=_positive_int, help="Ray actors (default: one per GPU, else per CPU)")
    s = add("check", cmd_check, "validate a cohort (and its fit to a model); print the load report")
    s.add_argument("--cohort", required=True)
    s.add_argument("--model")
    s.add_argument("--all-rows", action="store_true", help="list every rejected row, not only each reason once")
    s = add("predict", cmd_predict, "write per-case class probabilities")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--out")
    s = add("explain", cmd_explain, "write one saliency map as .npy (C, *spatial)")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--case", required=True)
    s.add_argument("--method", required=True, help=", ".join(SALIENCY_METHODS.names()))
    s.add_argument("--target", help="class index or name (default: the model's top class for this case; binary: the "
                                    "positive class)")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    s.add_argument("--out")
    s = add("subgroups", cmd_subgroups, "subgroup performance with 95% bootstrap intervals and between-group gaps")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--by", type=_attribute_list,
                   required=True, help="attribute(s), comma-separated for intersections, e.g. sex,site; a "
                                               "numeric one (age) is grouped in stated bands")
    s.add_argument("--target", help="one class versus the rest, by index or name (default: a multi-class model's "
                                    "top class against the label; binary: the positive class)")
    s.add_argument("--threshold", type=float, help="operating threshold (default: the model's shared one, as the "
                                                   "pages use: settings.json operating_point, else Youden on the "
                                                   "validation or test split)")
    s.add_argument("--rule", help="re-choose the threshold on the cases given: youden | sensitivity=0.9 | "
                                  "specificity=0.9")
    s.add_argument("--where", action="append", default=[], metavar="ATTR=VALUE", help="keep only these cases")
    s.add_argument("--n-boot", type=_RESAMPLES, default=2000, help="resamples (default 2000; the gate states "
                   "the Monte Carlo interval of its bound)")
    s.add_argument("--min-n", type=_positive_int, default=30, help="groups smaller than this are flagged, not compared")
    s.add_argument("--board", type=_positive_int, nargs="?", const=0, metavar="K",
                   help="write the ethics-board view: groups under K suppressed (default the operator's k, "
                        "$GLASSBOX_BOARD_K or 10; K may raise it, never lower it)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--max-gap", action="append", default=[], metavar="METRIC=VALUE",
                   help="release gate, passing only a gap SHOWN within VALUE: exit 0 when every pair's simultaneous "
                        "95%% upper bound (family-wise over every metric × pair) is at most VALUE; 1 when a pair's "
                        "lower bound lies above VALUE (shown to exceed); 4 when neither is shown (not shown within "
                        "the limit); 3 when fewer than two groups could be compared (could not judge)")
    s.add_argument("--out")
    s = add("uncertainty", cmd_uncertainty, "write per-case uncertainty (mean, spread, entropy, mutual information)")
    s.add_argument("--model", required=True, action="append", help="repeat for an ensemble")
    s.add_argument("--cohort", required=True)
    s.add_argument("--method", required=True, choices=list(UNCERTAINTY_METHODS))
    s.add_argument("--samples", type=_positive_int, help="draws per case (default 16 for mc_dropout, 8 for tta)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out")
    s = add("tcav", cmd_tcav, "concept attributions (TCAV) with significance against random concepts")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--concept", required=True, help="names (folders under the cohort's concepts/), folders, or "
                                                    "filters like 'site == B'; comma-separated")
    s.add_argument("--layer", help="layer name(s), comma-separated (default: the network's usual choices)")
    s.add_argument("--target", "--class", dest="target", help="class index or name (default: binary, the positive class; multi-class, "
                                                     "the class with the most labelled cases)")
    s.add_argument("--random", type=_RANDOM_CONCEPTS, default=15,
                   help="runs per concept and layer, each with its own concept half, random sample and CAV "
                        "(default 15)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out")
    s = add("compare", cmd_compare, "compare a candidate model version with a baseline on one cohort: paired "
                                    "deltas with non-inferiority verdicts per group, flipped cases, a region test; "
                                    "a release gate")
    s.add_argument("--baseline", required=True)
    s.add_argument("--candidate", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--by", type=_attribute_list,
                   help="attribute(s) to compare within, comma-separated (numeric ones in bands)")
    s.add_argument("--where", action="append", default=[], metavar="ATTR=VALUE",
                   help="keep only these cases (default: split=test where the cohort has one)")
    s.add_argument("--target", help="one class versus the rest (default: top class for multi-class models)")
    s.add_argument("--max-regression", metavar="METRIC=MARGIN[,...]",
                   help="release gate, passing only what is SHOWN not worse: exit 0 when, in every group large "
                        "enough to judge, the candidate is shown not worse than the baseline by more than MARGIN "
                        "(one-sided 97.5%% bound, Bonferroni over the groups); 1 when some group is shown worse; 4 "
                        "when some group is neither (not shown); 3 when no group could be judged")
    s.add_argument("--n-boot", type=_RESAMPLES, default=4000, help="paired resamples (default 4000: the "
                   "adjusted bootstrap bound is a far-tail quantile; the gate states its Monte Carlo interval; "
                   "sensitivity, specificity and accuracy take Tango's score bound, which resamples nothing)")
    s.add_argument("--min-n", type=_positive_int, default=30)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", help="the delta table (CSV), every row with its provenance")
    s.add_argument("--flips", help="the per-case changes (CSV): fixed, broken, still wrong, both right")
    s.add_argument("--region", help="region test: x0,y0,x1,y1 in pixels, or a name (demo-marker)")
    s.add_argument("--perturb", default="mean", choices=list(PERTURBATIONS.names()),
                   help="how the region is taken away (default mean)")
    s = add("trust", cmd_trust, "can these maps be believed? randomisation, faithfulness, localisation and stability "
                                "checks per method over a stratified sample of cases")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--methods", default="saliency,integrated_gradients,grad_cam,occlusion",
                   help="comma-separated saliency methods")
    s.add_argument("--cases", type=_SAMPLED_CASES, default=24, help="cases sampled (stratified by --by and outcome)")
    s.add_argument("--by", type=_attribute_list, help="attribute(s) to stratify the sample by, e.g. site")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", help="per-case results (CSV or Parquet)")
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
    s.add_argument("--auth", choices=AUTH_MODES,
                   help="single: no sign-in, one person on this machine (the default when no account exists); "
                        "local: accounts from `glassbox user` (the default when one exists); oidc: Streamlit's "
                        "st.login with the identity provider in .streamlit/secrets.toml, roles from `glassbox user`")
    s.add_argument("--board-k", type=int, metavar="K",
                   help="board views and board reports hide every group under K cases, K ≥ 2 (default "
                        "$GLASSBOX_BOARD_K or 10; a board member or a command may raise it, never lower it)")
    s = add("user", cmd_user, "the server's accounts and roles (kept outside every workspace, passwords as argon2id "
                              "hashes); each change is recorded in the workspace's audit log")
    s.add_argument("action", choices=["add", "list", "role", "password", "disable", "enable"])
    s.add_argument("name", nargs="?")
    s.add_argument("--role", choices=ROLES)
    s.add_argument("--no-password", action="store_true",
                   help="an account that signs in through the identity provider (NAME is its e-mail)")
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    s.add_argument("--users", help="the accounts file (default $GLASSBOX_USERS_FILE or "
                                   "~/.config/glassbox/users.sqlite)")
    s = add("audit", cmd_audit, "check the workspace's audit log for tampering (exit 1 naming the first bad entry), "
                                "or export it")
    s.add_argument("action", choices=["verify", "export"])
    s.add_argument("--actor")
    s.add_argument("--action", dest="filter_action", metavar="ACTION", help="only this action (e.g. verdict)")
    s.add_argument("--since", help="ISO date or time, e.g. 2026-11-01")
    s.add_argument("--out")
    s = add("report", cmd_report, "the ethics board's report (HTML or PDF): provenance, cohort, performance with small "
                                  "groups hidden, explanation trust, comparison, reviewers, the lifecycle checklist "
                                  "and sign-off, named by its content hash")
    s.add_argument("--model", required=True)
    s.add_argument("--cohort", required=True)
    s.add_argument("--compare", metavar="BASELINE", help="add the comparison with this earlier version")
    s.add_argument("--by", type=_attribute_list, help="attribute(s) to report by, comma-separated")
    s.add_argument("--k", type=_positive_int, help="hide every group under K cases (default the operator's k, "
                                                   "$GLASSBOX_BOARD_K or 10; K may raise it, never lower it)")
    s.add_argument("--trust", default="saliency,grad_cam", help="methods whose maps are checked ('' to skip)")
    s.add_argument("--trust-cases", type=_SAMPLED_CASES, default=16)
    s.add_argument("--reference", help="JSON: attribute -> {group: expected share}, to compare the cohort against")
    s.add_argument("--out", help="report.pdf or report.html")
    s.add_argument("--monitor", metavar="COHORT", help="an incoming cohort with an acquired_month column: adds the "
                   "Monitoring section (drift against --cohort per month)")
    s.add_argument("--model-card", metavar="FILE.json", help="also write the model card as JSON (Model Card Toolkit "
                                                             "schema v0.0.2)")
    s.add_argument("--expect", metavar="HASH", help="exit 1 unless the report made now is this one (a signed report "
                                                    "still describes this model and cohort)")
    s = add("verify-report", cmd_verify_report, "check a kept board report (HTML or PDF) against its seal and the "
                                                "audit log: exit 0 when intact, 1 naming the section or page and "
                                                "line that changed")
    s.add_argument("file", help="report.html or report.pdf as kept")
    s = add("verdicts", cmd_verdicts, "export the reviewers' verdicts (every row, with model and cohort hashes, "
                                      "reader, role and time)")
    s.add_argument("--model", help="only verdicts on this model version")
    s.add_argument("--out")
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
