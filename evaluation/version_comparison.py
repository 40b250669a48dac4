"""Comparing model versions on one cohort: paired metric deltas with non-inferiority verdicts, flipped cases with
McNemar's test, and a region test (does erasing a region move each version?).

**Paired.** Both versions are scored on the *same* resampled cases in every bootstrap replicate (the same ``(B, n)``
weights: stratified by class within each group, or resampling patients where they are known), so an interval
reflects the difference between versions, not the noise of two separate samples; a version compared with itself gets
a delta of exactly 0 with a zero-width interval.

**Non-inferiority.** For each group and metric, "the candidate is not worse than the baseline by more than the
margin" is *shown* when the one-sided lower confidence bound of the improvement (candidate − baseline; baseline −
candidate where the metric's registry entry says lower is better: Brier, ECE) lies above −margin. The bound is
Bonferroni-adjusted across the groups judged (overall included), so the chance of wrongly showing non-inferiority
anywhere stays at most ``(1 - level) / 2``; *worse* is shown when the upper bound lies below −margin; otherwise *not
shown*. Groups too small to judge are said so, never passed.

**The bounds.** For the metrics that are a share of cases judged right (sensitivity, specificity, accuracy:
:data:`SCORE_BOUNDED`) the bounds are Tango's score bounds for paired proportions (:func:`evaluation.inference.
tango_bounds`), the variance taken under the null at each candidate value of the difference, so the test at −margin
holds its level; the paired percentile bootstrap took its spread at the observed difference and passed a candidate
worse by exactly the margin 4.2% of the time against 2.5% (about 20 discordant positives;
``benchmarks/calibration/subgroups.py``). Where patients are known, the null variance is inflated by the design
effect of the per-pair change between patients (:func:`evaluation.inference.paired_design_effect`). Two versions
whose predictions are identical on every case compared differ by exactly 0, bound included. The other metrics
(AUROC, PPV, NPV, balanced accuracy, Brier, ECE) keep the paired bootstrap's percentile bounds.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest, norm

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER, PredictionTable, probability_column, probability_columns
from evaluation.inference import (
    Verdict,
    case_weights,
    combine_verdicts,
    holm,
    paired_design_effect,
    percentile_interval,
    permutation_p,
    quantile_mc_interval,
    tango_bounds,
)
from evaluation.metrics import ONE_VS_REST, TOP_CLASS, Replicates, counts, entries
from evaluation.outcomes import with_outcomes
from evaluation.subgroups import MISSING, replicate_weights, resampling

__all__ = ["ComparisonReport", "paired_comparison", "flips", "flip_summary", "mcnemar", "FLIP_KINDS",
           "comparison_frame", "noninferiority_gate", "N_BOOT", "mcnemar_clustered",
           "mcnemar_design", "paired_error_detection", "region_shift", "tcav_difference", "SCORE_BOUNDED"]

#: default paired resamples: the gate's bound is a far-tail quantile (2.5% Bonferroni-divided by the groups judged),
#: so it needs many more replicates than a central interval; its Monte Carlo interval is stated with every verdict
N_BOOT = 4000

FLIP_KINDS = ("fixed", "broken", "still wrong", "both right")

#: metric → which cases it is the share judged right of, in the view it belongs to (one-vs-rest: positives,
#: negatives; top class: all): these get Tango's score bounds, the rest the paired bootstrap's
SCORE_BOUNDED = {"sensitivity": "positives", "specificity": "negatives", "accuracy": "all"}


@dataclass(frozen=True)
class ComparisonReport:
    """``table``: one row per group and metric: baseline, candidate, delta (candidate − baseline) with a two-sided
    interval, ``improvement_lower`` (the adjusted one-sided bound of the improvement), the margin, the verdict and
    ``why_undefined`` (the metric entry's reason where either version has no value; empty otherwise)."""

    baseline: str
    candidate: str
    by: tuple[str, ...]
    view: str
    level: float
    n_boot: int
    min_n: int
    resampling: str
    adjusted_over: int
    table: pd.DataFrame
    #: "score" (Tango's bounds for :data:`SCORE_BOUNDED`) or "percentile" (the old design, every metric bootstrapped)
    proportion_bound: str = "score"

    def score_bounded(self, metric: str) -> bool:
        """Whether ``metric``'s bound is a score bound (no resampling in it) rather than a bootstrap quantile."""
        return self.proportion_bound == "score" and metric in SCORE_BOUNDED and \
            (SCORE_BOUNDED[metric] == "all") == self.view.startswith("top class")

    def verdicts(self, metric: str) -> pd.DataFrame:
        return self.table[self.table["metric"] == metric]

    @property
    def error_control(self) -> str:
        """The gate's burden of proof in one line."""
        one_sided = (1 - self.level) / 2
        return (f"passes only what is shown not worse: in every group judged, the one-sided "
                f"{100 * (1 - one_sided / self.adjusted_over):.2f}% lower bound of the improvement lies above −margin "
                f"(Bonferroni over {self.adjusted_over} group(s), so the chance of wrongly showing non-inferiority "
                f"anywhere is at most {100 * one_sided:g}%); the bound is Tango's score bound, its variance under the "
                f"null, for {', '.join(SCORE_BOUNDED)}, and the paired bootstrap's percentile for the other metrics")


def paired_comparison(frame: pd.DataFrame, base_probs: np.ndarray, cand_probs: np.ndarray, by: str | Sequence[str],
                      *, baseline: str = "baseline", candidate: str = "candidate", class_index: int | None = None,
                      thresholds: tuple[float, float] = (0.5, 0.5), margins: dict[str, float] | None = None,
                      n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0, min_n: int = 30,
                      min_events: int = 5, proportion_bound: str = "score") -> ComparisonReport:
    """``frame``: the labelled cases (``label``, the attributes in ``by``, :data:`CLUSTER` where known), in the
    order of the rows of ``base_probs`` and ``cand_probs`` (``(n, K)`` each). ``class_index`` None: the top-class
    view (multi-class metrics); otherwise that class one-vs-rest, called at each version's own threshold.
    ``margins``: metric → non-inferiority margin (default 0.02 for every metric). ``proportion_bound``: ``"score"``
    (Tango's bounds for :data:`SCORE_BOUNDED`, the product's design) or ``"percentile"`` (the paired bootstrap's
    percentile bound for every metric: the pre-2026-12 design, kept so the calibration suite can show its rate)."""
    if proportion_bound not in ("score", "percentile"):
        raise InvalidInputError(f"proportion_bound must be 'score' or 'percentile', not {proportion_bound!r}")
    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in frame.columns]
    if missing:
        raise InvalidInputError(f"unknown attribute(s) {missing}")
    if len(frame) != len(base_probs) or len(frame) != len(cand_probs):
        raise InvalidInputError("both versions need a prediction for every case compared")
    if frame["label"].isna().any():
        raise InvalidInputError("comparison needs labelled cases only")
    frame = frame.reset_index(drop=True).copy()
    for b in by:
        frame[b] = frame[b].astype("string").fillna(MISSING)
    y_all = frame["label"].astype(int).to_numpy()
    metrics = entries(TOP_CLASS if class_index is None else ONE_VS_REST)
    names = [m.name for m in metrics]
    margins = {m: 0.02 for m in names} | dict(margins or {})
    unknown = sorted(set(margins) - set(names))
    if unknown:
        raise InvalidInputError(f"margin(s) for unknown metric(s) {unknown}; metrics here: {', '.join(names)}")
    rng = np.random.default_rng(seed)
    shared = replicate_weights(frame, n_boot, rng)
    groups = _groups(frame, by)

    def views(idx: np.ndarray, w: np.ndarray) -> tuple:
        """What the entries read for both versions under weights ``w``: ``Replicates`` or ``Counts`` each."""
        y = y_all[idx]
        if class_index is None:
            return Replicates(w, y, base_probs[idx]), Replicates(w, y, cand_probs[idx])
        yk = y == class_index
        pb, pc = base_probs[idx, class_index], cand_probs[idx, class_index]
        return counts(w, yk, pb, pb >= thresholds[0]), counts(w, yk, pc, pc >= thresholds[1])

    identical = bool(np.array_equal(base_probs, cand_probs)) and thresholds[0] == thresholds[1]
    if class_index is None:
        right = {"baseline": base_probs.argmax(axis=1) == y_all, "candidate": cand_probs.argmax(axis=1) == y_all}
        positive = np.ones(len(y_all), bool)
    else:
        positive = y_all == class_index
        right = {tag: (probs[:, class_index] >= cut) == positive
                 for tag, probs, cut in (("baseline", base_probs, thresholds[0]),
                                         ("candidate", cand_probs, thresholds[1]))}
    clusters = frame[CLUSTER].to_numpy() if shared is not None else None

    def score_bounds(metric: str, idx: np.ndarray, z: float) -> tuple[float, float]:
        """Tango's bounds of the candidate − baseline difference in the share judged right, over the cases the
        metric counts (its patients' design effect where known)."""
        which = SCORE_BOUNDED[metric]
        keep = idx[positive[idx]] if which == "positives" else idx[~positive[idx]] if which == "negatives" else idx
        change = right["candidate"][keep].astype(int) - right["baseline"][keep].astype(int)
        deff = paired_design_effect(change, clusters[keep]) if clusters is not None else 1.0
        return tango_bounds(float((change > 0).sum()), float((change < 0).sum()), float(len(keep)), z, deff)

    rows = []
    judged = [g for g, sub in groups if not _small(sub, y_all, class_index, min_n, min_events)]
    adjusted = max(1, len(judged))
    one_sided = (1 - level) / 2 / adjusted
    for name, sub in groups:
        idx = sub.index.to_numpy()
        y = y_all[idx]
        # the group's cases resampled to its size, the class mix varying (each entry's design in METRICS)
        w = shared[:, idx] if shared is not None else case_weights(len(idx), n_boot, rng)
        point = views(idx, np.ones((1, len(idx))))
        boot = views(idx, w)
        small = name not in judged
        for entry in metrics:
            m = entry.name
            base_v, cand_v = float(entry(point[0])[0]), float(entry(point[1])[0])
            deltas = entry(boot[1]) - entry(boot[0])
            ok = deltas[np.isfinite(deltas)]
            sign = 1.0 if entry.higher_is_better else -1.0
            if len(ok) and np.isfinite(base_v) and np.isfinite(cand_v):
                lo, hi = percentile_interval(ok, level)
                if proportion_bound == "score" and m in SCORE_BOUNDED and \
                        (class_index is None) == (SCORE_BOUNDED[m] == "all"):
                    # a score bound: no resampling in it, so no Monte Carlo error (its interval is the bound)
                    gain_lo, gain_hi = (0.0, 0.0) if identical else \
                        score_bounds(m, idx, float(norm.ppf(1 - one_sided)))
                    mc_lo, mc_hi = gain_lo, gain_lo
                else:
                    gain_lo, gain_hi = percentile_interval(sign * ok, 1 - 2 * one_sided)
                    mc_lo, mc_hi = quantile_mc_interval(sign * ok, one_sided)
            else:
                lo = hi = gain_lo = gain_hi = mc_lo = mc_hi = np.nan
            margin = float(margins[m])
            # the entry's reason where either version has no value (the same cases, so usually both)
            why = "; ".join(f"{tag}: {reason}" for tag, reason in
                            (("baseline", entry.why_undefined(point[0])), ("candidate", entry.why_undefined(point[1])))
                            if reason)
            if small:
                verdict = "too small to judge"
            elif not np.isfinite(gain_lo):
                verdict = "undefined"
                why = why or "undefined in every resample"
            elif gain_lo > -margin:
                verdict = "not worse (shown)"
            elif gain_hi < -margin:
                verdict = "worse"
            else:
                verdict = "not shown"
            row = {"group": name, "n": len(idx)}
            if shared is not None:
                row["patients"] = int(sub[CLUSTER].nunique())
            row.update({"metric": m, "baseline": base_v, "candidate": cand_v, "delta": cand_v - base_v,
                        "delta_lo": lo, "delta_hi": hi, "improvement_lower": gain_lo,
                        "improvement_lower_mc_lo": mc_lo, "improvement_lower_mc_hi": mc_hi, "margin": margin,
                        "verdict": verdict, "small": small, "why_undefined": why})
            rows.append(row)
    view = "top class against the label" if class_index is None else f"class {class_index} one-vs-rest"
    return ComparisonReport(baseline=baseline, candidate=candidate, by=tuple(by), view=view, level=level,
                            n_boot=n_boot, min_n=min_n, resampling=resampling(frame, stratified=False),
                            adjusted_over=adjusted, table=pd.DataFrame(rows), proportion_bound=proportion_bound)


