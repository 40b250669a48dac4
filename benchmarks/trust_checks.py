"""Explanation quality on the CPU: the cohort-level page's computation (every trust check for N cases × M methods,
cold cache), and the batched deletion check against Quantus' PixelFlipping called per case (the reference
implementation the way one would call it first), on the same maps.

    .venv/bin/python benchmarks/trust_checks.py [--cases 200] [--methods saliency,integrated_gradients,grad_cam,occlusion]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from data_adapters.cohort import load_image_batch  # noqa: E402
from explainers.inference import ClassScores  # noqa: E402
from explainers.trust import TRUST_CHECKS, CheckInputs  # noqa: E402
from workspace.store import Workspace, default_workspace  # noqa: E402
from workspace.trust import explanation_quality  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(default_workspace()))
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--methods", default="saliency,integrated_gradients,grad_cam,occlusion")
    ap.add_argument("--reference-cases", type=int, default=10)
    ap.add_argument("--reference-only", action="store_true", help="skip the cohort page's timing")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    demo = Workspace(a.workspace)
    handle = demo.load_model(demo.model_paths()["v2"])
    with tempfile.TemporaryDirectory() as tmp:  # a cold cache: maps and checks computed from scratch
        for sub in ("models", "cohorts"):
            (Path(tmp) / sub).symlink_to(Path(a.workspace).resolve() / sub)
        ws = Workspace(tmp)
        cohort = ws.cohort_for(handle, ws.cohort_paths()["demo2d"])
        methods = a.methods.split(",") if not a.reference_only else ["saliency"]
        n_cases = a.cases if not a.reference_only else a.reference_cases
        t = time.perf_counter()
        checks, sample = explanation_quality(ws, handle, cohort, methods, n_cases=n_cases, strata=["site"])
        page = time.perf_counter() - t
        print(f"cohort page: {len(sample)} cases × {len(methods)} methods ({', '.join(methods)}), every check, cold: "
              f"{page:.1f} s ({page / len(sample) / len(methods):.2f} s per case and method)")

        import quantus
        cases = [cohort.case(c) for c in sample["case_id"][: a.reference_cases]]
        images = load_image_batch(cases, handle.preprocessing)
        maps = np.stack([x.array for x in ws.attributions(handle, cases, "saliency", 1)])
        inputs = CheckInputs(handle, images, maps, 1, [None] * len(cases), lambda h, x: x, 0)
        t = time.perf_counter()
        TRUST_CHECKS.get("deletion").compute(inputs)
        ours = time.perf_counter() - t
        metric = quantus.PixelFlipping(features_in_step=images[0].size // 16, perturb_baseline="mean",
                                       disable_warnings=True, display_progressbar=False, abs=True, normalise=False)
        t = time.perf_counter()
        for i in range(len(cases)):
            metric(model=ClassScores(handle).eval(), x_batch=images[i:i + 1], y_batch=np.array([1]), a_batch=maps[i:i + 1],
                   channel_first=True, softmax=False, device="cpu")
        reference = time.perf_counter() - t
        print(f"deletion on {len(cases)} cases: batched {ours:.2f} s (with a random-order baseline too), Quantus "
              f"PixelFlipping per case {reference:.2f} s (map order only, 16 steps; timing only: it follows the logit): ratio {reference / ours:.1f}x")


if __name__ == "__main__":
    main()
