"""Version comparison as a service: what the Compare page, ``glassbox compare`` and the board report all call.

The service gathers (each version's cached predictions, its operating point, the provenance every kept table
carries); the judgement is ``evaluation.version_comparison`` (which cases, the paired deltas, the flips).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import pandas as pd

from data_adapters.records import Cohort, ModelHandle
from evaluation.cohort_summary import with_bands
from evaluation.version_comparison import N_BOOT, ComparisonReport, comparable, compare_versions, comparison_cases
from workspace.store import Workspace

__all__ = ["Comparison", "compare"]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A version comparison as pages and commands show it (see :func:`compare`)."""

    report: ComparisonReport
    changes: pd.DataFrame
    summary: dict[str, float]
    thresholds: tuple[float, float] | None
    provenance: dict[str, str]
    grouping: tuple[str, ...]


def compare(ws: Workspace, base: ModelHandle, cand: ModelHandle, cohort: Cohort, *, by: Sequence[str] = (),
            where: dict[str, str] | None = None, class_index: int | None = None,
            margins: dict[str, float] | None = None, n_boot: int = N_BOOT, seed: int = 0,
            min_n: int = 30) -> Comparison:
    """``cand`` against ``base`` on the labelled cases of ``cohort`` matching ``where`` (attribute → value):
    the paired delta table, the per-case changes and their summary, each version's shared threshold (one class
    one-vs-rest) and the provenance every kept table carries."""
    comparable(base, cand)
    cases = comparison_cases(with_bands(cohort.frame()), where, cohort.name)
    thresholds = None
    if class_index is not None:
        thresholds = (ws.operating_point(base, cohort, class_index).threshold,
                      ws.operating_point(cand, cohort, class_index).threshold)
    grouping = tuple(by)
    report, changes, summary = compare_versions(
        cases, ws.predictions(base, cohort), ws.predictions(cand, cohort), base.n_classes, by=grouping,
        baseline=base.version, candidate=cand.version, class_index=class_index, thresholds=thresholds,
        margins=margins, n_boot=n_boot, seed=seed, min_n=min_n)
    meta = {"models": f"{base.label} ({base.weights_hash[:12]}); {cand.label} ({cand.weights_hash[:12]})",
            "cohort": f"{cohort.name} ({cohort.content_hash[:12]})",
            "cases": ", ".join(f"{k}={v}" for k, v in (where or {}).items()) or "all labelled",
            "thresholds": "; ".join(f"{t:.3f}" for t in thresholds) if thresholds else "top class",
            "computed": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    return Comparison(report=report, changes=changes, summary=summary, thresholds=thresholds,
                      provenance=meta, grouping=grouping)
