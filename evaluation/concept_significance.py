"""Concept significance: the TCAV test, its effect with an interval, Holm's correction and the CAV-accuracy gate,
with a causal check beside the score where one exists.

The runs come from :func:`explainers.concepts.tcav_runs` (independent concept and random samples per run, a CAV per
run). The tested statistic is the concept's *sensitivity*: the mean over runs of the mean cosine between the class
gradient at each input and the run's CAV (the signed size of the directional derivative whose sign TCAV counts). Its
null distribution is that of the reference concepts (sets of the same size drawn from the random pool, run exactly
as the concept is: random-vs-random runs made the same way), so the p-value is a rank against them, two-sided, never
below ``1 / (K + 1)`` for K references (``evaluation.inference.permutation_p``). The effect is the sensitivity minus
the reference mean, with the interval that inverts the same test (the shifts the reference's central ``1 − α``
range does not reject). The TCAV score (the sign count) is reported beside its own reference, but not tested: when
the inputs' gradients agree, a random folder's TCAV score sits near 0 or 1 too (reference spread 0.19–0.25 on the
demo), so a sign count of 1.0 is no rarity while a large cosine is. Holm's method controls the family-wise error
over every concept × layer tested together. A concept the layer cannot separate from random images (mean CAV
accuracy below :data:`MIN_CAV_ACCURACY`) is never called significant, whatever its p: its direction is noise.

TCAV is a directional derivative, not a causal effect. Where a concept can be taken away from real cases (a region
erased, as the Compare page's region test does), the mean change of the class probability stands beside the score
(:class:`CausalCheck`), and the verdict says in words when the two disagree.

Error controlled: the family-wise false-significance rate over the concepts × layers of one run of the test, at
``alpha``; measured by ``benchmarks/calibration/concepts.py``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.records import ConceptScore
from evaluation.inference import holm, percentile_interval, permutation_p
from explainers.concepts import ConceptRuns

__all__ = ["ALPHA", "MIN_CAV_ACCURACY", "CAUSAL_MARGIN", "GATE", "AGREES", "DISAGREES", "UNCLEAR", "CausalCheck",
           "reference_p", "concept_scores", "agreement", "agreement_kind"]

ALPHA = 0.05
#: below this mean CAV accuracy the layer cannot tell the concept from random images: never "significant"
MIN_CAV_ACCURACY = 0.6
#: a change of the class probability smaller than this (interval inside ±margin) counts as "does not move it"; a
#: change counts as "moves it" when its interval excludes zero and its estimate reaches the margin (the demo's own
#: bound for "v2 ignores the marker" is 0.1)
CAUSAL_MARGIN = 0.10
#: how TCAV's verdict and the causal check relate (:attr:`ConceptScore.agreement_kind`); "" without a check
AGREES, DISAGREES, UNCLEAR = "agrees", "disagrees", "unclear"
GATE = (f"a concept is called significant only when its Holm-adjusted p is below {ALPHA:g} AND its mean CAV accuracy "
        f"is at least {MIN_CAV_ACCURACY:.2f} (below that the layer cannot tell it from random images and its score "
        "means nothing, whatever its p)")


@dataclass(frozen=True)
class CausalCheck:
    """The concept taken away from real cases: ``shift`` is the mean change of the class probability (after −
    before) over ``n`` cases, with its interval; ``description`` says what was done (e.g. "erasing region
    demo-marker (mirror) in 40 marked cases of class 'lesion'")."""

    description: str
    shift: float
    lo: float
    hi: float
    n: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.shift) and self.lo <= self.shift <= self.hi) or self.n < 1:
            raise InvalidInputError(f"causal check {self.description!r}: shift {self.shift} must lie in "
                                    f"[{self.lo}, {self.hi}] over n={self.n} ≥ 1 cases")

    @property
    def moves(self) -> bool | None:
        """True when the interval excludes zero and the shift reaches :data:`CAUSAL_MARGIN`; False when the interval
        lies within ±margin; None when it can tell neither."""
        if (self.lo > 0 or self.hi < 0) and abs(self.shift) >= CAUSAL_MARGIN:
            return True
        if -CAUSAL_MARGIN < self.lo and self.hi < CAUSAL_MARGIN:
            return False
        return None


def reference_p(observed: float, reference: np.ndarray) -> float:
    """Two-sided p of ``observed`` against the reference draws ``(K,)``: the share of references at least as far
    from the reference mean, counting the observation itself, ``(1 + #) / (K + 1)`` (never below ``1 / (K + 1)``)."""
    reference = np.asarray(reference, float)
    if reference.ndim != 1 or len(reference) < 1 or not np.isfinite(reference).all():
        raise InvalidInputError(f"a reference distribution must be a finite 1-D array, got shape {reference.shape}")
    centre = reference.mean()
    distance = abs(observed - centre)
    exceed = np.count_nonzero(np.abs(reference - centre) >= distance - 1e-12 * max(1.0, distance))
    return float(permutation_p(int(exceed), len(reference)))


