"""Explanation trust as a service: the trust checks of maps (Case review's trust strip), explanation quality over a
stratified sample (Explanation quality page, ``glassbox trust``, the board report) and map agreement between
versions (Compare).

The service gathers (maps from the attribution cache, images and masks on the model's grid, each version's
operating point) and keeps results cached by content; which checks apply and what each says is
``explainers.trust`` (``applicable_checks``, ``check_rows``), which cases are sampled and the class each is explained
for ``evaluation.explanation_quality.quality_sample``, and how two maps agree ``explainers.agreement``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_adapters.cohort import load_image_batch
from data_adapters.hashing import file_hash, json_hash
from data_adapters.preprocessing import fit_image
from data_adapters.readers import read_image
from data_adapters.records import Attribution, Case, Cohort, ModelHandle
from evaluation.cohort_summary import with_bands
from evaluation.explanation_quality import quality_sample
from evaluation.outcomes import judged_class
from explainers import agreement
from explainers import trust as trust_lib
from explainers.saliency import SALIENCY_METHODS, explain
from workspace import cache
from workspace.store import Progress, Workspace

__all__ = ["explanation_quality", "map_agreement", "trust"]


def trust(ws: Workspace, handle: ModelHandle, cohort: Cohort, cases: Sequence[Case], method: str, target: int, *,
          checks: Sequence[str] | None = None, seed: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """Per case and check (``explainers.trust``): the value, chance (localisation), band and whether the map
    itself is unreadable; maps from the attribution cache, results cached by content."""
    names = trust_lib.applicable_checks(checks, masks_known=any(c.mask for c in cases))
    key = json_hash("trust-v3", cache.NUMERICS, handle.weights_hash, method, int(target), names, seed,
                    [(c.case_id, c.image_hash, file_hash(c.mask) if c.mask else None) for c in cases])
    ids = [c.case_id for c in cases]

    def compute() -> pd.DataFrame:
        maps = np.stack([a.array for a in ws.attributions(handle, cases, method, target)])
        images = load_image_batch(cases, handle.preprocessing)
        masks = [fit_image(handle.preprocessing, read_image(c.mask), label=True)[0] > 0.5 if c.mask else None
                 for c in cases]

        def recompute(h: ModelHandle, batch: np.ndarray) -> np.ndarray:
            return np.stack([a.array for a in explain(h, batch, ids, method, target)])

        draws = trust_lib.stability_draws(SALIENCY_METHODS.get(method).relative_cost)
        inputs = trust_lib.CheckInputs(handle, images, maps, int(target), masks, recompute, seed, draws)
        return pd.DataFrame(trust_lib.check_rows(inputs, ids, method, names, progress))

    return cache.cached_frame(ws.cache / "trust" / f"{key[:40]}.parquet", compute, None)


def explanation_quality(ws: Workspace, handle: ModelHandle, cohort: Cohort, methods: Sequence[str], *,
                        n_cases: int = 24, strata: Sequence[str] = (), seed: int = 0,
                        progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trust checks of each method over a sample of labelled cases stratified by ``strata`` and outcome:
    ``(per-case checks, the sample's frame)``. The class explained: a binary model's positive class; a
    multi-class model's top class for each case."""
    frame = with_bands(cohort.frame()).merge(ws.predictions(handle, cohort).frame, on="case_id")
    k = judged_class(handle)
    sample, targets = quality_sample(frame, n_cases, strata, n_classes=handle.n_classes, class_index=k,
                                     threshold=lambda: ws.operating_point(handle, cohort, k).threshold, seed=seed,
                                     cohort=cohort.name)
    parts, steps, done = [], len(methods) * targets.nunique(), 0
    for method in methods:
        for target, ids in sample.groupby(targets.to_numpy())["case_id"]:
            parts.append(trust(ws, handle, cohort, [cohort.case(c) for c in ids], method, int(target), seed=seed))
            done += 1
            if progress:
                progress(done, steps)
    return pd.concat(parts, ignore_index=True), sample


def map_agreement(ws: Workspace, versions: Sequence[ModelHandle], cases: Sequence[Case], method: str,
                  targets: Sequence[int], *, progress: Progress | None = None) -> pd.DataFrame:
    """Per case, agreement between the first version's map and each other's (``explainers.agreement``), for the
    class ``targets[i]`` of case ``i``; maps come from (and go to) the attribution cache."""
    others = versions[1:]
    maps: dict[tuple[int, int], Attribution] = {}
    by_target: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_target.setdefault(int(t), []).append(i)
    steps, done = len(versions) * len(by_target), 0
    for v, handle in enumerate(versions):
        for t, idx in by_target.items():
            for i, a in zip(idx, ws.attributions(handle, [cases[i] for i in idx], method, t)):
                maps[(v, i)] = a
            done += 1
            if progress:
                progress(done, steps)
    rows = []
    for i, case in enumerate(cases):
        for v, other in enumerate(others, start=1):
            rows.append({"case_id": case.case_id, "version": other.version, "target": int(targets[i]),
                         **agreement.map_agreement(maps[(0, i)].array, maps[(v, i)].array)})
    return pd.DataFrame(rows)
