"""Binary (one-vs-rest) performance metrics computed from weighted counts, so one code path gives the point
estimate (all weights 1) and every bootstrap replicate at once (a ``(B, n)`` matrix of resample counts).

Each metric maps :class:`Counts` to a ``(B,)`` array; NaN where the metric is undefined for that sample
(``why_undefined`` says why). Definitions follow scikit-learn; ECE uses 10 equal-width bins (Guo et al., 2017).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from data_adapters.registry import Registry
from evaluation.inference import cluster_weights, poisson_ones, stratified_weights  # noqa: F401 (re-exported)

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


def counts(weights: np.ndarray, y: np.ndarray, p: np.ndarray, called: np.ndarray) -> Counts:
    """``weights`` ``(B, n)``; ``y`` and ``called`` boolean ``(n,)``; ``p`` the class probability ``(n,)``.

    Works in the weights' precision: float64 for point estimates, float32 for bootstrap replicates (resample
    counts are small integers, exact in float32, and the memory traffic halves).
    """
    w = np.atleast_2d(weights)
    w = w if w.dtype in (np.float32, np.float64) else w.astype(np.float64)
    dtype = w.dtype
    y = np.asarray(y, bool)
    called = np.asarray(called, bool)
    p = np.asarray(p, np.float64)
    yf = y.astype(dtype)
    pos = w @ yf
    n = w.sum(axis=1, dtype=np.float64)
    # ECE: per-bin sums of outcomes minus predictions, as one small dense product
    bins = np.clip((p * ECE_BINS).astype(int), 0, ECE_BINS - 1)  # scores outside 0..1 (an AUROC of any score)
    onehot = np.zeros((len(p), ECE_BINS), dtype)
    onehot[np.arange(len(p)), bins] = 1
    gap = w @ (onehot * (yf - p.astype(dtype))[:, None])
    # AUROC as Mann-Whitney: positives' weight times the negatives' weight strictly below, plus half the tied
    # negatives. Rows already sorted by score (as subgroup_report passes them) skip the column gather.
    if np.all(p[1:] >= p[:-1]):
        ws, ps, ys = w, p, yf
    else:
        order = np.argsort(p, kind="stable")
        ws, ps, ys = w[:, order], p[order], yf[order]
    neg_w = ws * (1 - ys)
    below = np.cumsum(neg_w, axis=1, dtype=dtype) - neg_w  # exact: integer counts below 2**24
    positives = np.nonzero(ys)[0]
    if len(positives) and len(np.unique(ps)) < len(ps):  # ties: compare with each tied block as a whole
        start = np.searchsorted(ps, ps[positives], side="left")
        end = np.searchsorted(ps, ps[positives], side="right") - 1
        below_pos = below[:, start]
        tied = below[:, end] + neg_w[:, end] - below_pos
        auc_num = np.einsum("bu,bu->b", ws[:, positives], below_pos + 0.5 * tied)
    else:
        auc_num = np.einsum("bu,bu->b", ws[:, positives], below[:, positives])
    return Counts(n=n, pos=pos.astype(np.float64), neg=n - pos, tp=(w @ (y & called).astype(dtype)).astype(np.float64),
                  fp=(w @ (~y & called).astype(dtype)).astype(np.float64),
                  brier=(w @ ((p - yf) ** 2).astype(dtype)).astype(np.float64),
                  ece_gap=np.abs(gap).sum(axis=1, dtype=np.float64), auc_num=auc_num.astype(np.float64))


def bootstrap_weights(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resample counts, stratified by ``y`` (boolean, or class labels): each class is resampled
    separately, so each replicate keeps the group's class counts (:func:`evaluation.inference.stratified_weights`)."""
    return stratified_weights(y, n_boot, rng)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


Metric = Callable[[Counts], np.ndarray]
METRICS: Registry[Metric] = Registry("metric")
#: the reason a metric is undefined, given the group's counts (point estimate)
WHY_UNDEFINED: dict[str, Callable[[Counts], str | None]] = {}


#: the resampling design of every metric here, in words: a subgroup's cases are resampled to its size with the class
#: mix varying (patients across the cohort where the cohort says which patient each image came from)
WITHIN_GROUP = "cases within each group, class mix varying (patients where known)"


@dataclass(frozen=True)
class MetricFacts:
    """What a metric's registry entry says about it: ``direction`` ("higher" or "lower" is better), ``design`` (the
    resampling that gives its interval, and why), ``proportion`` (numerator and denominator counts where the metric
    is a proportion: the Wilson interval used where every resample gives the same value)."""

    name: str
    direction: str
    design: str
    proportion: Callable[[Counts], tuple[float, float]] | None = None


#: metric name → its facts
FACTS: dict[str, MetricFacts] = {}


def _metric(name: str, why: Callable[[Counts], str | None], *, direction: str = "higher",
            design: str = WITHIN_GROUP, proportion: Callable[[Counts], tuple[float, float]] | None = None):
    def register(fn: Metric) -> Metric:
        METRICS.register(fn, name)
        WHY_UNDEFINED[name] = why
        FACTS[name] = fn.facts = MetricFacts(name, direction, design, proportion)
        return fn
    return register


