"""The region test as a service: does taking a region away move each version? (Compare page, ``glassbox compare
--region``, and a concept's causal check.)

The service reads each case's image once; the perturbation and the re-prediction are
``explainers.perturbation.region_shifts``, the paired intervals ``evaluation.version_comparison.region_shift``.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from data_adapters.readers import read_image
from data_adapters.records import Cohort, ModelHandle
from evaluation.version_comparison import region_shift
from explainers.perturbation import region_shifts
from workspace.store import Workspace

__all__ = ["region_test"]


def region_test(ws: Workspace, versions: Sequence[ModelHandle], cohort: Cohort, case_ids: Sequence[str],
                region: str, how: str, frame: pd.DataFrame, by: Sequence[str], class_index: int | None, *,
                n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Perturb ``region`` in every case (``explainers.perturbation``), predict again with each version and
    return the mean shift of the probability of ``class_index`` (None: each case's top class under the first
    version) per version and group, with paired intervals and each version's shift minus the first's. ``ws``: the
    workspace the cohort was opened from (images are read from the cohort's own references)."""
    read = [read_image(cohort.case(c).image) for c in case_ids]  # each file decoded once, for every version
    shifts = region_shifts(list(versions), read, region, how, class_index)
    return region_shift(frame, shifts, list(by), n_boot=n_boot, seed=seed)
