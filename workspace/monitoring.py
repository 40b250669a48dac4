"""Monitoring as a service: drift of a current cohort against a reference (Monitoring page, ``glassbox monitor``,
the board report's monitoring section).

The service gathers (each cohort's embeddings, probabilities and intensity statistics, cached; the model
version's operating point); which class is judged is ``evaluation.outcomes.judged_class``, the attributes
reported ``evaluation.drift.drift_attributes``, and the drift tests and per-window verdicts
``evaluation.drift.window_report``.
"""
from __future__ import annotations

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.hashing import json_hash
from data_adapters.records import Cohort, ModelHandle
from evaluation.drift import DriftReport, drift_attributes, window_report
from evaluation.outcomes import judged_class
from explainers.embeddings import embed_cases
from workspace import cache
from workspace.store import Progress, Workspace

__all__ = ["EMBEDDING_ARRAYS", "embeddings", "monitor"]

#: what :func:`embeddings` returns per case, in cohort order
EMBEDDING_ARRAYS = ("embedding", "probabilities", "intensity")


def embeddings(ws: Workspace, handle: ModelHandle, cohort: Cohort, *,
               progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Per case: the model's penultimate embedding, its probabilities and intensity statistics, computed in one
    batched pass and cached (``cache/embeddings``), in cohort order."""
    key = json_hash("embeddings", cache.NUMERICS, handle.weights_hash, cohort.content_hash)
    path = ws.cache / "embeddings" / f"{key[:40]}.npz"

    def compute() -> dict[str, np.ndarray]:
        emb, probs, intensity = embed_cases(handle, list(cohort.cases), progress=progress)
        return {"embedding": emb, "probabilities": probs, "intensity": intensity,
                "case_id": np.array(cohort.case_ids)}

    arrays = cache.cached_arrays(path, (*EMBEDDING_ARRAYS, "case_id"), compute,
                                 valid=lambda a: a["case_id"].tolist() == cohort.case_ids)
    return {k: arrays[k] for k in EMBEDDING_ARRAYS}


def monitor(ws: Workspace, handle: ModelHandle, reference: Cohort, current: Cohort, *,
            window: str = "acquired_month", alpha: float = 0.01, n_perm: int = 500, seed: int = 0,
            target: int | str | None = None, progress: Progress | None = None) -> DriftReport:
    """Drift of ``current`` (by its ``window`` attribute) against ``reference`` (``evaluation.drift``), each case
    judged by the model's own outcome: a multi-class model by its top class against the label, a binary one
    (or ``target``, one class one-vs-rest) at the model version's operating point (``Workspace.operating_point``, the
    one every page and the report use), which the report carries with its provenance."""
    if window not in current.attribute_schema:
        raise InvalidInputError(f"cohort {current.name!r} has no {window!r} column to window by; it has "
                                f"{', '.join(current.attribute_schema) or 'no attributes'}")
    k = judged_class(handle, target)
    point = ws.operating_point(handle, reference, k) if k is not None else None
    parts = {}
    for name, c in (("reference", reference), ("current", current)):
        e = embeddings(ws, handle, c, progress=progress)
        parts[name] = {"frame": c.frame(), "embedding": e["embedding"], "probabilities": e["probabilities"],
                       "intensity": e["intensity"]}
    return window_report(parts["reference"], parts["current"], parts["current"]["frame"][window].astype(str),
                         threshold=point.threshold if point else None, class_index=k, alpha=alpha,
                         n_perm=n_perm, seed=seed,
                         attributes=drift_attributes(reference.attribute_schema, current.attribute_schema),
                         kinds=current.attribute_schema,
                         operating_point=(f"class {handle.class_names[k]!r} at threshold {point.describe()}"
                                          if point else "top class against the label"),
                         warnings=(point.warning,) if point and point.warning else ())
