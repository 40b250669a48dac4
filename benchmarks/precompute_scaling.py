"""Batch precompute on Ray: the same shards with 1 and with 2 actors (one CPU thread each), in one run.

Ray starts once, before either timing; each timing includes the actors loading the model and cohort. The work is
integrated gradients (50 steps) and predictions for --cases demo cases in shards of --shard cases.

    .venv/bin/python benchmarks/precompute_scaling.py [--cases 512] [--shard 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray  # noqa: E402

from data_adapters.demo.synthesis import generate_scale_cohort  # noqa: E402
from workspace.precompute import Plan, precompute  # noqa: E402
from workspace.store import default_workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=512)
    ap.add_argument("--shard", type=int, default=32)
    ap.add_argument("--workspace", default=str(default_workspace()))
    a = ap.parse_args()
    model = str(Path(a.workspace) / "models" / "v2")
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_scale_cohort(Path(tmp) / "cohort", a.cases, distinct=a.cases)
        ray.init(num_cpus=min(cpus, 2), include_dashboard=False, log_to_driver=False)
        seconds = {}
        try:
            for workers in (1, 2):
                plan = Plan(workspace=str(Path(tmp) / f"ws{workers}"), model=model, cohort=str(manifest),
                            methods=("integrated_gradients",), shard_size=a.shard)
                t = time.perf_counter()
                summary = precompute(plan, ray="auto", workers=workers)
                seconds[workers] = time.perf_counter() - t
                print(f"{workers} actor(s): {summary.cases} cases, {summary.shards} shards, {seconds[workers]:.1f} s, "
                      f"{summary.cases / seconds[workers]:.1f} cases/s")
        finally:
            ray.shutdown()
    print(f"scaling 1 -> 2 actors on {cpus} CPU(s): {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
