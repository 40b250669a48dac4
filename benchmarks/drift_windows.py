"""The drift test for 12 windows × 1,000 cases against a 1,000-case reference (embeddings of --dim dimensions):
all permutations evaluated as one matrix product against a per-permutation loop, in one run.

    .venv/bin/python benchmarks/drift_windows.py [--windows 12] [--cases 1000] [--dim 64] [--perm 500]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.drift import _sq_dists, bandwidth, mmd_test, window_report  # noqa: E402


def naive_p(x, y, sigma, n_perm, seed=0):
    """What one writes first: recompute the statistic for each permutation."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([x, y])
    k = np.exp(-_sq_dists(z, z) / (2 * sigma * sigma))
    n = len(x)

    def stat(idx):
        a, b = idx[:n], idx[n:]
        return k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean()

    observed = stat(np.arange(len(z)))
    null = [stat(rng.permutation(len(z))) for _ in range(n_perm)]
    return (1 + sum(v >= observed for v in null)) / (n_perm + 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--perm", type=int, default=500)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(a.cases, a.dim)).astype(np.float32)
    cur = rng.normal(size=(a.windows * a.cases, a.dim)).astype(np.float32)
    cur[a.cases * 4:] += 0.3  # drift from the fifth window
    windows = np.repeat([f"2026-{m + 1:02d}" for m in range(a.windows)], a.cases)
    frame = lambda n: pd.DataFrame({"label": pd.array([pd.NA] * n, dtype="Int64")})  # noqa: E731
    reference = {"frame": frame(a.cases), "embedding": ref, "p": rng.random(a.cases), "intensity": rng.random((a.cases, 4))}
    current = {"frame": frame(len(cur)), "embedding": cur, "p": rng.random(len(cur)), "intensity": rng.random((len(cur), 4))}
    t = time.perf_counter()
    report = window_report(reference, current, windows, threshold=0.5, n_perm=a.perm, by_site=None)
    t_all = time.perf_counter() - t
    sigma = bandwidth(ref)
    t = time.perf_counter()
    mmd_test(ref, cur[:a.cases], sigma=sigma, n_perm=a.perm)
    t_one = time.perf_counter() - t
    naive_perm = 20
    t = time.perf_counter()
    naive_p(ref, cur[:a.cases], sigma, naive_perm)
    t_naive = (time.perf_counter() - t) * a.perm / naive_perm
    print(f"{a.windows} windows × {a.cases} cases, {a.dim}-d embeddings, {a.perm} permutations")
    print(f"  whole report                     {t_all:7.2f} s  (alerts from {report.windows.loc[report.windows['alert'], 'window'].min()})")
    print(f"  one window, all permutations     {t_one:7.2f} s")
    print(f"  one window, permutation loop     {t_naive:7.2f} s  (timed on {naive_perm}, scaled)  ratio {t_naive / t_one:5.1f}x")


if __name__ == "__main__":
    main()
