"""Does uncertainty flag the model's mistakes? Error-detection AUROC, risk-coverage, uncertainty by group; and the
referral policy: which cases "refer the most uncertain fraction" sends to a reader (:func:`referral_cutoff`,
:func:`referred`: the one rule the Uncertainty page, Case review's worklist and case panel, the board report and
monitoring use), with what referring does to the cases the model keeps and the clinical figures per 1000 cases,
each with its 95% Wilson interval, clustered by patient where the cohort knows its patients
(:func:`referral_outcomes`, :func:`clinical_rates`; coverage simulated in ``benchmarks/calibration/referral.py``)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_adapters.tables import CLUSTER, UncertaintyTable, mean_columns, probability_columns
from data_adapters.errors import InvalidInputError
from evaluation.inference import percentile_interval, wilson, wilson_clustered
from evaluation.metrics import auroc, bootstrap_weights, cluster_weights, counts
from evaluation.subgroups import MISSING


def error_detection(uncertainty: np.ndarray, error: np.ndarray, *, clusters: np.ndarray | None = None,
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """AUROC of uncertainty as a score for "the model is wrong", with a bootstrap interval: stratified by error,
    or resampling patients when ``clusters`` (one code per case) says which patient each image came from.

    0.5: uncertainty says nothing about errors; 1.0: every error is more uncertain than every correct answer.
    """
    error = np.asarray(error, bool)
    u = np.asarray(uncertainty, float)
    if error.all() or not error.any():
        return {"auroc": np.nan, "lo": np.nan, "hi": np.nan, "errors": int(error.sum()), "n": len(error)}
    dummy = np.zeros(len(u), bool)
    point = float(auroc(counts(np.ones((1, len(u))), error, u, dummy))[0])
    rng = np.random.default_rng(seed)
    weights = (cluster_weights(clusters, n_boot, rng) if clusters is not None
               else bootstrap_weights(error, n_boot, rng))
    reps = auroc(counts(weights, error, u, dummy))
    lo, hi = percentile_interval(reps, level)
    return {"auroc": point, "lo": float(lo), "hi": float(hi), "errors": int(error.sum()), "n": len(error)}


def risk_coverage(uncertainty: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Accuracy on the cases kept when the most uncertain are referred: one row per coverage level.

    ``coverage`` is the fraction kept (most certain first); ``referred`` is 1 - coverage.
    """
    order = np.argsort(np.asarray(uncertainty, float), kind="stable")
    kept_correct = np.cumsum(np.asarray(correct, float)[order])
    n = np.arange(1, len(order) + 1)
    return pd.DataFrame({"coverage": n / len(order), "accuracy": kept_correct / n,
                         "uncertainty_cutoff": np.asarray(uncertainty, float)[order]})


def area_under_risk_coverage(curve: pd.DataFrame) -> float:
    """Mean risk (1 - accuracy) over coverage levels: lower is better (Geifman & El-Yaniv, 2017)."""
    return float((1 - curve["accuracy"]).mean())


