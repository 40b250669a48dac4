"""How much the demo's planted properties vary with the training seed and torch's thread count.

Trains the demo models (``glassbox demo --retrain``) for each seed × thread count in a fresh workspace, runs
the same checks the build runs, and prints each check's value per run with its min and max: the spread the
bounds in ``workspace/demo_checks.py`` are set from. Slow (~2 min a run on 2 CPU cores)::

    python benchmarks/demo_spread.py --seeds 7,11,13,17,19 --threads 1,2 --out spread.csv
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

CHILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from workspace.demo import build_demo
from data_adapters.errors import GlassboxError
try:
    build_demo(sys.argv[1], retrain=True, seed=int(sys.argv[2]), log=lambda m: None)
except GlassboxError as e:
    print(e, file=sys.stderr)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="7,11,13,17,19")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in map(int, args.threads.split(",")):
            for seed in map(int, args.seeds.split(",")):
                root = Path(tmp) / f"s{seed}-t{threads}"
                # a fresh process per run: torch's thread count is fixed once work has started
                subprocess.run([sys.executable, "-c", CHILD, str(root), str(seed), str(threads)], check=True,
                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})
                facts = json.loads((root / "demo.json").read_text())
                for c in facts["checks"]:
                    rows.append({"seed": seed, "threads": threads, "check": c["name"], "value": c["value"],
                                 "bound": f"{c['op']} {c['bound']:g}", "holds": c["holds"]})
                print(f"seed {seed} threads {threads}: "
                      f"{sum(c['holds'] for c in facts['checks'])}/{len(facts['checks'])} checks hold", flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["check", "bound"])["value"].agg(["min", "median", "max"]).reset_index()
    summary["runs_holding"] = frame.groupby(["check", "bound"])["holds"].sum().to_numpy()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        frame.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
