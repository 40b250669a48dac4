"""Performance metrics and their one registry.

Every metric is one :class:`Metric` entry in :data:`METRICS`, keyed ``task.name``: its definition, direction, why
it can be undefined, whether its between-group gap is judged, its resampling design and the independent
implementation it is tested against (``tests/evaluation/test_metric_registry.py`` runs every entry against its reference the
day it is registered). Tables, gates, comparisons, figures and reports read those facts from the entry.

Two views (:data:`TASKS`): one class against the rest (``one_vs_rest``), from weighted :class:`Counts`; and each
case's top class against its label (``top_class``), from :class:`Replicates`. Both are computed from weights, so one
code path gives the point estimate (all weights 1) and every bootstrap replicate at once (a ``(B, n)`` matrix of
resample counts). Each maps to a ``(B,)`` array; NaN where the metric is undefined for that sample (the entry's
``why_undefined`` says why). Definitions follow scikit-learn; ECE uses 10 equal-width bins (Guo et al., 2017).
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_adapters.errors import UnknownNameError
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


@dataclass(frozen=True)
class Replicates:
    """One group's cases of a K-class model under ``B`` weightings, what the top-class metrics read: ``w``
    ``(B, n)``, labels ``y`` ``(n,)`` (class indices), probabilities ``P`` ``(n, K)``."""

    w: np.ndarray
    y: np.ndarray
    P: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.w.sum(axis=1, dtype=np.float64)

    @property
    def top(self) -> np.ndarray:
        return self.P.argmax(axis=1)

    @property
    def rank(self) -> np.ndarray:
        """How many classes score strictly above the true class (0: the true class is the top class)."""
        true_p = self.P[np.arange(len(self.y)), self.y]
        return (self.P > true_p[:, None]).sum(axis=1)


# -- the metric registry -------------------------------------------------------------------------------------------
#: the two views a metric is computed in. ``one_vs_rest``: one class against the rest, each case called positive at
#: a threshold, read from :class:`Counts`; ``top_class``: each case's top class (argmax) against its label, read from
#: :class:`Replicates`. A name may be used in both (``brier``, ``ece``, ``balanced_accuracy``): then they are two
#: entries, and each one's ``definition`` says what it computes in its view.
ONE_VS_REST = "one_vs_rest"
TOP_CLASS = "top_class"
TASKS = (ONE_VS_REST, TOP_CLASS)
DIRECTIONS = ("higher", "lower")

#: the resampling design of every per-group metric here, in words: a subgroup's cases are resampled to its size with
#: the class mix varying (patients across the cohort where the cohort says which patient each image came from)
WITHIN_GROUP = "cases within each group, class mix varying (patients where known)"
#: top-k accuracy is reported with this k (for models of more than k classes)
TOP_K = 2
MSG_ENTRY = "metric entry {key!r}: {what}"


@dataclass(frozen=True)
class Reference:
    """An independent implementation a metric is tested against (``tests/evaluation/test_metric_registry.py``): ``path`` the
    dotted name of a library function (scikit-learn, fairlearn), ``call(fn, *sample)`` how the metric's sample is
    passed to it. A one-vs-rest sample is ``(y, p, called)`` (booleans, the class probability, booleans); a top-class
    sample ``(y, P)`` (class indices, ``(n, K)`` probabilities); a between-group difference's adds the groups."""

    path: str
    call: Callable[..., float]

    def __call__(self, *sample) -> float:
        module, _, name = self.path.rpartition(".")
        return float(self.call(getattr(importlib.import_module(module), name), *sample))