def uncertainty_by_group(frame: pd.DataFrame, by: str | Sequence[str], column: str, *, n_boot: int = 1000,
                         seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Mean uncertainty per group with a bootstrap interval (resampling patients where the frame has
    :data:`CLUSTER`), plus the median and n."""
    by = [by] if isinstance(by, str) else list(by)
    frame = frame.copy()
    for b in by:
        frame[b] = frame[b].astype("string").fillna(MISSING)
    rng = np.random.default_rng(seed)
    rows = []
    for key, sub in frame.groupby(by if len(by) > 1 else by[0], observed=True, sort=True):
        values = sub[column].to_numpy(float)
        if CLUSTER in sub and sub[CLUSTER].notna().all():
            w = cluster_weights(sub[CLUSTER].to_numpy(), n_boot, rng)
            with np.errstate(invalid="ignore", divide="ignore"):
                boots = (w @ values) / w.sum(axis=1)
        else:
            boots = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
        lo, hi = percentile_interval(boots, level)
        name = " · ".join(map(str, key if isinstance(key, tuple) else (key,)))
        rows.append({"group": name, "n": len(values), "mean": values.mean(), "mean_lo": lo, "mean_hi": hi,
                     "median": float(np.median(values))})
    return pd.DataFrame(rows)


#: the share of a cohort's most uncertain cases referred to a reader when none is chosen (the Uncertainty page's
#: slider starts there; Case review, the board report and monitoring use it)
REFER_FRACTION = 0.1


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(fraction) <= 1.0:
        raise InvalidInputError(f"refer fraction {fraction!r}: must be a share of the cohort from 0 to 1")
    return float(fraction)


def referral_cutoff(values: np.ndarray, fraction: float = REFER_FRACTION) -> float:
    """The cohort's referral cutoff: a case is referred when its uncertainty is above it (:func:`referred`).

    Of the ``n`` finite ``values``, the ``m = floor(fraction · n + 0.5)`` most uncertain lie above it (the cutoff is
    the largest value kept); where values tie at the cutoff all of them are kept, so fewer are referred rather than a
    tie split by case order. ``+inf`` when no value is finite (nothing referred), ``-inf`` when all are referred."""
    fraction = _check_fraction(fraction)
    v = np.sort(np.asarray(values, np.float64).ravel())
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return float("inf")
    m = int(np.floor(fraction * n + 0.5))
    if m >= n:
        return float("-inf")
    return float(v[n - m - 1])


def referred(values: np.ndarray, fraction: float = REFER_FRACTION, *, cutoff: float | None = None) -> np.ndarray:
    """``(n,)`` booleans: the cases "refer the most uncertain ``fraction``" sends to a reader, those above
    :func:`referral_cutoff` of ``values`` (or above a ``cutoff`` fixed elsewhere, e.g. on a reference cohort). A case
    without a finite uncertainty is not referred."""
    values = np.asarray(values, np.float64)
    c = referral_cutoff(values, fraction) if cutoff is None else float(cutoff)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > c)


def referral(values: np.ndarray, value: float, refer_fraction: float = REFER_FRACTION) -> dict[str, float | bool]:
    """Where one case's uncertainty sits in its cohort: percentile, the cohort's referral cutoff
    (:func:`referral_cutoff`) and whether the case is above it (referred)."""
    values = np.asarray(values, float)
    cutoff = referral_cutoff(values, refer_fraction)
    return {"percentile": float((values < value).mean() * 100), "cutoff": cutoff, "refer": bool(value > cutoff)}


def kept_accuracy(uncertainty: np.ndarray, correct: np.ndarray, fraction: float = REFER_FRACTION
                  ) -> tuple[float, float]:
    """``(accuracy among the cases kept, accuracy over all)`` when the :func:`referred` cases go to a reader
    (NaN when nothing is kept)."""
    correct = np.asarray(correct, bool)
    keep = ~referred(uncertainty, fraction)
    return (float(correct[keep].mean()) if keep.any() else float("nan"),
            float(correct.mean()) if len(correct) else float("nan"))


def _share(events: np.ndarray, clusters: np.ndarray | None, per: float) -> tuple[float, float, float]:
    """The share of ``events`` (booleans over the denominator's cases) times ``per``, with its 95% Wilson interval
    (at the patient design effect where ``clusters`` is given: :func:`evaluation.inference.wilson_clustered`)."""
    events = np.asarray(events, bool)
    if not len(events):
        return float("nan"), float("nan"), float("nan")
    lo, hi = (wilson_clustered(events, clusters) if clusters is not None
              else wilson(float(events.sum()), float(len(events))))
    return float(events.mean()) * per, lo * per, hi * per


def clinical_rates(y: np.ndarray, called: np.ndarray, *, clusters: np.ndarray | None = None,
                   per: float = 1000.0) -> dict[str, float | tuple[float, float]]:
    """Missed positives and false alarms per ``per`` cases at the operating point: each a share of all ``n`` cases
    (``y`` 0/1, ``called`` the model's positive calls), with its 95% Wilson interval, clustered by patient where
    ``clusters`` (one code per case) is given. Keys ``missed``, ``missed_ci``, ``false_alarms``,
    ``false_alarms_ci``."""
    y, called = np.asarray(y, int), np.asarray(called, bool)
    missed, m_lo, m_hi = _share((y == 1) & ~called, clusters, per)
    false, f_lo, f_hi = _share((y == 0) & called, clusters, per)
    return {"missed": missed, "missed_ci": (m_lo, m_hi), "false_alarms": false, "false_alarms_ci": (f_lo, f_hi)}


def referral_outcomes(uncertainty: np.ndarray, y: np.ndarray, called: np.ndarray, *, cutoff: float,
                      clusters: np.ndarray | None = None, per: float = 1000.0) -> dict[str, float | tuple] | None:
    """What referring the cases above ``cutoff`` (:func:`referral_cutoff`, of the cohort) does at the operating
    point, over the labelled cases given (``uncertainty``, ``y`` 0/1, ``called`` one per case):

    ``referred``: the share referred; ``sensitivity_kept``: the share of the kept positives the model calls;
    ``missed_per_kept``: missed positives per ``per`` kept cases. Each with a 95% Wilson interval (``*_ci``), clustered
    by patient where ``clusters`` is given; each reads as the rate for new cases like these at this cutoff. None when
    no kept case is positive (sensitivity undefined)."""
    y, called = np.asarray(y, int), np.asarray(called, bool)
    keep = ~referred(uncertainty, cutoff=cutoff)
    positives = keep & (y == 1)
    if not positives.any():
        return None
    sub = (lambda mask: np.asarray(clusters)[mask]) if clusters is not None else (lambda mask: None)
    share, s_lo, s_hi = _share(~keep, clusters, 1.0)
    sens, n_lo, n_hi = _share(called[positives], sub(positives), 1.0)
    missed, m_lo, m_hi = _share(((y == 1) & ~called)[keep], sub(keep), per)
    return {"referred": share, "referred_ci": (s_lo, s_hi), "sensitivity_kept": sens,
            "sensitivity_kept_ci": (n_lo, n_hi), "missed_per_kept": missed, "missed_per_kept_ci": (m_lo, m_hi),
            "kept": int(keep.sum()), "kept_positives": int(positives.sum())}


def with_spread(uncertainty: UncertaintyTable, class_index: int | None) -> pd.DataFrame:
    """An uncertainty table as a frame with ``p_k`` (the mean probabilities, named as the predictions are) in place
    of ``mean_k``, and ``std``: the spread of ``class_index``'s probability, or with None of each case's top
    class."""
    k = uncertainty.n_classes
    frame = uncertainty.frame.rename(columns=dict(zip(mean_columns(k), probability_columns(k))))
    spreads = uncertainty.spreads()
    if class_index is None:
        top = uncertainty.means().argmax(axis=1)
        return frame.assign(std=spreads[np.arange(len(frame)), top])
    return frame.assign(std=spreads[:, class_index])
