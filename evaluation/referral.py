"""Does uncertainty flag the model's mistakes? Error-detection AUROC, risk-coverage, uncertainty by group."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_adapters.tables import CLUSTER, mean_column, probability_column, probability_columns, std_column, std_columns
from evaluation.inference import percentile_interval
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


def referral(values: np.ndarray, value: float, refer_fraction: float) -> dict[str, float | bool]:
    """Where one case's uncertainty sits in its cohort: percentile, the cohort's referral cutoff (the
    ``1 - refer_fraction`` quantile) and whether the case is above it."""
    values = np.asarray(values, float)
    cutoff = float(np.quantile(values, 1 - refer_fraction))
    return {"percentile": float((values < value).mean() * 100), "cutoff": cutoff, "refer": bool(value > cutoff)}


def with_spread(frame: pd.DataFrame, n_classes: int, class_index: int | None) -> pd.DataFrame:
    """An uncertainty table (``mean_k``, ``std_k`` per class) with ``p_k`` (the mean probabilities, named as the
    predictions are) and ``std``: the spread of ``class_index``'s probability, or with None of each case's top
    class."""
    frame = frame.rename(columns={mean_column(i): probability_column(i) for i in range(n_classes)})
    if class_index is None:
        top = frame[probability_columns(n_classes)].to_numpy(float).argmax(axis=1)
        spreads = frame[std_columns(n_classes)].to_numpy(float)
        return frame.assign(std=spreads[np.arange(len(frame)), top])
    return frame.assign(std=frame[std_column(class_index)])