@dataclass(frozen=True)
class Metric:
    """One metric's registry entry: what the product knows about it, as data, read by every table, gate, figure and
    report that shows it.

    ``name``: its column in the tables and its key in ``--max-gap`` and ``--max-regression``, unique within its
    ``task`` (:data:`TASKS`). ``definition``: what it computes, in words. ``direction``: "higher" or "lower" is better.
    ``undefined``: in words, when it has no value; ``why_undefined``: that reason for one group's point counts (None
    where it is defined; NaN values exactly where it gives a reason). ``gaps``: whether its between-group gap is
    judged (one of the report's max-t family, and a release gate may name it). ``design``: the resampling behind its
    interval, and why. ``reference``: the independent implementation its values are tested against. ``compute``:
    :class:`Counts` (one-vs-rest) or :class:`Replicates` (top class) to a ``(B,)`` array, None for a between-group
    difference (``per_group`` False: a gap of the groups' rates, with no column of its own). ``proportion``: for a
    proportion, ``(y, called) → (success, among)`` case masks (Wilson's interval where every resample agrees)."""

    name: str
    task: str
    definition: str
    direction: str
    undefined: str
    gaps: bool
    design: str
    reference: Reference
    compute: Callable[[Any], np.ndarray] | None
    why_undefined: Callable[[Any], str | None] | None
    per_group: bool = True
    proportion: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        key = f"{self.task}.{self.name}"
        if self.task not in TASKS:
            raise ValueError(MSG_ENTRY.format(key=key, what=f"task must be one of {', '.join(TASKS)}"))
        if self.direction not in DIRECTIONS:
            raise ValueError(MSG_ENTRY.format(key=key, what=f"direction must be one of {', '.join(DIRECTIONS)}"))
        for fact in ("name", "definition", "undefined", "design"):
            if not str(getattr(self, fact)).strip():
                raise ValueError(MSG_ENTRY.format(key=key, what=f"{fact} is empty"))
        if self.per_group and (self.compute is None or self.why_undefined is None):
            raise ValueError(MSG_ENTRY.format(key=key, what="a per-group metric needs compute and why_undefined"))

    @property
    def key(self) -> str:
        """The registry key: ``task.name`` (a name is unique within its task, not across them)."""
        return f"{self.task}.{self.name}"

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def __call__(self, data) -> np.ndarray:
        return self.compute(data)


METRICS: Registry[Metric] = Registry("metric")


def metric(name: str, task: str = ONE_VS_REST) -> Metric:
    """The entry of ``name`` in ``task``; an unknown name gets close matches among the task's metrics."""
    if task not in TASKS:
        raise UnknownNameError(f"unknown metric task {task!r}; known: {', '.join(TASKS)}")
    if f"{task}.{name}" not in METRICS:
        names = [m.name for m in entries(task, per_group=None)]
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise UnknownNameError(f"unknown {task.replace('_', '-')} metric {name!r}{hint}; known: {', '.join(names)}")
    return METRICS.get(f"{task}.{name}")


def entries(task: str, *, per_group: bool | None = True, gaps: bool | None = None) -> tuple[Metric, ...]:
    """The registered entries of ``task`` in registration order (the tables' column order): by default the per-group
    metrics; ``per_group=False`` the between-group differences, None both; ``gaps=True`` only those whose gap is
    judged."""
    return tuple(m for _, m in METRICS.items() if m.task == task and (per_group is None or m.per_group == per_group)
                 and (gaps is None or m.gaps == gaps))


def metric_names(task: str) -> list[str]:
    """The per-group metrics of ``task``: the tables' metric columns, in order."""
    return [m.name for m in entries(task)]


def gap_metric_names(task: str) -> list[str]:
    """Every measure of ``task`` whose between-group gap is judged (what a ``--max-gap`` gate may name): the per-group
    metrics that take gaps, then the between-group differences."""
    return [m.name for m in (*entries(task, gaps=True), *entries(task, per_group=False, gaps=True))]


def higher_is_better(name: str) -> bool:
    """Whether a larger value of ``name`` is better. Entries sharing a name across tasks agree on it (the registry's
    contract test holds them to it), so a table that names only the metric can be drawn the right way up."""
    found = {m.direction for _, m in METRICS.items() if m.name == name}
    if not found:
        metric(name)  # raises, with close matches
    if len(found) > 1:
        raise ValueError(f"metric {name!r} has directions {sorted(found)} in different tasks")
    return found.pop() == "higher"


def _register(name: str, *, task: str = ONE_VS_REST, definition: str, reference: Reference,
              why: Callable[[Any], str | None], undefined: str, direction: str = "higher", gaps: bool = True,
              design: str = WITHIN_GROUP, proportion=None):
    def register(fn: Callable[[Any], np.ndarray]) -> Callable[[Any], np.ndarray]:
        entry = Metric(name=name, task=task, definition=definition, direction=direction, undefined=undefined,
                       gaps=gaps, design=design, reference=reference, compute=fn, why_undefined=why,
                       proportion=proportion)
        METRICS.register(entry, entry.key)
        fn.entry = entry
        return fn
    return register


