"""What ``glassbox uncertainty`` states about a cohort's uncertainty, computed here so the command only prints: the
cohort means of entropy and mutual information with their 95% bootstrap intervals (patients resampled where known),
how well entropy flags the model's own errors on held-out cases (:func:`evaluation.referral.error_detection`), and
whether recalibration was shown to help (:func:`evaluation.calibration.recalibrate`, as the Uncertainty page)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER, ENTROPY, MUTUAL_INFORMATION, PredictionTable, UncertaintyTable
from data_adapters.tables import probability_columns
from evaluation.inference import case_weights, cluster_weights, percentile_interval
from evaluation.outcomes import with_outcomes
from evaluation.referral import error_detection
from evaluation.subgroups import resampling

__all__ = ["UncertaintyReport", "uncertainty_report", "mean_with_interval"]


def mean_with_interval(values: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 1000,
                       seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values`` (NaN left out) with its 95% percentile bootstrap interval, whole
    clusters (patients) resampled when ``clusters`` is given, else cases."""
    values = np.asarray(values, float)
    ok = np.isfinite(values)
    if not ok.any():
        return np.nan, np.nan, np.nan
    v = values[ok]
    rng = np.random.default_rng(seed)
    w = (cluster_weights(np.asarray(clusters)[ok], n_boot, rng) if clusters is not None
         else case_weights(len(v), n_boot, rng)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = percentile_interval((w @ v) / w.sum(axis=1))
    return float(v.mean()), float(lo), float(hi)


@dataclasses.dataclass(frozen=True)
class UncertaintyReport:
    """``means``: figure → ``(mean, lo, hi)`` over every case; ``detection``: error detection by entropy on the
    labelled (held-out where the cohort has a test split) cases, None when none is labelled; ``rule``: how an error
    is judged; ``held_out``: which cases, in words; ``design``: what the intervals resample; ``recalibration``: the
    recalibration check's sentence (None: not run, e.g. multi-label)."""

    means: dict[str, tuple[float, float, float]]
    design: str
    detection: dict | None = None
    rule: str = ""
    held_out: str = ""
    recalibration: str | None = None


def uncertainty_report(cohort_frame: pd.DataFrame, predictions: PredictionTable, uncertainty: UncertaintyTable, *,
                       task: str, class_index: int | None, threshold: float | None = None, rule: str = "",
                       seed: int = 0) -> UncertaintyReport:
    """The report of one uncertainty table. Errors are the model's own predictions (``predictions``, as every page
    counts them) judged by ``class_index`` at ``threshold`` (None: the top class against the label); the
    uncertainty table gives each case's entropy."""
    figures = pd.DataFrame({"case_id": uncertainty.case_ids, ENTROPY: uncertainty.figure(ENTROPY),
                            MUTUAL_INFORMATION: uncertainty.figure(MUTUAL_INFORMATION)})
    cases = cohort_frame.merge(figures, on="case_id")
    clusters = cases[CLUSTER].to_numpy() if CLUSTER in cases and cases[CLUSTER].notna().all() else None
    means = {name: mean_with_interval(cases[name].to_numpy(), clusters, seed=seed)
             for name in (ENTROPY, MUTUAL_INFORMATION)}
    labelled = cases.merge(predictions.frame, on="case_id")
    labelled = labelled[labelled["label"].notna()]
    held_out = ""
    if "split" in labelled and (labelled["split"] == "test").any():  # judged on held-out cases, as the page is
        labelled, held_out = labelled[labelled["split"] == "test"], " (split 'test')"
    if not len(labelled):
        return UncertaintyReport(means, resampling(cases))
    n_classes = predictions.n_classes
    judged = (with_outcomes(labelled, None, n_classes=n_classes) if class_index is None
              else with_outcomes(labelled, class_index, threshold))
    groups = judged[CLUSTER].to_numpy() if CLUSTER in judged else None
    detection = error_detection(judged[ENTROPY].to_numpy(), judged["error"].to_numpy(), clusters=groups, seed=seed)
    message = None
    if task != "multilabel":  # as the Uncertainty page: fitted on some held-out patients, checked on others
        from evaluation.calibration import recalibrate

        try:
            message = recalibrate(judged[probability_columns(n_classes)].to_numpy(float),
                                  judged["label"].astype(int).to_numpy(), task, clusters=groups,
                                  class_index=class_index, seed=seed).message
        except InvalidInputError as e:
            message = f"recalibration not judged: {e}"
    return UncertaintyReport(means, resampling(judged), detection, rule, held_out, message)
