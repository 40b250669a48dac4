"""Integrated gradients (50 steps) over 64 demo cases: Glassbox's batched path against a naive per-image loop.

Prints seconds, cases/second and the ratio, plus the warm (cached) path. Run after `glassbox demo`:

    .venv/bin/python benchmarks/integrated_gradients.py [--cases 64] [--steps 50]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import IntegratedGradients  # noqa: E402

from data_adapters.cohort import load_image_batch, load_manifest  # noqa: E402
from data_adapters.models import load_model  # noqa: E402
from data_adapters.preprocessing import prepare_batch  # noqa: E402
from explainers.device import best_device  # noqa: E402
from explainers.inference import ClassScores  # noqa: E402
from explainers.saliency import explain  # noqa: E402
from workspace.store import Workspace, default_workspace  # noqa: E402


def naive(handle, images, steps, method="gausslegendre", deltas=None):
    """What one would write first: Captum IG on one image at a time."""
    ig = IntegratedGradients(ClassScores(handle))
    out = []
    for image in images:
        x = prepare_batch(handle.preprocessing, image[None], best_device()).requires_grad_(True)
        a, d = ig.attribute(x, target=1, n_steps=steps, method=method, return_convergence_delta=True)
        out.append(a[0].detach().cpu().numpy())
        if deltas is not None:
            deltas.append(float(d.abs().item()))
    return np.stack(out)


def relative(handle, images, deltas):
    """Completeness errors relative to |score(x) - score(baseline)|, per case."""
    scorer = ClassScores(handle)
    with torch.no_grad():
        x = prepare_batch(handle.preprocessing, images, best_device())
        gap = (scorer(x)[:, 1] - scorer(torch.zeros_like(x))[:, 1]).abs().cpu().numpy()
    return np.asarray(deltas) / np.maximum(gap, 1e-6)


def adaptive_section(handle, images, cases, steps):
    """Per-case steps chosen to meet a completeness tolerance, against the naive 50-step loops."""
    ids = [c.case_id for c in cases]
    print("\nadaptive steps (Gauss-Legendre, ladder 12/24/48/96, tolerance 5% of |score(x) - score(baseline)|):")
    rows = []
    for label, method in (("naive loop, Riemann trapezoid", "riemann_trapezoid"),
                          ("naive loop, Gauss-Legendre", "gausslegendre")):
        d = []
        t = time.perf_counter()
        naive(handle, images, steps, method, d)
        rows.append((f"{label} {steps} steps", time.perf_counter() - t, relative(handle, images, d), steps))
    t = time.perf_counter()
    out = explain(handle, images, ids, "integrated_gradients", 1, {"n_steps": 0, "tolerance": 0.05})
    rows.append(("glassbox adaptive", time.perf_counter() - t,
                 relative(handle, images, [abs(a.convergence_delta) for a in out]),
                 float(np.mean([a.params["steps_used"] for a in out]))))
    base = rows[0][1]
    for label, seconds, rel, n in rows:
        print(f"  {label:42s} {seconds:6.2f} s  ratio {base / seconds:5.2f}x vs Riemann  mean steps {n:5.1f}  "
              f"completeness error median {np.median(rel):.2%}  max {rel.max():.2%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(default_workspace()))
    ap.add_argument("--cases", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--model", default="v2")
    a = ap.parse_args()
    ws = Workspace(a.workspace)
    handle = load_model(ws.model_paths()[a.model])
    handle.module.to(best_device())
    cohort = load_manifest(ws.cohort_paths()["demo2d"])
    cases = list(cohort.cases[: a.cases])
    images = load_image_batch(cases)
    print(f"device {best_device()}, torch threads {torch.get_num_threads()}, {len(cases)} cases "
          f"{images.shape[1:]}, IG {a.steps} steps, model {handle.label}")
    naive(handle, images[:2], a.steps)  # warm-up both paths
    explain(handle, images[:2], ["w1", "w2"], "integrated_gradients", 1, {"n_steps": a.steps})

    t = time.perf_counter()
    reference = naive(handle, images, a.steps)
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    batched = explain(handle, images, [c.case_id for c in cases], "integrated_gradients", 1, {"n_steps": a.steps})
    t_batched = time.perf_counter() - t
    diff = max(float(np.abs(b.array - r).max() / (np.abs(r).max() + 1e-12)) for b, r in zip(batched, reference))

    with tempfile.TemporaryDirectory() as tmp:
        cache = Workspace(tmp)
        t = time.perf_counter()
        cache.attributions(handle, cases, "integrated_gradients", 1, {"n_steps": a.steps})
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        cache.attributions(handle, cases, "integrated_gradients", 1, {"n_steps": a.steps})
        t_warm = time.perf_counter() - t

    n = len(cases)
    print(f"naive per-image loop   {t_naive:7.2f} s  {n / t_naive:8.1f} cases/s")
    print(f"glassbox batched       {t_batched:7.2f} s  {n / t_batched:8.1f} cases/s  ratio {t_naive / t_batched:5.2f}x")
    print(f"glassbox cold + cache  {t_cold:7.2f} s  {n / t_cold:8.1f} cases/s  (computes, writes float32 maps with digests)")
    print(f"glassbox warm (cached) {t_warm:7.3f} s  {n / t_warm:8.1f} cases/s  ratio {t_naive / t_warm:7.1f}x")
    print(f"max relative difference batched vs naive: {diff:.2e}")
    adaptive_section(handle, images, cases, a.steps)


if __name__ == "__main__":
    main()
