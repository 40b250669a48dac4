"""Binary (one-vs-rest) performance metrics computed from weighted counts, so one code path gives the point
estimate (all weights 1) and every bootstrap replicate at once (a ``(B, n)`` matrix of resample counts).

Each metric maps :class:`Counts` to a ``(B,)`` array; NaN where the metric is undefined for that sample
(``why_undefined`` says why). Definitions follow scikit-learn; ECE uses 10 equal-width bins (Guo et al., 2017).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from data_adapters.registry import Registry

ECE_BINS = 10


@dataclass(frozen=True)
class Counts:
    """Weighted confusion counts and score sums for ``B`` weightings of one group's cases."""

    n: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    brier: np.ndarray
    ece_gap: np.ndarray
    auc_num: np.ndarray

    @property
    def fn(self) -> np.ndarray:
        return self.pos - self.tp

    @property
    def tn(self) -> np.ndarray:
        return self.neg - self.fp


def _onehot(index: np.ndarray, width: int, values: np.ndarray | None = None) -> sp.csr_matrix:
    n = len(index)
    data = np.ones(n) if values is None else values.astype(float)
    return sp.csr_matrix((data, (np.arange(n), index)), shape=(n, width))


def _times(weights: np.ndarray, matrix: sp.csr_matrix) -> np.ndarray:
    """``weights (B, n) @ matrix (n, k)`` with a sparse right side."""
    return np.asarray((matrix.T @ weights.T).T)


def counts(weights: np.ndarray, y: np.ndarray, p: np.ndarray, called: np.ndarray) -> Counts:
    """``weights`` ``(B, n)``; ``y`` and ``called`` boolean ``(n,)``; ``p`` the class probability ``(n,)``."""
    w = np.atleast_2d(weights).astype(np.float64)
    y = y.astype(bool)
    called = called.astype(bool)
    yf = y.astype(float)
    pos = w @ yf
    n = w.sum(axis=1)
    bins = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    gap = _times(w, _onehot(bins, ECE_BINS, yf)) - _times(w, _onehot(bins, ECE_BINS, p))
    # AUROC as Mann-Whitney over tied score groups: positives' weight times negatives' weight below (+ half tied)
    _, level = np.unique(p, return_inverse=True)
    width = int(level.max()) + 1 if len(level) else 1
    pos_at = _times(w, _onehot(level, width, yf))
    neg_at = _times(w, _onehot(level, width, 1.0 - yf))
    below = np.cumsum(neg_at, axis=1) - neg_at
    return Counts(n=n, pos=pos, neg=n - pos, tp=w @ (y & called).astype(float), fp=w @ (~y & called).astype(float),
                  brier=w @ (p - yf) ** 2, ece_gap=np.abs(gap).sum(axis=1), auc_num=(pos_at * (below + 0.5 * neg_at)).sum(axis=1))


def bootstrap_weights(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resample counts, stratified: positives and negatives are resampled separately, so each
    replicate keeps the group's class counts (no replicate loses a class)."""
    w = np.zeros((n_boot, len(y)), np.float32)
    for idx in (np.nonzero(y)[0], np.nonzero(~np.asarray(y, bool))[0]):
        if len(idx):
            w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot)
    return w


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


Metric = Callable[[Counts], np.ndarray]
METRICS: Registry[Metric] = Registry("metric")
#: the reason a metric is undefined, given the group's counts (point estimate)
WHY_UNDEFINED: dict[str, Callable[[Counts], str | None]] = {}


def _metric(name: str, why: Callable[[Counts], str | None]):
    def register(fn: Metric) -> Metric:
        METRICS.register(fn, name)
        WHY_UNDEFINED[name] = why
        return fn
    return register


def _no_pos(c: Counts) -> str | None:
    return "no positive cases" if c.pos[0] == 0 else None


def _no_neg(c: Counts) -> str | None:
    return "no negative cases" if c.neg[0] == 0 else None


def _one_class(c: Counts) -> str | None:
    return "only one class present" if c.pos[0] == 0 or c.neg[0] == 0 else None


@_metric("auroc", _one_class)
def auroc(c: Counts) -> np.ndarray:
    return _ratio(c.auc_num, c.pos * c.neg)


@_metric("sensitivity", _no_pos)
def sensitivity(c: Counts) -> np.ndarray:
    return _ratio(c.tp, c.pos)


@_metric("specificity", _no_neg)
def specificity(c: Counts) -> np.ndarray:
    return _ratio(c.tn, c.neg)


@_metric("ppv", lambda c: "no case called positive" if c.tp[0] + c.fp[0] == 0 else None)
def ppv(c: Counts) -> np.ndarray:
    return _ratio(c.tp, c.tp + c.fp)


@_metric("npv", lambda c: "no case called negative" if c.tn[0] + c.fn[0] == 0 else None)
def npv(c: Counts) -> np.ndarray:
    return _ratio(c.tn, c.tn + c.fn)


@_metric("balanced_accuracy", _one_class)
def balanced_accuracy(c: Counts) -> np.ndarray:
    return (sensitivity(c) + specificity(c)) / 2


@_metric("brier", lambda c: None)
def brier(c: Counts) -> np.ndarray:
    return _ratio(c.brier, c.n)


@_metric("ece", lambda c: None)
def ece(c: Counts) -> np.ndarray:
    return _ratio(c.ece_gap, c.n)


#: rates used by the fairness gaps (not shown as table columns)
def selection_rate(c: Counts) -> np.ndarray:
    return _ratio(c.tp + c.fp, c.n)


def false_positive_rate(c: Counts) -> np.ndarray:
    return _ratio(c.fp, c.neg)
