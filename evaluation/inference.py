"""The one home for inference: resampling designs, bootstrap intervals, simultaneous intervals, multiplicity,
proportion intervals, p-value floors and the :class:`Verdict` a gate returns.

Every page, command and report takes its intervals from here; nothing else writes a quantile pair or a Holm step.
The names and signatures below are stable (other modules import them):

Resampling designs (each returns ``(n_boot, n)`` float32 resample counts, the weights
:func:`evaluation.metrics.counts` takes):

- :func:`case_weights` — a plain case bootstrap (Efron 1979): ``n`` cases drawn with replacement.
- :func:`within_group_weights` — each group's cases drawn with replacement to the group's size; the class mix
  varies between replicates as it does between samples, so prevalence-dependent metrics (PPV, NPV, selection rate,
  ECE) carry the prevalence variation.
- :func:`stratified_weights` — each class drawn separately (class counts fixed). The pre-2026-12 subgroup design;
  kept as ``design="fixed class counts"`` so the calibration suite can show what it did wrong.
- :func:`cluster_weights` — whole clusters (a patient's images) drawn with replacement (Field & Welsh 2007).
- :func:`poisson_ones` and :class:`evaluation.metrics.Cells` — Poisson(1) weights per case or per cell (Hanley &
  MacGibbon 2006) for groups too large for a ``(B, n)`` matrix (re-exported here as ``Cells``).

Intervals: :func:`percentile_interval`, :func:`bca_interval` (Efron & Tibshirani 1993 §14.3; equal to
``scipy.stats.bootstrap(method="BCa")`` on the same replicates), :func:`max_t` for intervals simultaneous over a
family of contrasts (Romano & Wolf 2005), :func:`quantile_mc_interval` for the Monte Carlo error of a bootstrap
quantile (binomial order statistics).

Multiplicity: :func:`holm` and :func:`bonferroni` (adjusted p-values, as ``statsmodels`` ``multipletests``).

Proportions: :func:`wilson` (Wilson 1927; as ``statsmodels`` ``proportion_confint(method="wilson")``),
:func:`wilson_clustered` (Wilson at a design-effect-adjusted effective n, for observations clustered in cases or
patients; Kish 1965), :func:`tango_bounds` (Tango 1998's score interval for a paired difference, its variance under
the null; as R ``contingencytables``) with :func:`paired_design_effect` for pairs clustered in patients.

P-values: :func:`permutation_p`, the smallest p-value ``n`` resamples can show is ``1 / (n + 1)`` (Phipson & Smyth
2010).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binom, norm

__all__ = ["Z95", "case_weights", "within_group_weights", "stratified_weights", "cluster_weights", "poisson_ones",
           "DESIGNS", "percentile_interval", "bca_interval", "quantile_mc_interval", "MaxT", "max_t", "holm",
           "bonferroni", "wilson", "design_effect", "wilson_clustered", "permutation_p", "Verdict", "OUTCOMES",
           "combine_verdicts", "Cells", "cluster_cell_weights", "tango_bounds", "paired_design_effect"]

#: the two-sided 95% normal quantile
Z95 = float(norm.ppf(0.975))

#: the resampling designs by name, in words (what a page or a registry entry says)
DESIGNS = {
    "cases within group": "each group's cases resampled to the group's size, the class mix varying",
    "fixed class counts": "each group's positives and negatives resampled separately (class counts fixed)",
    "patients": "whole patients resampled across the cohort (cluster bootstrap); every group's replicate shares them",
    "cells": "Poisson weights per class × score-bin cell (large groups), the class mix varying",
}


# -- resampling designs ----------------------------------------------------------------------------------------------
def _multinomial_counts(m: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, m)`` counts of ``m`` draws with replacement from ``m`` items: one bincount over all replicates."""
    if m == 0:
        return np.zeros((n_boot, 0), np.float32)
    draws = rng.integers(0, m, size=(n_boot, m), dtype=np.int64) + (np.arange(n_boot, dtype=np.int64) * m)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * m).reshape(n_boot, m).astype(np.float32)


