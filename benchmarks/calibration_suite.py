"""Runs every area of the calibration suite (``benchmarks/calibration/``) with many simulations and prints the table
the README's statistics section quotes: claim, kind, nominal, measured with its acceptance band, simulations, design.

    python benchmarks/calibration_suite.py [--sims 400] [--seed 0] [--only subgroups,concepts]

Exits 1 when any claim falls outside its band.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.calibration import AREAS, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated areas (default: all)")
    args = parser.parse_args(argv)
    areas = [a for a in args.only.split(",") if a] or list(AREAS)
    claims = []
    for area in areas:
        try:
            module = importlib.import_module(f"benchmarks.calibration.{area}")
        except ModuleNotFoundError as error:
            print(f"{area}: not available ({error})", file=sys.stderr)
            continue
        start = time.perf_counter()
        found = module.claims(args.sims, args.seed)
        print(f"{area}: {len(found)} claim(s) in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        claims += found
    print(table(claims))
    return 0 if all(c.passed for c in claims) else 1


if __name__ == "__main__":
    sys.exit(main())
