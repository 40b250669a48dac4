"""Concepts as a service: TCAV scores with their significance and causal check (Concepts page, ``glassbox
concepts``, Compare's TCAV, the demo's checks) and one case's conceptual sensitivity (Case review).

The service resolves concept folders within the workspace's roots, keeps scores and CAVs cached by content, and
reads the cases; which cases are the inputs, how many reference concepts the null needs and the runs themselves are
``explainers.concepts``, the verdicts ``evaluation.concept_significance``, the causal check the region test
(:mod:`workspace.region_test`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_adapters.cohort import load_image_batch
from data_adapters.errors import InvalidInputError
from data_adapters.hashing import json_hash
from data_adapters.records import Case, Cohort, ModelHandle
from evaluation.concept_significance import CausalCheck
from evaluation.concept_significance import concept_scores as significance
from explainers import concepts as concept_lib
from workspace import cache
from workspace.region_test import region_test
from workspace.store import Progress, Workspace

__all__ = ["concept_causal_check", "concept_scores", "concept_sensitivity"]


def concept_scores(ws: Workspace, handle: ModelHandle, cohort: Cohort, cohort_folder: Path, concepts: Sequence[str],
                   layers: Sequence[str] | None = None, target: int | str | None = None, *,
                   n_random: int = concept_lib.RUNS, references: int = concept_lib.REFERENCES,
                   n_inputs: int = 50, pool_size: int = 400, seed: int = 0,
                   progress: Progress | None = None) -> pd.DataFrame:
    """TCAV scores with significance, one row per concept and layer; cached by model, concepts and settings.

    ``n_random`` runs per concept and layer, each with its own concept half, its own random sample (from up to
    ``pool_size`` labelled cases of the other classes) and its own CAV; ``references`` reference concepts drawn
    from that pool and run the same way make the null (``evaluation.concept_significance``). Inputs are up to
    ``n_inputs`` labelled cases of the target class (held-out ``split == test`` first). A concept folder with an
    ``erase`` entry in its ``concept.json`` gets its causal check beside the score (:func:`concept_causal_check`).
    """
    target_index = handle.class_index(handle.n_classes - 1 if target is None else target)
    layer_names = list(layers or concept_lib.default_layers(handle))
    roots = [Path(cohort_folder), *ws.data_roots]
    sets = [concept_lib.resolve_concept(c, cohort, cohort_folder, handle, roots=roots) for c in concepts]
    inputs = concept_lib.tcav_inputs(cohort, target_index, n_inputs, handle.class_names[target_index])
    pool = concept_lib.random_pool(cohort, pool_size, seed, exclude_class=target_index)
    references = concept_lib.reference_count(references, len(sets), len(layer_names))
    key = json_hash("tcav", "independent-runs-reference-concepts", 4, cache.NUMERICS, handle.weights_hash,
                    cohort.content_hash, [s.content_hash for s in sets], [s.name for s in sets],
                    [dataclasses.astuple(s.erase)[:3] if s.erase else None for s in sets], layer_names,
                    target_index, n_random, references, pool_size, [c.case_id for c in inputs], seed)

    def compute() -> pd.DataFrame:
        runs = concept_lib.tcav_runs(handle, load_image_batch(inputs, handle.preprocessing), sets, layer_names,
                                     target_index, load_image_batch(pool, handle.preprocessing),
                                     runs=n_random, references=references, seed=seed, progress=progress)
        causal = {s.name: check for s in sets
                  if (check := concept_causal_check(ws, handle, cohort, s, target_index, n=n_inputs))}
        return pd.DataFrame([dataclasses.asdict(s) for s in significance(runs, causal=causal)])

    return cache.cached_frame(ws.cache / "concepts" / f"{key[:40]}.parquet", compute, None)


def concept_causal_check(ws: Workspace, handle: ModelHandle, cohort: Cohort, concept: concept_lib.ConceptSet,
                         target: int, *, n: int = 50, seed: int = 0) -> CausalCheck | None:
    """The concept taken away from real cases, where its folder says how (``concept.json``: ``{"erase":
    {"region": ..., "perturb": ..., "cases": "attr == value"}}``): the region test (``workspace.region_test``) on up
    to ``n`` labelled cases of class ``target`` that match ``cases`` (held-out first). None without such an entry."""
    erase = concept.erase
    if erase is None:
        return None
    chosen = concept_lib.concept_cases(cohort, erase.cases, target)
    if not chosen:
        raise InvalidInputError(f"{erase.source}: erase.cases {erase.cases!r} matches no labelled case of class "
                                f"{handle.class_names[target]!r} in cohort {cohort.name!r}")
    ids = [c.case_id for c in chosen[:n]]
    frame = cohort.frame().set_index("case_id").loc[ids].reset_index()
    shift = region_test(ws, [handle], cohort, ids, erase.region, erase.perturb, frame, [], target, seed=seed)
    row = shift[(shift["group"] == "overall") & (shift["version"] == handle.version)].iloc[0]
    return CausalCheck(description=f"erasing {erase.region!r} ({erase.perturb}) in {len(ids)} cases of class "
                                   f"{handle.class_names[target]!r} with {erase.cases}",
                       shift=float(row["mean_shift"]), lo=float(row["lo"]), hi=float(row["hi"]), n=len(ids))


def concept_sensitivity(ws: Workspace, handle: ModelHandle, cohort: Cohort, cohort_folder: Path, concept: str,
                        layer: str, cases: Sequence[Case], target: int | str, *, seed: int = 0) -> pd.DataFrame:
    """Per case, the directional derivative along the concept's CAV (the CAV cached on disk)."""
    concept_set = concept_lib.resolve_concept(concept, cohort, cohort_folder, handle,
                                              roots=[Path(cohort_folder), *ws.data_roots])
    (random,) = concept_lib.random_concepts(cohort, 1, min(50, len(cohort)), seed, handle.preprocessing,
                                            exclude_class=handle.class_index(target))
    key = json_hash("cav", handle.weights_hash, concept_set.content_hash, random.content_hash, layer, seed)

    def compute() -> dict[str, np.ndarray]:
        cav, accuracy = concept_lib.concept_vector(handle, concept_set, random, layer, seed)
        return {"cav": np.asarray(cav), "accuracy": np.array(accuracy)}

    arrays = cache.cached_arrays(ws.cache / "cav_vectors" / f"{key[:40]}.npz", ("cav", "accuracy"), compute)
    values = concept_lib.conceptual_sensitivity(handle, load_image_batch(cases, handle.preprocessing), arrays["cav"],
                                                layer, target)
    return pd.DataFrame({"case_id": [c.case_id for c in cases], "concept": concept, "layer": layer,
                         "sensitivity": values, "cav_accuracy": float(arrays["accuracy"])})
