"""Uncertainty as a service: per-case mean probability, spread, predictive entropy and mutual information of a
cohort (Uncertainty page, Compare, ``glassbox uncertainty``, the board report, ``glassbox precompute``) or of one case
(Case review).

The service keys and keeps the tables; the methods (MC dropout, test-time augmentation, an ensemble), their
default draws and the summary of the draws are ``explainers.uncertainty``, the table
``data_adapters.tables.UncertaintyTable``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError
from data_adapters.hashing import json_hash
from data_adapters.records import Case, Cohort, ModelHandle
from data_adapters.tables import UncertaintyTable
from explainers import uncertainty as uncertainty_lib
from workspace import cache
from workspace.store import Progress, Workspace

__all__ = ["forward_passes", "case_uncertainty", "uncertainty", "uncertainty_path", "uncertainty_table"]


def _used(handles: Sequence[ModelHandle], method: str) -> list[ModelHandle]:
    return list(handles) if method == "ensemble" else list(handles[:1])


def uncertainty_path(ws: Workspace, handles: Sequence[ModelHandle], cohort: Cohort, method: str, *,
                     samples: int | None = None, seed: int = 0) -> Path:
    """Where :func:`uncertainty` keeps its table (``glassbox precompute`` writes the same file)."""
    used = _used(handles, method)
    samples = samples or uncertainty_lib.DEFAULT_SAMPLES.get(method)
    params = {"samples": samples, "seed": seed} if method != "ensemble" else {}
    # "per-case-v2": draws seeded per case and dropout sampled with each layer's semantics (older caches differ)
    key = json_hash("uncertainty", "per-case-v2", cache.NUMERICS, method, params, [h.weights_hash for h in used],
                    cohort.content_hash)
    return ws.cache / "uncertainty" / f"{key[:40]}.parquet"


def forward_passes(handles: Sequence[ModelHandle], cohort: Cohort, method: str, *, samples: int | None = None) -> int:
    """How many forward passes :func:`uncertainty` costs on ``cohort``: cases × draws (``mc_dropout``, ``tta``) or
    cases × versions (``ensemble``). What decides whether a page computes it while it waits or in a background job."""
    per_case = len(_used(handles, method)) if method == "ensemble" else (
        samples or uncertainty_lib.DEFAULT_SAMPLES.get(method) or 1)
    return len(cohort) * per_case


def uncertainty(ws: Workspace, handles: Sequence[ModelHandle], cohort: Cohort, method: str, *,
                samples: int | None = None, seed: int = 0, progress: Progress | None = None,
                cached_only: bool = False) -> UncertaintyTable | None:
    """Per-case mean probability, spread, predictive entropy and mutual information, computed once.

    ``method``: ``mc_dropout`` or ``tta`` (first handle) or ``ensemble`` (all handles). ``cached_only``: the
    cached table or None, never a computation (what a page that opens on a whole cohort may ask).
    """
    run = uncertainty_lib.UNCERTAINTY_METHODS.get(method)
    used = _used(handles, method)
    samples = samples or uncertainty_lib.DEFAULT_SAMPLES.get(method)
    path = uncertainty_path(ws, used, cohort, method, samples=samples, seed=seed)
    first = used[0]

    def table(frame: pd.DataFrame | None) -> UncertaintyTable | None:
        return None if frame is None else UncertaintyTable(frame, method=method, task=first.task,
                                                           n_classes=first.n_classes)
    if cached_only:
        return table(cache.read_frame(path, cohort.case_ids))
    cases = list(cohort.cases)

    def compute() -> pd.DataFrame:
        draws = run(used, cases, samples, seed, progress)
        return uncertainty_table(cases, draws, method, first.task).frame

    return table(cache.cached_frame(path, compute, [c.case_id for c in cases]))


def case_uncertainty(ws: Workspace, handle: ModelHandle, case: Case, method: str, *, samples: int | None = None,
                     seed: int = 0) -> UncertaintyTable:
    """One case's uncertainty row, computed for that case alone: equal to its row of :func:`uncertainty`
    (draws are seeded by the case's own content, never by its batch), so a page can show the case in view
    without running the whole cohort. Nothing is kept (``ws`` is the workspace the case's cohort came from)."""
    if method == "ensemble":
        raise InvalidInputError("an ensemble's uncertainty is computed for the cohort (Uncertainty page)")
    run = uncertainty_lib.UNCERTAINTY_METHODS.get(method)
    samples = samples or uncertainty_lib.DEFAULT_SAMPLES.get(method)
    draws = run([handle], [case], samples, seed, None)
    return uncertainty_table([case], draws, method, handle.task)


def uncertainty_table(cases: Sequence[Case], draws: np.ndarray, method: str, task: str) -> UncertaintyTable:
    """The table of ``method``'s draws ``(T, N, K)`` for these cases (what :func:`uncertainty` caches and
    ``glassbox precompute`` writes)."""
    return UncertaintyTable.of([c.case_id for c in cases], uncertainty_lib.summarise(draws, task), method=method,
                               task=task)