def _groups(frame: pd.DataFrame, by: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """``overall`` and, when ``by`` names attributes, each group (or intersection)."""
    if not by:
        return [("overall", frame)]
    return [("overall", frame)] + [
        (" · ".join(map(str, key if isinstance(key, tuple) else (key,))), sub)
        for key, sub in frame.groupby(by if len(by) > 1 else by[0], sort=True, observed=True)]


def _small(sub: pd.DataFrame, y_all: np.ndarray, class_index: int | None, min_n: int, min_events: int) -> bool:
    y = y_all[sub.index.to_numpy()]
    if len(y) < min_n:
        return True
    if class_index is None:
        return False
    events = int((y == class_index).sum())
    return min(events, len(y) - events) < min_events


def mcnemar(broken: int, fixed: int) -> float:
    """Exact McNemar test (two-sided): among the cases whose outcome changed, is a change in one direction more
    likely than in the other? A binomial test of ``broken`` out of ``broken + fixed`` at 1/2."""
    n = broken + fixed
    return 1.0 if n == 0 else float(binomtest(broken, n, 0.5).pvalue)


def flips(frame: pd.DataFrame, base_probs: np.ndarray, cand_probs: np.ndarray, *, class_index: int | None,
          thresholds: tuple[float, float] = (0.5, 0.5)) -> pd.DataFrame:
    """One row per labelled case: each version's probability (of the top class, or of ``class_index``), its
    prediction, whether it is right, and ``change``: fixed (wrong → right), broken (right → wrong), still wrong or
    both right. Rows in ``frame``'s order."""
    k = base_probs.shape[1]
    out = frame.reset_index(drop=True).copy()
    judged = {}
    for tag, probs, threshold in (("baseline", base_probs, thresholds[0]), ("candidate", cand_probs, thresholds[1])):
        columns = pd.DataFrame(probs, columns=probability_columns(k))
        o = with_outcomes(pd.concat([out[["label"]], columns], axis=1), class_index, threshold, n_classes=k)
        judged[tag] = ~o["error"].to_numpy(bool)
        out[probability_column(tag)] = o["probability"].to_numpy()
        out[f"predicted_{tag}"] = o["predicted"].to_numpy() if class_index is None else o["called"].to_numpy()
    right_b, right_c = judged["baseline"], judged["candidate"]
    out["change"] = np.select([~right_b & right_c, right_b & ~right_c, ~right_b & ~right_c],
                              ["fixed", "broken", "still wrong"], "both right")
    out["p_change"] = out["p_candidate"] - out["p_baseline"]
    return out


def mcnemar_clustered(broken: np.ndarray, fixed: np.ndarray, *, n_resamples: int = 20_000, seed: int = 0) -> float:
    """McNemar's test when images are nested in patients: per patient ``d = broken − fixed`` (its images' counts);
    under no difference between the versions each patient's ``d`` is as likely negative as positive, so the p-value
    is the share of sign flips of the patients' ``d`` whose sum is at least as far from 0 as observed (two-sided; the
    sign-flip form of Durkalski et al.'s clustered McNemar, 2003). Exact by enumeration up to 16 patients with a
    discordant difference, otherwise ``n_resamples`` seeded flips floored by :func:`permutation_p`. With one image
    per patient it is the exact McNemar test."""
    d = np.asarray(broken, np.int64) - np.asarray(fixed, np.int64)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    observed = abs(int(d.sum()))
    if len(d) <= 16:
        signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        return float(np.mean(np.abs(signs @ d) >= observed))
    rng = np.random.default_rng(seed)
    exceed = int(sum(int((np.abs(rng.choice((-1, 1), size=(b, len(d))) @ d) >= observed).sum())
                     for b in np.diff(np.r_[0:n_resamples:5000, n_resamples])))
    return float(min(1.0, permutation_p(exceed, n_resamples)))


def flip_summary(table: pd.DataFrame) -> dict[str, float]:
    """Counts of each kind of change, and McNemar's p-value on the discordant cases: exact on cases, or, where the
    table says which patient each image came from (:data:`CLUSTER`) and some patient has several, the patients'
    sign-flip test (:func:`mcnemar_clustered`: images of one patient are not independent; the exact test on images
    flagged 22% of equal versions at 5% with 1-4 images per patient). ``mcnemar_patients``: the patients it was
    judged over (0: cases treated as independent)."""
    counted = {kind: int((table["change"] == kind).sum()) for kind in FLIP_KINDS}
    if CLUSTER in table and table[CLUSTER].notna().all() and table[CLUSTER].duplicated().any():
        per = pd.DataFrame({"broken": table["change"].eq("broken").to_numpy(int),
                            "fixed": table["change"].eq("fixed").to_numpy(int),
                            "patient": table[CLUSTER].to_numpy()}).groupby("patient", sort=False).sum()
        return {**counted, "mcnemar_p": mcnemar_clustered(per["broken"].to_numpy(), per["fixed"].to_numpy()),
                "mcnemar_patients": len(per)}
    return {**counted, "mcnemar_p": mcnemar(counted["broken"], counted["fixed"]), "mcnemar_patients": 0}


def comparison_frame(cohort_frame: pd.DataFrame, base: PredictionTable, cand: PredictionTable,
                     n_classes: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Labelled cases of the cohort with both versions' probabilities, aligned by case id: ``(frame, base (n, K),
    candidate (n, K))``."""
    if base.n_classes != n_classes or cand.n_classes != n_classes:
        raise InvalidInputError(f"the versions' predictions have {base.n_classes} and {cand.n_classes} classes, "
                                f"not {n_classes}")
    frame = cohort_frame[cohort_frame["label"].notna()].merge(pd.DataFrame({"case_id": base.case_ids}), on="case_id")
    frame = frame.merge(pd.DataFrame({"case_id": cand.case_ids}), on="case_id").reset_index(drop=True)
    ids = frame["case_id"].tolist()
    return frame, base.select(ids).probabilities(), cand.select(ids).probabilities()


def region_shift(frame: pd.DataFrame, shifts: dict[str, np.ndarray], by: str | Sequence[str], *, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean probability shift when a region is perturbed, per version and group, with paired bootstrap intervals
    (the same resampled cases for every version), plus each candidate's shift minus the first version's.
    ``shifts``: version → ``(n,)`` (probability after − before), rows in ``frame``'s order."""
    by = [by] if isinstance(by, str) else list(by)
    frame = frame.reset_index(drop=True).copy()
    for b in by:
        frame[b] = frame[b].astype("string").fillna(MISSING)
    rng = np.random.default_rng(seed)
    shared = replicate_weights(frame, n_boot, rng)
    groups = _groups(frame, by)
    names = list(shifts)
    rows = []
    for name, sub in groups:
        idx = sub.index.to_numpy()
        w = shared[:, idx] if shared is not None else case_weights(len(idx), n_boot, rng)
        total = w.sum(axis=1)
        boots = {v: (w @ shifts[v][idx].astype(w.dtype)) / total for v in names}
        for v in names:
            lo, hi = percentile_interval(boots[v], level)
            rows.append({"group": name, "n": len(idx), "version": v, "mean_shift": float(shifts[v][idx].mean()),
                         "lo": float(lo), "hi": float(hi)})
        for v in names[1:]:
            diff = boots[v] - boots[names[0]]
            lo, hi = percentile_interval(diff, level)
            rows.append({"group": name, "n": len(idx), "version": f"{v} − {names[0]}",
                         "mean_shift": float(shifts[v][idx].mean() - shifts[names[0]][idx].mean()),
                         "lo": float(lo), "hi": float(hi)})
    out = pd.DataFrame(rows)
    out["excludes_zero"] = (out["lo"] > 0) | (out["hi"] < 0)
    return out


def mcnemar_design(summary) -> str:
    """How the McNemar p-value of :func:`flip_summary` was computed, in words (CLI, page and report say the same)."""
    patients = int(summary.get("mcnemar_patients", 0) or 0)
    if patients:
        return (f"sign-flip test over {patients} patients (Durkalski et al. 2003): a patient's images move together, "
                "so patients, not images, are the unit")
    return "exact McNemar test on the changed cases, treated as independent (one image per patient, or no patient key)"


def tcav_difference(base: pd.DataFrame, cand: pd.DataFrame, *, baseline: str = "baseline",
                    candidate: str = "candidate") -> pd.DataFrame:
    """TCAV of two versions side by side per concept and layer (matched by name): each version's own calibrated
    result (its effect over reference concepts with the interval, and its verdict, from
    :mod:`evaluation.concept_significance`), the change in effect, and in words whether the verdicts agree.

    No test of the *difference* is made. A Welch test on the per-run TCAV scores (the earlier design) said "differs"
    for 30% of version pairs whose population TCAV was equal (``benchmarks/calibration/comparison.py``,
    :func:`tcav_claims`): the runs carry only the CAVs' randomness, not the sampling of the inputs each version's
    gradients are taken at. Each version's verdict is calibrated on its own (its reference concepts); the region
    test is the comparison of what the versions rely on."""
    merged = base.merge(cand, on=["concept", "layer", "target"], suffixes=(f"_{baseline}", f"_{candidate}"))
    if merged.empty:
        raise InvalidInputError("no concept and layer in common between the two versions' TCAV results")
    a, b = f"_{baseline}", f"_{candidate}"
    rows = []
    for r in merged.to_dict("records"):
        sig_a, sig_b = bool(r.get("significant" + a, False)), bool(r.get("significant" + b, False))
        words = ("significant for both" if sig_a and sig_b else "significant for neither" if not (sig_a or sig_b)
                 else f"significant for {baseline if sig_a else candidate} only")
        rows.append({"concept": r["concept"], "layer": r["layer"],
                     f"{baseline} effect": r.get("effect" + a, np.nan),
                     f"{baseline} interval": _interval(r.get("effect_lo" + a), r.get("effect_hi" + a)),
                     f"{candidate} effect": r.get("effect" + b, np.nan),
                     f"{candidate} interval": _interval(r.get("effect_lo" + b), r.get("effect_hi" + b)),
                     "change": r.get("effect" + b, np.nan) - r.get("effect" + a, np.nan),
                     "verdicts": words,
                     f"{baseline} verdict": r.get("verdict" + a, ""), f"{candidate} verdict": r.get("verdict" + b, "")})
    return pd.DataFrame(rows)


def _interval(lo, hi) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None and np.isfinite([lo, hi]).all() else ""


def paired_error_detection(frame: pd.DataFrame, uncertainty: dict[str, np.ndarray], errors: dict[str, np.ndarray], *,
                           n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Does each version's uncertainty flag its own errors? Error-detection AUROC per version and each later
    version's difference from the first, on the same resampled cases (patients where known)."""
    from evaluation.metrics import auroc

    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    shared = replicate_weights(frame, n_boot, rng)
    w = shared if shared is not None else case_weights(len(frame), n_boot, rng)
    point, boots = {}, {}
    for version, u in uncertainty.items():
        e = np.asarray(errors[version], bool)
        dummy = np.zeros(len(e), bool)
        point[version] = float(auroc(counts(np.ones((1, len(e))), e, u, dummy))[0]) if 0 < e.sum() < len(e) else np.nan
        boots[version] = auroc(counts(w, e, np.asarray(u, float), dummy))
    names = list(uncertainty)
    rows = []
    for v in names:
        ok = boots[v][np.isfinite(boots[v])]
        lo, hi = percentile_interval(ok, level) if np.isfinite(point[v]) else (np.nan, np.nan)
        rows.append({"version": v, "errors": int(np.sum(errors[v])), "n": len(frame), "auroc": point[v],
                     "lo": lo, "hi": hi})
    for v in names[1:]:
        d = boots[v] - boots[names[0]]
        ok = d[np.isfinite(d)]
        lo, hi = percentile_interval(ok, level)
        rows.append({"version": f"{v} − {names[0]}", "errors": None, "n": len(frame),
                     "auroc": point[v] - point[names[0]], "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def noninferiority_gate(report: ComparisonReport, metrics: Sequence[str]) -> Verdict:
    """The ``compare --max-regression`` gate: for each metric, ``pass`` when every group large enough to judge is
    shown not worse by more than its margin; ``fail`` when some group is shown worse; ``not shown`` when some group
    is neither (or its metric is undefined); ``could not judge`` when no group is large enough. Each reason states
    the bound and its Monte Carlo interval (how far it could move with the seed)."""
    control = report.error_control
    verdicts = []
    for metric in metrics:
        rows = report.verdicts(metric)
        judged = rows[~rows["small"]]
        if judged.empty:
            verdicts.append(Verdict("could not judge", [f"{metric}: no group large enough (min n {report.min_n})"],
                                    control))
            continue
        worse = judged[judged["verdict"] == "worse"]
        unshown = judged[judged["verdict"].isin(["not shown", "undefined"])]
        reasons = []
        for r in pd.concat([worse, unshown]).itertuples():
            near = (r.improvement_lower_mc_lo <= -r.margin <= r.improvement_lower_mc_hi
                    if np.isfinite(r.improvement_lower) else False)
            said = "shown worse by more than" if r.verdict == "worse" else "not-worse not shown at"
            close = "; within Monte Carlo error of the margin: raise --n-boot" if near else ""
            why = getattr(r, "why_undefined", "") if r.verdict == "undefined" else ""  # the entry's reason
            reasons.append(
                f"{metric} at {r.group}: {r.candidate:.3f} vs {r.baseline:.3f}; {said} margin {r.margin:g} (adjusted "
                f"lower bound of the improvement {r.improvement_lower:+.3f}, {_mc(r, report.score_bounded(metric))}{close})"
                + (f"; undefined: {why}" if why else ""))
        if len(worse):
            verdicts.append(Verdict("fail", reasons, control))
        elif len(unshown):
            verdicts.append(Verdict("not shown", reasons, control))
        else:
            lowest = judged.loc[judged["improvement_lower"].idxmin()]
            verdicts.append(Verdict("pass", [
                f"{metric}: not worse by more than {float(lowest['margin']):g} in any of {len(judged)} group(s) "
                f"(lowest adjusted bound {lowest['improvement_lower']:+.3f} at {lowest['group']}, "
                f"{_mc(lowest, report.score_bounded(metric))})"], control))
    return combine_verdicts(verdicts, control)


def _mc(row, score: bool) -> str:
    """A bound's Monte Carlo interval in words; a score bound (no resampling in it) says so."""
    lo, hi = (row["improvement_lower_mc_lo"], row["improvement_lower_mc_hi"]) if isinstance(row, pd.Series) else \
        (row.improvement_lower_mc_lo, row.improvement_lower_mc_hi)
    if score and np.isfinite(lo):
        return "Tango's score bound, no Monte Carlo error"
    return f"Monte Carlo interval {lo:+.3f} to {hi:+.3f}"


def comparable(base, cand) -> None:
    """Versions compared on one cohort must predict the same classes from the same kind of input (two
    ``ModelHandle`` records); else an :class:`InvalidInputError` naming both."""
    if base.class_names != cand.class_names:
        raise InvalidInputError(f"{base.label} predicts {list(base.class_names)} and {cand.label} "
                                f"{list(cand.class_names)}: versions compared must share their classes")
    a, b = base.preprocessing, cand.preprocessing
    if len(a.spatial_size) != len(b.spatial_size) or \
            (a.in_channels, a.channels) != (b.in_channels, b.channels):
        raise InvalidInputError(f"{base.label} takes {a.describe()} and {cand.label} {b.describe()}: versions "
                                "compared must take the same kind of input")


def comparison_cases(frame: pd.DataFrame, where: dict[str, str] | None, cohort: str = "the cohort") -> pd.DataFrame:
    """The cases a comparison is judged on: the labelled rows of a cohort's frame whose attributes match ``where``
    (attribute → value, compared as text); none is an :class:`InvalidInputError` naming the cohort and the filter."""
    selected = frame[frame["label"].notna()]
    for name, value in (where or {}).items():
        selected = selected[selected[name].astype(str) == str(value)]
    if selected.empty:
        raise InvalidInputError(f"no labelled case of {cohort!r} matches {where}")
    return selected


def compare_versions(cases: pd.DataFrame, base: PredictionTable, cand: PredictionTable, n_classes: int, *,
                     by: Sequence[str] = (), baseline: str = "baseline", candidate: str = "candidate",
                     class_index: int | None = None, thresholds: tuple[float, float] | None = None,
                     margins: dict[str, float] | None = None, n_boot: int = N_BOOT, seed: int = 0,
                     min_n: int = 30) -> tuple[ComparisonReport, pd.DataFrame, dict[str, float]]:
    """``(paired report, per-case changes, their summary)`` of ``cand`` against ``base`` (prediction tables) on
    ``cases`` (:func:`comparison_cases`). One class one-vs-rest (``class_index``) is judged at each version's own
    threshold (``thresholds``: the versions' operating points); without one, each case by its top class."""
    frame, b, c = comparison_frame(cases, base, cand, n_classes)
    cut = thresholds or (0.5, 0.5)
    report = paired_comparison(frame, b, c, list(by), baseline=baseline, candidate=candidate,
                               class_index=class_index, thresholds=cut, margins=margins, n_boot=n_boot, seed=seed,
                               min_n=min_n)
    changes = flips(frame, b, c, class_index=class_index, thresholds=cut)
    return report, changes, flip_summary(changes)


__all__ += ["comparable", "comparison_cases", "compare_versions"]