def case_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resample counts of a plain case bootstrap: every replicate draws ``n`` cases."""
    return _multinomial_counts(int(n), n_boot, rng)


def stratified_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resample counts with each stratum (a class, a group) resampled to its own size."""
    strata = np.asarray(strata)
    w = np.zeros((n_boot, len(strata)), np.float32)
    for value in np.unique(strata):
        idx = np.nonzero(strata == value)[0]
        w[:, idx] = _multinomial_counts(len(idx), n_boot, rng)
    return w


def within_group_weights(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)``: each group's cases resampled to the group's size, whatever their class (the class mix
    varies). The same draw as :func:`stratified_weights` with the groups as strata."""
    return stratified_weights(groups, n_boot, rng)


def cluster_weights(clusters: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resample counts of a cluster bootstrap: whole clusters (a patient's images) drawn with
    replacement, every image of a cluster drawn twice counting twice. Images of one patient are not independent;
    resampling them one by one makes intervals too narrow (``benchmarks/cluster_coverage.py``)."""
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    inverse = inverse.reshape(-1)
    c = int(inverse.max()) + 1 if len(inverse) else 0
    return _multinomial_counts(c, n_boot, rng)[:, inverse]


def poisson_ones(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Poisson(1) draws as float32, by inverse CDF on 16-bit uniforms (each value's probability right to 2^-16;
    several times faster than ``rng.poisson`` for the hundreds of millions a million-patient bootstrap needs)."""
    cdf = np.cumsum([np.exp(-1.0) / math.factorial(k) for k in range(12)])
    table = np.searchsorted(np.round(cdf * 65536), np.arange(65536), side="right").astype(np.float32)
    return table[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


def __getattr__(name: str):
    # the cell bootstrap lives beside the counts it resamples; re-exported here without an import cycle
    if name in ("Cells", "cluster_cell_weights"):
        from evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- bootstrap intervals ---------------------------------------------------------------------------------------------
def _finite(values) -> np.ndarray:
    v = np.asarray(values, np.float64).ravel()
    return v[np.isfinite(v)]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The two-sided percentile interval of bootstrap replicates ``values`` (``(B,)``; NaN replicates, where the
    statistic is undefined, left out); ``(nan, nan)`` when none is finite."""
    ok = _finite(values)
    if not len(ok):
        return np.nan, np.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(ok, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bca_interval(point: float, replicates: np.ndarray, jackknife: np.ndarray,
                 level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected and accelerated interval (Efron & Tibshirani 1993, §14.3, eq. 14.14-14.15): ``point`` the
    estimate, ``replicates`` ``(B,)`` its bootstrap replicates, ``jackknife`` ``(n,)`` the leave-one-out estimates.
    Same formulas as ``scipy.stats.bootstrap(method="BCa")``; ``(nan, nan)`` where the distribution is
    degenerate."""
    theta = _finite(replicates)
    jack = np.asarray(jackknife, np.float64)
    if not len(theta) or not np.isfinite(point) or not np.isfinite(jack).all():
        return np.nan, np.nan
    share = (np.count_nonzero(theta < point) + np.count_nonzero(theta <= point)) / (2 * len(theta))
    z0 = norm.ppf(share)
    u = (len(jack) - 1) * (jack.mean() - jack)
    den = np.sum(u ** 2) / len(jack) ** 2
    a = (np.sum(u ** 3) / len(jack) ** 3) / 6 / den ** 1.5 if den > 0 else 0.0
    alpha = (1 - level) / 2
    bounds = []
    for z in (norm.ppf(alpha), norm.ppf(1 - alpha)):
        num = z0 + z
        bounds.append(norm.cdf(z0 + num / (1 - a * num)))
    if not np.isfinite(bounds).all():
        return np.nan, np.nan
    lo, hi = np.quantile(theta, bounds)
    return float(lo), float(hi)


def quantile_mc_interval(values: np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """Monte Carlo interval of the ``q`` quantile of bootstrap replicates: the true quantile of the bootstrap
    distribution lies between order statistics ``j`` and ``k`` of the ``B`` replicates with probability
    ``confidence`` (the count of replicates below it is Binomial(B, q)). Its width is how much a bound read from
    these replicates could move with the seed."""
    ok = np.sort(_finite(values))
    if not len(ok):
        return np.nan, np.nan
    b = len(ok)
    tail = (1 - confidence) / 2
    j = int(binom.ppf(tail, b, q))          # 1-based order statistics j and k + 1
    k = int(binom.ppf(1 - tail, b, q)) + 1
    return float(ok[max(j - 1, 0)]), float(ok[min(k - 1, b - 1)])


@dataclass(frozen=True)
class MaxT:
    """A max-t critical value for a family of contrasts: every contrast's interval ``estimate ± critical × se``
    covers its truth, all at once, with probability ``level``. ``critical_lo``/``critical_hi``: its Monte Carlo
    interval (:func:`quantile_mc_interval`) from ``n_boot`` replicates; ``family``: contrasts judged."""

    critical: float
    critical_lo: float
    critical_hi: float
    level: float
    family: int
    n_boot: int
    se: np.ndarray = field(repr=False)

    def describe(self, what: str) -> str:
        return f"family-wise {round((1 - self.level) * 100, 1):g}% over {what}"


def max_t(replicates: np.ndarray, level: float = 0.95) -> MaxT:
    """Simultaneous intervals by the bootstrap max-t method (Romano & Wolf 2005): ``replicates`` ``(K, B)`` of
    ``K`` contrasts (NaN where a contrast is undefined in a replicate). Each contrast is standardised by its own
    bootstrap standard error; the ``level`` quantile of the largest absolute standardised deviation over the family
    is the critical value. A replicate where every contrast is undefined is left out."""
    r = np.atleast_2d(np.asarray(replicates, np.float64))
    k = r.shape[0]
    if k == 0 or r.shape[1] == 0:
        return MaxT(np.nan, np.nan, np.nan, level, k, 0, np.full(k, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        centre = np.nanmean(r, axis=1, keepdims=True)
        se = np.nanstd(r, axis=1)
        t = np.where(se[:, None] > 0, np.abs(r - centre) / np.where(se[:, None] > 0, se[:, None], 1), 0.0)
        t = np.where(np.isfinite(r), t, np.nan)
        t_max = np.nanmax(t, axis=0)
    t_max = t_max[np.isfinite(t_max)]
    if not len(t_max):
        return MaxT(np.nan, np.nan, np.nan, level, k, 0, se)
    lo, hi = quantile_mc_interval(t_max, level)
    return MaxT(float(np.quantile(t_max, level)), lo, hi, level, k, len(t_max), se)


class _quiet:
    """Silences numpy's all-NaN slice warnings (a contrast undefined in every replicate is NaN, said elsewhere)."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


# -- multiplicity ----------------------------------------------------------------------------------------------------
def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), family-wise error controlled at any level ``alpha`` by
    ``adjusted < alpha``. NaN p-values stay NaN and do not count towards the family. Equal to ``statsmodels``
    ``multipletests(p, method="holm")[1]``."""
    p = np.asarray(pvalues, np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    steps = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out


def bonferroni(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bonferroni-adjusted p-values ``min(1, m p)`` over the finite ones (``multipletests(method="bonferroni")``)."""
    p = np.asarray(pvalues, np.float64).ravel()
    m = int(np.isfinite(p).sum())
    return np.where(np.isfinite(p), np.minimum(1.0, m * p), np.nan)


# -- proportions -----------------------------------------------------------------------------------------------------
def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for ``k`` successes of ``n`` at normal quantile ``z`` (1.96: 95%);
    ``(nan, nan)`` for ``n == 0``. ``k`` and ``n`` may be non-integer (an effective count)."""
    if n <= 0:
        return np.nan, np.nan
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(max(phat * (1 - phat), 0.0) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def design_effect(successes: np.ndarray, clusters: np.ndarray) -> float:
    """Kish's design effect of a proportion over clustered observations: the variance of the ratio estimator
    between clusters (with the ``C / (C - 1)`` correction) over the variance of ``n`` independent ones, at least 1.
    Where every observation agrees (the proportion 0 or 1) the variance cannot be estimated and the design effect
    is ``n / C`` (every cluster as one observation: the cautious end)."""
    y = np.asarray(successes, np.float64).ravel()
    _, inverse = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    n, c = len(y), int(inverse.max()) + 1 if len(y) else 0
    if n == 0 or c == 0:
        return 1.0
    phat = y.mean()
    if phat in (0.0, 1.0):
        return n / c
    if c < 2:
        return float(n)
    k_i = np.bincount(inverse, weights=y, minlength=c)
    n_i = np.bincount(inverse, minlength=c).astype(np.float64)
    var_cluster = c / (c - 1) * np.sum((k_i - phat * n_i) ** 2) / n ** 2
    var_srs = phat * (1 - phat) / n
    return float(max(1.0, var_cluster / var_srs))


def wilson_clustered(successes: np.ndarray, clusters: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """Wilson interval at the effective sample size ``n / deff`` (:func:`design_effect`): for verdicts or hits
    that come in clusters (several readers per case, several images per patient). ``successes`` ``(n,)`` booleans,
    ``clusters`` ``(n,)`` the cluster of each."""
    y = np.asarray(successes, np.float64).ravel()
    if not len(y):
        return np.nan, np.nan
    n_eff = len(y) / design_effect(y, clusters)
    return wilson(y.mean() * n_eff, n_eff, z)


# -- paired proportions ----------------------------------------------------------------------------------------------
def _tango_statistic(delta0: float, gained: float, lost: float, n: float, deff: float) -> float:
    """Tango's (1998) score statistic for H0: Δ = ``delta0`` (Δ = p_after − p_before = (gained − lost) / n), the
    variance taken at the restricted maximum-likelihood estimate of the discordant cell under H0 (Nam 1997), times
    the design effect ``deff``."""
    a = 2 * n
    b = -gained - lost + (2 * n - gained + lost) * delta0
    c = -lost * delta0 * (1 - delta0)
    p_lost = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
    var = n * (2 * p_lost + delta0 * (1 - delta0)) * deff
    num = gained - lost - n * delta0
    if var <= 0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_bounds(gained: float, lost: float, n: float, z: float = Z95, deff: float = 1.0) -> tuple[float, float]:
    """Tango's asymptotic score interval (Tango 1998; Fagerland, Lydersen & Laake 2014) for the difference of two
    paired proportions, ``Δ = (gained − lost) / n``: ``gained`` pairs right only in the second reading (a
    candidate's fixed cases), ``lost`` right only in the first (its broken cases), ``n`` pairs in all. Each end is
    where the score test of ``Δ = Δ0`` reaches ``±z``, its variance taken *under* ``Δ0`` (not at the observed Δ), so
    the one-sided test at a non-inferiority margin ``Δ0 = −margin`` holds its level where a bootstrap percentile bound
    does not (few discordant pairs: ``benchmarks/calibration/subgroups.py``). ``z``: the normal quantile of each
    one-sided bound (1.96: a two-sided 95% interval). ``deff``: a design effect (≥ 1) that inflates the null variance
    where pairs come in clusters (a patient's images; :func:`paired_design_effect`). ``(nan, nan)`` for ``n == 0``.
    As the R package ``contingencytables`` (``Tango_asymptotic_score_CI_paired_2x2``)."""
    if n <= 0:
        return np.nan, np.nan
    from scipy.optimize import brentq

    est = (gained - lost) / n
    eps = 1e-12
    f = lambda d, target: _tango_statistic(d, gained, lost, n, deff) - target  # noqa: E731
    lo = -1.0 if est <= -1 + eps or f(-1 + eps, z) <= 0 else brentq(f, -1 + eps, est, args=(z,), xtol=1e-10)
    hi = 1.0 if est >= 1 - eps or f(1 - eps, -z) >= 0 else brentq(f, est, 1 - eps, args=(-z,), xtol=1e-10)
    return float(lo), float(hi)


def paired_design_effect(change: np.ndarray, clusters: np.ndarray) -> float:
    """The design effect of a paired difference over clustered pairs: ``change`` per pair (+1 gained, −1 lost, 0
    concordant), ``clusters`` the cluster of each (a patient). The between-cluster variance of the mean change (with
    the ``C / (C − 1)`` correction) over the variance of ``n`` independent pairs, at least 1; ``n / C`` where no pair
    is discordant or every discordant pair moves one way (the variance cannot be estimated: the cautious end)."""
    d = np.asarray(change, np.float64).ravel()
    _, inverse = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    n = len(d)
    c = int(inverse.max()) + 1 if n else 0
    if n == 0 or c == n:
        return 1.0
    mean = d.mean()
    var_srs = np.sum((d - mean) ** 2) / n ** 2
    if var_srs <= 0 or c < 2:
        return n / max(c, 1)
    totals = np.bincount(inverse, weights=d, minlength=c)
    sizes = np.bincount(inverse, minlength=c).astype(np.float64)
    var_cluster = c / (c - 1) * np.sum((totals - mean * sizes) ** 2) / n ** 2
    return float(max(1.0, var_cluster / var_srs))


# -- p-values --------------------------------------------------------------------------------------------------------
def permutation_p(exceed: int | np.ndarray, n_resamples: int) -> float | np.ndarray:
    """A resampling p-value that can never be below what the resampling can show: ``(exceed + 1) / (n + 1)``,
    where ``exceed`` resamples were at least as extreme as the observed (Phipson & Smyth 2010). Exact for a
    permutation test; never 0."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    return (np.asarray(exceed, np.float64) + 1) / (n_resamples + 1) if np.ndim(exceed) else \
        (float(exceed) + 1) / (n_resamples + 1)


# -- verdicts --------------------------------------------------------------------------------------------------------
#: the outcomes a gate can reach, most severe first after "fail" (see :func:`combine_verdicts`)
OUTCOMES = ("pass", "fail", "not shown", "could not judge")


@dataclass(frozen=True)
class Verdict:
    """What a gate decided: ``outcome`` one of :data:`OUTCOMES` (``fail``: shown to break its limit; ``not shown``:
    neither shown within nor beyond it; ``could not judge``: too little data to test), ``reasons`` one sentence per
    finding, ``error_control`` the error the gate controls and over what family, in words (its burden of proof).
    The one thing behind a CLI exit code, a page banner and a report sentence."""

    outcome: str
    reasons: tuple[str, ...] = ()
    error_control: str = ""
    #: the verdicts this one combines (one per gated metric), each with its own outcome
    parts: tuple[Verdict, ...] = ()

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"verdict outcome {self.outcome!r} is not one of {OUTCOMES}")
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "parts", tuple(self.parts))

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def combine_verdicts(verdicts: Iterable[Verdict], error_control: str = "") -> Verdict:
    """Several gates as one: fail if any fails, else not shown if any is not shown, else could not judge if any
    could not, else pass (none given: could not judge). Reasons kept in order; the verdicts kept as ``parts``."""
    verdicts = list(verdicts)
    outcomes = {v.outcome for v in verdicts}
    outcome = next((o for o in ("fail", "not shown", "could not judge") if o in outcomes),
                   "pass" if verdicts else "could not judge")
    reasons = tuple(r for v in verdicts for r in v.reasons) or (("nothing was gated",) if not verdicts else ())
    control = error_control or "; ".join(dict.fromkeys(v.error_control for v in verdicts if v.error_control))
    return Verdict(outcome, reasons, control, tuple(verdicts))