def _no_pos(c: Counts) -> str | None:
    return "no positive cases" if c.pos[0] == 0 else None


def _no_neg(c: Counts) -> str | None:
    return "no negative cases" if c.neg[0] == 0 else None


def _one_class(c: Counts) -> str | None:
    return "only one class present" if c.pos[0] == 0 or c.neg[0] == 0 else None


def _never(_) -> None:
    return None


def _ece_by_curve(calibration_curve, y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE from scikit-learn's reliability curve: its non-empty bins' |mean outcome − mean score|, weighted by their
    share of the cases."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    count = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p), minlength=bins)
    return float(np.sum(np.abs(prob_true - prob_pred) * count[count > 0]) / len(p))


# -- one class against the rest (Counts) ---------------------------------------------------------------------------
@_register("auroc", definition="area under the ROC curve of the class probability (Mann-Whitney, ties counted half)",
           why=_one_class, undefined="only one class present",
           design=WITHIN_GROUP + "; AUROC depends on both classes' counts, so both vary",
           reference=Reference("sklearn.metrics.roc_auc_score", lambda f, y, p, c: f(y, p)))
def auroc(c: Counts) -> np.ndarray:
    return _ratio(c.auc_num, c.pos * c.neg)


@_register("sensitivity", definition="true positives over positives (recall) at the threshold", why=_no_pos,
           undefined="no positive cases", proportion=lambda y, c: (c, y),
           reference=Reference("sklearn.metrics.recall_score", lambda f, y, p, c: f(y, c)))
def sensitivity(c: Counts) -> np.ndarray:
    return _ratio(c.tp, c.pos)


@_register("specificity", definition="true negatives over negatives at the threshold", why=_no_neg,
           undefined="no negative cases", proportion=lambda y, c: (~c, ~y),
           reference=Reference("sklearn.metrics.recall_score", lambda f, y, p, c: f(~y, ~c)))
def specificity(c: Counts) -> np.ndarray:
    return _ratio(c.tn, c.neg)


@_register("ppv", definition="true positives over cases called positive (precision) at the threshold",
           why=lambda c: "no case called positive" if c.tp[0] + c.fp[0] == 0 else None,
           undefined="no case called positive", proportion=lambda y, c: (y, c),
           design=WITHIN_GROUP + "; PPV depends on prevalence, so the class mix must vary",
           reference=Reference("sklearn.metrics.precision_score", lambda f, y, p, c: f(y, c)))
def ppv(c: Counts) -> np.ndarray:
    return _ratio(c.tp, c.tp + c.fp)


@_register("npv", definition="true negatives over cases called negative at the threshold",
           why=lambda c: "no case called negative" if c.tn[0] + c.fn[0] == 0 else None,
           undefined="no case called negative", proportion=lambda y, c: (~y, ~c),
           design=WITHIN_GROUP + "; NPV depends on prevalence, so the class mix must vary",
           reference=Reference("sklearn.metrics.precision_score", lambda f, y, p, c: f(~y, ~c)))
def npv(c: Counts) -> np.ndarray:
    return _ratio(c.tn, c.tn + c.fn)


@_register("balanced_accuracy", definition="mean of sensitivity and specificity at the threshold (one class against "
           "the rest; not the top-class balanced accuracy, which averages every class's recall)",
           why=_one_class, undefined="only one class present",
           reference=Reference("sklearn.metrics.balanced_accuracy_score", lambda f, y, p, c: f(y, c)))
def balanced_accuracy(c: Counts) -> np.ndarray:
    return (sensitivity(c) + specificity(c)) / 2


@_register("brier", definition="mean squared difference between the class probability and the 0/1 outcome (0 to 1; "
           "the top-class Brier sums over every class, 0 to 2)", why=_never, undefined="never (any case gives one)",
           direction="lower", reference=Reference("sklearn.metrics.brier_score_loss", lambda f, y, p, c: f(y, p)))
def brier(c: Counts) -> np.ndarray:
    return _ratio(c.brier, c.n)


@_register("ece", definition=f"expected calibration error of the class probability: {ECE_BINS} equal-width bins' "
           "|mean outcome − mean probability| weighted by their share of cases (Guo et al., 2017; not the top-class "
           "ECE, which bins the top class's confidence)",
           why=_never, undefined="never (any case gives one)", direction="lower",
           design=WITHIN_GROUP + "; ECE depends on the class mix in each bin; biased upward at small n, so no interval "
                                 "(its resamples only judge gaps): shown beside its expectation under perfect "
                                 "calibration with the consistency test (evaluation.calibration.miscalibration_test)",
           reference=Reference("sklearn.calibration.calibration_curve", lambda f, y, p, c: _ece_by_curve(f, y, p)))
def ece(c: Counts) -> np.ndarray:
    return _ratio(c.ece_gap, c.n)


#: rates used by the fairness gaps (not shown as table columns)
def selection_rate(c: Counts) -> np.ndarray:
    return _ratio(c.tp + c.fp, c.n)


def false_positive_rate(c: Counts) -> np.ndarray:
    return _ratio(c.fp, c.neg)


def _between_groups(name: str, *, definition: str, reference: Reference) -> None:
    entry = Metric(name=name, task=ONE_VS_REST, definition=definition, direction="lower", gaps=True,
                   undefined="fewer than two groups large enough to compare",
                   design=WITHIN_GROUP + "; judged in the same max-t family as the per-group metrics' gaps",
                   reference=reference, compute=None, why_undefined=None, per_group=False)
    METRICS.register(entry, entry.key)


_between_groups("equalized_odds_difference", definition="the larger of the between-group gaps in true positive rate "
                "and false positive rate at the threshold (Hardt et al., 2016, as fairlearn defines it)",
                reference=Reference("fairlearn.metrics.equalized_odds_difference",
                                    lambda f, y, p, c, g: f(y, c, sensitive_features=g)))
_between_groups("demographic_parity_difference", definition="the between-group gap in the share of cases called "
                "positive at the threshold (selection rate)",
                reference=Reference("fairlearn.metrics.demographic_parity_difference",
                                    lambda f, y, p, c, g: f(y, c, sensitive_features=g)))


# -- each case's top class against its label (Replicates) ----------------------------------------------------------
def _weighted_mean(r: Replicates, values: np.ndarray) -> np.ndarray:
    return _ratio(r.w @ values.astype(r.w.dtype), r.total)


def _one_label(r: Replicates) -> str | None:
    return "only one class present" if len(np.unique(r.y)) < 2 else None


@_register("accuracy", task=TOP_CLASS, definition="share of cases whose top class is their label", why=_never,
           undefined="never (any case gives one)",
           reference=Reference("sklearn.metrics.accuracy_score", lambda f, y, P: f(y, P.argmax(axis=1))))
def accuracy(r: Replicates) -> np.ndarray:
    return _weighted_mean(r, r.top == r.y)


@_register("balanced_accuracy", task=TOP_CLASS, definition="mean recall of the top class over the classes present "
           "(not the one-vs-rest balanced accuracy, which averages one class's sensitivity and specificity)",
           why=_never, undefined="never (any case gives one; absent classes are left out of the mean)",
           reference=Reference("sklearn.metrics.balanced_accuracy_score", lambda f, y, P: f(y, P.argmax(axis=1))))
def multiclass_balanced_accuracy(r: Replicates) -> np.ndarray:
    """Mean recall over the classes present in each replicate (scikit-learn's ``balanced_accuracy_score``)."""
    recalls = []
    for k in np.unique(r.y):
        is_k = (r.y == k).astype(r.w.dtype)
        recalls.append(_ratio(r.w @ (is_k * (r.top == k)), r.w @ is_k))
    return np.nanmean(np.stack(recalls), axis=0) if recalls else np.full(len(r.w), np.nan)


@_register(f"top{TOP_K}_accuracy", task=TOP_CLASS, definition=f"share of cases whose label is among their {TOP_K} "
           "highest-scoring classes", why=_never, undefined="never (any case gives one)",
           reference=Reference("sklearn.metrics.top_k_accuracy_score",
                               lambda f, y, P: f(y, P, k=TOP_K, labels=range(P.shape[1]))))
def top_k_accuracy(r: Replicates) -> np.ndarray:
    return _weighted_mean(r, r.rank < TOP_K)


def _ovr_aurocs(r: Replicates) -> tuple[np.ndarray, np.ndarray]:
    """Per class present with both kinds: the one-vs-rest AUROC ``(K', B)`` and its class weight ``(K', B)``."""
    aucs, support = [], []
    dummy = np.zeros(len(r.y), bool)
    for k in np.unique(r.y):
        is_k = r.y == k
        if is_k.all():
            continue
        c = counts(r.w, is_k, r.P[:, k], dummy)
        aucs.append(_ratio(c.auc_num, c.pos * c.neg))
        support.append(c.pos)
    if not aucs:
        nan = np.full((1, len(r.w)), np.nan)
        return nan, nan
    return np.stack(aucs), np.stack(support)


@_register("macro_auroc", task=TOP_CLASS, definition="unweighted mean of the one-vs-rest AUROCs of the classes present",
           why=_one_label, undefined="only one class present",
           reference=Reference("sklearn.metrics.roc_auc_score",
                               lambda f, y, P: f(y, P, multi_class="ovr", average="macro")))
def macro_auroc(r: Replicates) -> np.ndarray:
    """Unweighted mean of the one-vs-rest AUROCs (scikit-learn ``roc_auc_score(multi_class="ovr")``)."""
    aucs, _ = _ovr_aurocs(r)
    with np.errstate(invalid="ignore"):
        return np.nanmean(aucs, axis=0) if np.isfinite(aucs).any() else np.full(len(r.w), np.nan)


@_register("weighted_auroc", task=TOP_CLASS, definition="one-vs-rest AUROCs weighted by each class's share of the "
           "cases", why=_one_label, undefined="only one class present",
           reference=Reference("sklearn.metrics.roc_auc_score",
                               lambda f, y, P: f(y, P, multi_class="ovr", average="weighted")))
def weighted_auroc(r: Replicates) -> np.ndarray:
    """One-vs-rest AUROCs weighted by each class's share of the cases (``average="weighted"``)."""
    aucs, support = _ovr_aurocs(r)
    ok = np.isfinite(aucs)
    return _ratio(np.where(ok, aucs * support, 0).sum(axis=0), np.where(ok, support, 0).sum(axis=0))


@_register("ece", task=TOP_CLASS, definition=f"top-label expected calibration error: the top-class confidence "
           f"against whether the top class is right, {ECE_BINS} equal-width bins (not the one-vs-rest ECE of one "
           "class's probability)", why=_never, undefined="never (any case gives one)", direction="lower",
           design=WITHIN_GROUP + "; biased upward at small n, so no interval (its resamples only judge gaps): shown "
                                 "beside its expectation under perfect calibration with the consistency test",
           reference=Reference("sklearn.calibration.calibration_curve",
                               lambda f, y, P: _ece_by_curve(f, P.argmax(axis=1) == y, P.max(axis=1))))
def top_label_ece(r: Replicates) -> np.ndarray:
    """Expected calibration error of the top-class confidence against whether the top class is right."""
    c = counts(r.w, r.top == r.y, r.P.max(axis=1), np.zeros(len(r.y), bool))
    return _ratio(c.ece_gap, c.n)


@_register("brier", task=TOP_CLASS, definition="multi-class Brier score: mean over cases of the squared distance "
           "between the probabilities and the one-hot label (0 perfect, 2 worst; for two classes twice the "
           "one-vs-rest Brier)", why=_never, undefined="never (any case gives one)", direction="lower",
           reference=Reference("sklearn.metrics.brier_score_loss",
                               lambda f, y, P: f(y, P, labels=range(P.shape[1]), scale_by_half=False)))
def multiclass_brier(r: Replicates) -> np.ndarray:
    """Multi-class Brier score: mean over cases of the squared distance between probabilities and the one-hot label
    (0 is perfect, 2 the worst)."""
    onehot = np.eye(r.P.shape[1])[r.y]
    return _weighted_mean(r, ((r.P - onehot) ** 2).sum(axis=1))


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
