"""Coverage of 95% intervals when patients contribute several images: the cluster bootstrap (resample patients)
against the image bootstrap (resample images as if independent), on simulated chest-like cohorts (200 images, one
patient with 40; see ``evaluation.simulation``). Smaller concentration: a patient's images agree more.

    .venv/bin/python benchmarks/cluster_coverage.py [--sims 400] [--resamples 500]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.simulation import coverage  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=500)
    args = parser.parse_args()
    print(f"{args.sims} simulated cohorts per row, {args.resamples} resamples, nominal coverage 0.95")
    print("concentration  ICC   coverage(patients)  coverage(images)  width ratio images/patients")
    for concentration in (0.5, 1.0, 4.0, 1000.0):
        c = coverage(args.sims, n_boot=args.resamples, concentration=concentration)
        print(f"{concentration:>13g}  {1 / (concentration + 1):.2f}  {c['coverage_patients']:>18.3f}  "
              f"{c['coverage_images']:>16.3f}  {c['width_images'] / c['width_patients']:>27.2f}")


if __name__ == "__main__":
    main()