def _no_pos(c: Counts) -> str | None:
    return "no positive cases" if c.pos[0] == 0 else None


def _no_neg(c: Counts) -> str | None:
    return "no negative cases" if c.neg[0] == 0 else None


def _one_class(c: Counts) -> str | None:
    return "only one class present" if c.pos[0] == 0 or c.neg[0] == 0 else None


@_metric("auroc", _one_class, design=WITHIN_GROUP + "; AUROC depends on both classes' counts, so both vary")
def auroc(c: Counts) -> np.ndarray:
    return _ratio(c.auc_num, c.pos * c.neg)


@_metric("sensitivity", _no_pos, proportion=lambda c: (c.tp[0], c.pos[0]))
def sensitivity(c: Counts) -> np.ndarray:
    return _ratio(c.tp, c.pos)


@_metric("specificity", _no_neg, proportion=lambda c: (c.tn[0], c.neg[0]))
def specificity(c: Counts) -> np.ndarray:
    return _ratio(c.tn, c.neg)


@_metric("ppv", lambda c: "no case called positive" if c.tp[0] + c.fp[0] == 0 else None,
         design=WITHIN_GROUP + "; PPV depends on prevalence, so the class mix must vary",
         proportion=lambda c: (c.tp[0], c.tp[0] + c.fp[0]))
def ppv(c: Counts) -> np.ndarray:
    return _ratio(c.tp, c.tp + c.fp)


@_metric("npv", lambda c: "no case called negative" if c.tn[0] + c.fn[0] == 0 else None,
         design=WITHIN_GROUP + "; NPV depends on prevalence, so the class mix must vary",
         proportion=lambda c: (c.tn[0], c.tn[0] + c.fn[0]))
def npv(c: Counts) -> np.ndarray:
    return _ratio(c.tn, c.tn + c.fn)


@_metric("balanced_accuracy", _one_class)
def balanced_accuracy(c: Counts) -> np.ndarray:
    return (sensitivity(c) + specificity(c)) / 2


@_metric("brier", lambda c: None, direction="lower")
def brier(c: Counts) -> np.ndarray:
    return _ratio(c.brier, c.n)


@_metric("ece", lambda c: None, direction="lower",
         design=WITHIN_GROUP + "; ECE depends on the class mix in each bin; biased upward at small n (shown beside its "
                               "expectation under perfect calibration)")
def ece(c: Counts) -> np.ndarray:
    return _ratio(c.ece_gap, c.n)


#: rates used by the fairness gaps (not shown as table columns)
def selection_rate(c: Counts) -> np.ndarray:
    return _ratio(c.tp + c.fp, c.n)


def false_positive_rate(c: Counts) -> np.ndarray:
    return _ratio(c.fp, c.neg)


# -- resampling sufficient statistics (large groups) ---------------------------------------------------------------
#: groups with at least this many cases are resampled as cells (class × score bin), not case by case
CELL_BOOTSTRAP_FROM = 20_000
#: score bins per group (quantiles of its scores, plus the threshold and the ECE bin edges as edges)
SCORE_BINS = 1024


