"""The ``glassbox`` command line. Every long step shows a progress bar; errors are one clear line.

    glassbox demo [--workspace DIR] [--force]
    glassbox check --cohort MANIFEST [--model MODEL]
    glassbox predict --model MODEL --cohort MANIFEST [--out FILE.csv|.parquet]
    glassbox explain --model MODEL --cohort MANIFEST --case ID --method NAME [--target CLASS] [--out FILE.npy]
    glassbox serve [--workspace DIR] [--port N]

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
from tqdm import tqdm

from data_adapters.cohort import load_manifest
from data_adapters.errors import GlassboxError
from data_adapters.models import load_model
from data_adapters.records import ModelHandle
from explainers.device import best_device
from explainers.saliency import SALIENCY_METHODS
from workspace.demo import build_demo
from workspace.store import Workspace, default_workspace

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


def _model(path: str) -> ModelHandle:
    handle = load_model(path)
    handle.module.to(best_device())
    return handle


def cmd_demo(args: argparse.Namespace) -> int:
    with bars() as step:
        build_demo(args.workspace, force=args.force, step=step, log=lambda m: print(m, file=sys.stderr))
    print(args.workspace)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    handle = _model(args.model) if args.model else None
    with bars() as step:
        cohort = load_manifest(args.cohort, class_names=handle.class_names if handle else None,
                               input_shape=handle.preprocessing.input_shape if handle else None,
                               progress=step("checking rows"))
    report = cohort.report
    print(report.summary())
    if handle:
        print(f"checked against model {handle.label}: input {handle.preprocessing.input_shape}, "
              f"classes {list(handle.class_names)}")
    for note in report.notes:
        print(f"note: {note}")
    for r in report.rejections:
        print(f"rejected {r}")
    return 0 if report.n_loaded else 1


def cmd_predict(args: argparse.Namespace) -> int:
    handle = _model(args.model)
    with bars() as step:
        cohort = load_manifest(args.cohort, class_names=handle.class_names, input_shape=handle.preprocessing.input_shape,
                               progress=step("loading cohort"))
        if cohort.report.n_rejected:
            print(f"warning: {cohort.report.summary()} (see `glassbox check`)", file=sys.stderr)
        frame = Workspace(args.workspace).predictions(handle, cohort, progress=step("predicting"))
    frame = frame.rename(columns={f"p_{k}": f"p_{name}" for k, name in enumerate(handle.class_names)})
    if args.out:
        out = Path(args.out)
        frame.to_parquet(out, index=False) if out.suffix == ".parquet" else frame.to_csv(out, index=False)
        print(f"wrote {len(frame)} predictions to {out}")
    else:
        print(frame.to_csv(index=False), end="")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    SALIENCY_METHODS.get(args.method)  # a bad name fails before anything is loaded
    handle = _model(args.model)
    cohort = load_manifest(args.cohort, class_names=handle.class_names, input_shape=handle.preprocessing.input_shape)
    case = cohort.case(args.case)
    target = args.target if args.target is not None else handle.n_classes - 1
    target = int(target) if str(target).isdigit() else target
    params = dict(p.split("=", 1) for p in args.param)
    with bars() as step:
        (a,) = Workspace(args.workspace).attributions(handle, [case], args.method, target, params,
                                                      progress=step(args.method))
    out = Path(args.out or f"{case.case_id}_{a.method}.npy")
    np.save(out, a.array)
    delta = f", convergence delta {a.convergence_delta:.3g}" if a.convergence_delta is not None else ""
    print(f"wrote {a.method} map {a.array.shape} for case {case.case_id}, class "
          f"{handle.class_names[a.target]!r}, to {out} ({a.seconds:.2f} s{delta})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parent.parent / "app.py"
    env = {**os.environ, "GLASSBOX_WORKSPACE": str(Path(args.workspace).resolve())}
    return subprocess.call([sys.executable, str(app), "--server.address", args.address,
                            "--server.port", str(args.port), "--server.headless", "true",
                            "--browser.gatherUsageStats", "false"], env=env)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glassbox", description="Explainability dashboard for clinical model review.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--workspace", default=str(default_workspace()),
                       help="workspace folder (caches; the demo's models and cohorts)")
        s.set_defaults(fn=fn)
        return s

    s = add("demo", cmd_demo, "build the demo workspace (reuses what exists)")
    s.add_argument("--force", action="store_true", help="rebuild everything")
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
    s = add("serve", cmd_serve, "start the dashboard on this machine")
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