def _agreement(significant: bool, effect: float, causal: CausalCheck | None,
               what: str = "the class probability") -> tuple[str, str]:
    """(kind, sentence): :data:`AGREES`, :data:`DISAGREES` or :data:`UNCLEAR` and the sentence; ("", "") without a
    causal check."""
    if causal is None:
        return "", ""
    moved = f"{causal.description} moves {what} by {causal.shift:+.2f} [{causal.lo:+.2f}, {causal.hi:+.2f}]"
    if causal.moves is None:
        return UNCLEAR, f"{moved}: too uncertain to confirm or contradict TCAV"
    if significant and causal.moves is False:
        return DISAGREES, f"significant by TCAV but {moved}: not causal (TCAV's direction is a local derivative)"
    if significant and causal.moves:
        same = (effect > 0) == (causal.shift < 0)  # raising along the concept ⇔ taking it away lowers the score
        return ((AGREES, f"significant by TCAV and {moved}: the causal check agrees") if same else
                (DISAGREES, f"significant by TCAV and {moved}: the causal check points the other way"))
    if causal.moves:
        return DISAGREES, f"not significant by TCAV, yet {moved}: the model uses it (TCAV missed it)"
    return AGREES, f"not significant by TCAV, and {moved}: both say it does not matter"


def agreement(significant: bool, effect: float, causal: CausalCheck | None, what: str = "the class probability") -> str:
    """One sentence: how the TCAV verdict and the causal check agree (empty when there is no causal check)."""
    return _agreement(significant, effect, causal, what)[1]


def agreement_kind(significant: bool, effect: float, causal: CausalCheck | None) -> str:
    """The same in one word: :data:`AGREES`, :data:`DISAGREES` or :data:`UNCLEAR` ("" without a causal check)."""
    return _agreement(significant, effect, causal)[0]


def concept_scores(runs: Sequence[ConceptRuns], *, alpha: float = ALPHA, min_accuracy: float = MIN_CAV_ACCURACY,
                   causal: Mapping[str, CausalCheck] | None = None) -> list[ConceptScore]:
    """The test for every concept × layer in ``runs``, Holm-corrected across all of them, with verdicts."""
    if not runs:
        raise InvalidInputError("no TCAV runs to test")
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must lie in (0, 1), got {alpha}")
    causal = dict(causal or {})
    rows = []
    for r in runs:
        sensitivity, reference = float(r.cosines.mean()), np.asarray(r.reference_cosines, float)
        centre = float(reference.mean())
        lo_q, hi_q = percentile_interval(reference, 1 - alpha)
        rows.append(dict(
            concept=r.concept, layer=r.layer, target=int(r.target), score=float(r.scores.mean()),
            spread=float(r.scores.std(ddof=1)), null_score=float(np.mean(r.reference)),
            null_spread=float(np.std(r.reference, ddof=1)), sensitivity=sensitivity, null_sensitivity=centre,
            null_sensitivity_spread=float(reference.std(ddof=1)),
            p_value=reference_p(sensitivity, reference), cav_accuracy=float(np.mean(r.accuracies)),
            runs=len(r.scores), effect=sensitivity - centre, effect_lo=float(sensitivity - hi_q),
            effect_hi=float(sensitivity - lo_q),
            references=len(reference), p_floor=1.0 / (len(reference) + 1), sample=int(r.sample),
            reference_accuracy=float(r.reference_accuracy)))
    adjusted = holm(np.array([row["p_value"] for row in rows]))
    out = []
    for row, p_adj in zip(rows, adjusted):
        p_adj = float(min(1.0, max(p_adj, row["p_value"])))
        separable = row["cav_accuracy"] >= min_accuracy
        significant = bool(p_adj < alpha and separable)
        if not separable:
            verdict = (f"not judged: the layer cannot separate this concept from random images (CAV accuracy "
                       f"{row['cav_accuracy']:.2f} < {min_accuracy:.2f}; adjusted p {p_adj:.2g} ignored)")
        elif significant:
            direction = "raises" if row["effect"] > 0 else "lowers"
            verdict = f"significant: the concept {direction} the class score (adjusted p {p_adj:.2g})"
        else:
            verdict = f"not significant (adjusted p {p_adj:.2g}, smallest possible {row['p_floor']:.2g})"
        check = causal.get(row["concept"])
        kind, sentence = _agreement(significant, row["effect"], check)
        out.append(ConceptScore(
            **row, p_adjusted=p_adj, significant=significant, verdict=verdict,
            causal_check=check.description if check else "",
            causal_shift=check.shift if check else math.nan, causal_lo=check.lo if check else math.nan,
            causal_hi=check.hi if check else math.nan, agreement=sentence,
            agreement_kind=kind))
    return out