@dataclass(frozen=True)
class Cells:
    """One group's cases collapsed into cells of equal class and score bin: what every metric here needs.

    A cell's cases share their class, whether they are called positive (the threshold is a bin edge) and their
    ECE bin (the ECE edges are bin edges), so resampling cells by their counts gives exactly the confusion counts,
    Brier and ECE sums that resampling the cases would (Brier and ECE up to the spread of scores within a bin);
    AUROC counts pairs within one bin as ties, off from the exact value by at most :attr:`auroc_error`."""

    y: np.ndarray        # (m,) bool
    called: np.ndarray   # (m,) bool
    bin: np.ndarray      # (m,) int: the score bin, the order AUROC compares
    ece_bin: np.ndarray  # (m,) int
    count: np.ndarray    # (m,) cases per cell
    brier: np.ndarray    # (m,) mean (p - y)² per cell
    residual: np.ndarray  # (m,) mean (y - p) per cell
    auroc_error: float   # most the binned AUROC can differ from the exact one
    of_case: np.ndarray  # (n,) each case's cell

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray, called: np.ndarray, threshold: float,
           bins: int = SCORE_BINS) -> Cells:
        y, p, called = np.asarray(y, bool), np.asarray(p, np.float64), np.asarray(called, bool)
        quantiles = np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1]) if len(p) else np.array([])
        edges = np.unique(np.concatenate([quantiles, np.arange(1, ECE_BINS) / ECE_BINS, [threshold]]))
        b = np.searchsorted(edges, p, side="right")
        key = b * 4 + y * 2 + called  # called is constant within a bin unless the threshold is not an edge (a set one)
        cells, first, inverse, count = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        sums = lambda v: np.bincount(inverse, weights=v, minlength=len(cells))  # noqa: E731
        pos_in_bin = np.bincount(b[y], minlength=len(edges) + 1).astype(np.float64)
        neg_in_bin = np.bincount(b[~y], minlength=len(edges) + 1).astype(np.float64)
        pairs = pos_in_bin.sum() * neg_in_bin.sum()
        return cls(y=y[first], called=called[first], bin=b[first],
                   ece_bin=np.clip((p[first] * ECE_BINS).astype(int), 0, ECE_BINS - 1), count=count,
                   brier=sums((p - y) ** 2) / count, residual=sums(y - p) / count,
                   auroc_error=float(0.5 * (pos_in_bin * neg_in_bin).sum() / pairs) if pairs else 0.0,
                   of_case=inverse.reshape(-1))

    def resample(self, n_boot: int, rng: np.random.Generator, design: str = "cases within group") -> np.ndarray:
        """``(n_boot, m)`` cell weights of a bootstrap of the group's cases, drawn the Poisson way: each case weighted
        Poisson(1), so a cell of ``c`` cases draws Poisson(``c``) (Hanley & MacGibbon 2006), then scaled to the
        group's size, as drawing its cases with replacement keeps it (a multinomial is Poisson draws conditioned on
        their total; scaling is that conditioning to within 1/√n). The class mix varies, as it does between samples.
        ``design="fixed class counts"``: each class scaled to its own size instead (the old design). One draw per
        cell, not per case."""
        w = rng.poisson(self.count.astype(np.float64), size=(n_boot, len(self.count))).astype(np.float64)
        strata = (False, True) if design == "fixed class counts" else (None,)
        for value in strata:
            idx = np.flatnonzero(self.y == value) if value is not None else np.arange(len(self.count))
            total = self.count[idx].sum()
            if total:
                drawn = w[:, idx].sum(axis=1, keepdims=True)
                w[:, idx] *= total / np.maximum(drawn, 1)
        return w

    def counts(self, w: np.ndarray) -> Counts:
        """:class:`Counts` for cell weights ``w`` ``(B, m)``."""
        w = np.atleast_2d(np.asarray(w, np.float64))
        yf = self.y.astype(np.float64)
        n = w.sum(axis=1)
        pos = w @ yf
        onehot = np.zeros((len(self.count), ECE_BINS))
        onehot[np.arange(len(self.count)), self.ece_bin] = 1
        gap = w @ (onehot * self.residual[:, None])
        order = np.argsort(self.bin, kind="stable")
        ws, bs, ys = w[:, order], self.bin[order], yf[order]
        neg_w = ws * (1 - ys)
        below = np.cumsum(neg_w, axis=1) - neg_w
        start = np.searchsorted(bs, bs, side="left")
        end = np.searchsorted(bs, bs, side="right") - 1
        tied = below[:, end] + neg_w[:, end] - below[:, start]
        auc_num = np.einsum("bu,bu->b", ws * ys, below[:, start] + 0.5 * tied)
        return Counts(n=n, pos=pos, neg=n - pos, tp=w @ (self.y & self.called).astype(np.float64),
                      fp=w @ (~self.y & self.called).astype(np.float64), brier=w @ self.brier,
                      ece_gap=np.abs(gap).sum(axis=1), auc_num=auc_num)


def cluster_cell_weights(clusters: np.ndarray, groups: list[tuple[np.ndarray, Cells]], n_boot: int,
                         rng: np.random.Generator, chunk: int = 50) -> list[np.ndarray]:
    """Cluster-bootstrap cell counts for large groups sharing patients: per replicate, each cluster (a patient's
    images) is weighted Poisson(1), the Poisson form of drawing clusters with replacement, and each group's cell
    counts are the weighted clusters' cases per cell: one sparse product (cells of every group × clusters) per
    ``chunk`` replicates, so memory stays at ``chunk × clusters``. ``groups``: each group's row positions in
    ``clusters`` and its :class:`Cells`."""
    from scipy import sparse

    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sizes = np.bincount(inverse)
    # a patient with one image is a case: Poisson(1) per such case summed over a cell is Poisson(those cases), drawn
    # per cell; only patients with several images need the sparse product (groups are disjoint, so drawing each
    # group's singletons apart is the same joint distribution)
    single = sizes[inverse] == 1
    multi_ids = np.flatnonzero(sizes > 1)
    remap = np.full(len(sizes), -1)
    remap[multi_ids] = np.arange(len(multi_ids))
    c = len(multi_ids)
    offsets = np.cumsum([0] + [len(cells.count) for _, cells in groups])
    keep = [~single[r] for r, _ in groups]
    rows = np.concatenate([cells.of_case[k] + offsets[g] for g, ((_, cells), k) in enumerate(zip(groups, keep))])
    cols = np.concatenate([remap[inverse[r[k]]] for (r, _), k in zip(groups, keep)])
    cell_by_cluster = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(offsets[-1], c))
    out = np.zeros((n_boot, offsets[-1]))
    for g, ((r, cells), k) in enumerate(zip(groups, keep)):
        alone = np.bincount(cells.of_case[~k], minlength=len(cells.count)).astype(np.float64)
        out[:, offsets[g]:offsets[g + 1]] = rng.poisson(alone, size=(n_boot, len(alone)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        if c:
            weights = poisson_ones((c, b), rng)  # clusters × replicates
            out[start:start + b] += (cell_by_cluster @ weights).T
    return [out[:, offsets[g]:offsets[g + 1]] for g in range(len(groups))]
