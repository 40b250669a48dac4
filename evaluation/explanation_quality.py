"""Which explanation method can be trusted for this model? Per method and check, the mean over a sample of cases
with a bootstrap interval (patients resampled where known), the share of cases that pass, and the band of the mean;
per group, how well the maps localise the finding; and the verdict in words.

The sample is stratified by group and outcome (:func:`stratified_sample`), so a cohort where most cases are easy
negatives does not hide how the maps behave on the positives and the errors.

A check whose value is undefined for a case (a map that vanished or is constant, no finding to point at; the
reason is on the check's registry entry) leaves that case unjudged. Over cases: *could not judge*, with the reason,
when no case or fewer than :data:`MIN_JUDGED_SHARE` of those it applies to could be judged; never a pass. The
pointing game over cases is a hit rate with a 95% Wilson interval (design-effect adjusted where patients have several
images, ``evaluation.inference.wilson_clustered``), read against chance and against the clinical reference on its
entry (``explainers.trust.POINTING_REFERENCE``): passes when the lower bound is within the entry's margin of the
reference and the rate ≥ 3× chance; fails when the upper bound is below reference − margin or the rate ≤ 1.5×
chance (each designed as a one-sided 2.5% error at the boundary; measured at most 5% in
``benchmarks/calibration/trust.py``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER
from evaluation.inference import case_weights, cluster_weights, percentile_interval, wilson, wilson_clustered
from evaluation.outcomes import with_outcomes
from explainers.trust import COULD_NOT_JUDGE, TRUST_CHECKS, UNDEFINED, TrustCheck, band

__all__ = ["stratified_sample", "quality_summary", "localisation_by_group", "in_words", "judge_check",
           "band_pointing", "MIN_JUDGED_SHARE"]

#: a check over cases is judged only when at least this share of the cases it applies to has a defined value
MIN_JUDGED_SHARE = 0.5


def stratified_sample(frame: pd.DataFrame, n: int, strata: Sequence[str], seed: int = 0) -> list[str]:
    """Up to ``n`` case ids drawn evenly across the combinations of ``strata`` (e.g. site and outcome), seeded; a
    stratum with fewer cases gives all it has and the rest is shared among the others."""
    rng = np.random.default_rng(seed)
    strata = [s for s in strata if s in frame]
    groups = [sub for _, sub in frame.groupby(strata, observed=True, sort=True)] if strata else [frame]
    shuffled = [sub.iloc[rng.permutation(len(sub))]["case_id"].tolist() for sub in groups]
    chosen: list[str] = []
    while len(chosen) < min(n, len(frame)):
        for ids in shuffled:
            if ids and len(chosen) < n:
                chosen.append(ids.pop(0))
    return chosen


def _mean_interval(values: np.ndarray, clusters: np.ndarray | None, n_boot: int, seed: int) -> tuple[float, float]:
    ok = np.isfinite(values)
    values = values[ok]
    if not len(values):
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    w = cluster_weights(clusters[ok], n_boot, rng) if clusters is not None else case_weights(len(values), n_boot, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ values) / w.sum(axis=1)
    return percentile_interval(means)


def band_pointing(hit_rate: float, lo: float, hi: float, chance: float | None,
                  check: TrustCheck | None = None) -> tuple[str, str]:
    """The pointing game over cases: ``(band, reason)`` from the hit rate and its 95% interval ``[lo, hi]``, against
    chance (the mean share of the image the finding covers) and the entry's clinical reference."""
    check = check or TRUST_CHECKS.get("pointing_game")
    if not np.isfinite(hit_rate):
        return COULD_NOT_JUDGE, check.undefined
    shown = f"hit rate {hit_rate:.3f} [{lo:.3f}, {hi:.3f}]"
    times = hit_rate / chance if chance and np.isfinite(chance) and chance > 0 else np.nan
    bar = check.reference - check.reference_margin if check.reference is not None else None
    ref = (f"{bar:.3f} (the clinical reference {check.reference:.3f}, radiologists in Saporta et al. 2022, less a "
           f"margin of {check.reference_margin:g})" if bar is not None else "")
    if np.isfinite(times) and times <= check.chance_fails:
        return "fails", f"{shown} is no better than chance ({times:.1f}x the finding's share of the image)"
    if bar is not None and hi < bar:
        return "fails", f"{shown}: shown below {ref}"
    if (bar is None or lo >= bar) and np.isfinite(times) and times >= check.chance_passes:
        return "passes", f"{shown}: {times:.0f}x chance" + (f" and not shown below {ref}" if bar is not None else "")
    return "concern", f"{shown}: neither shown to reach {ref or 'the band'} nor shown below it (too few findings)"


def judge_check(check: TrustCheck, sub: pd.DataFrame, clusters: np.ndarray | None, *, n_boot: int = 1000,
                seed: int = 0) -> dict:
    """One check over the cases in ``sub`` (``value``, ``chance``, ``band``, ``problem`` per case): the mean (the hit
    rate for the pointing game) with its interval, cases judged of those the check applies to, the band over cases
    and the reason in words."""
    values = sub["value"].to_numpy(float)
    chances = sub["chance"].astype(float).to_numpy() if "chance" in sub else np.full(len(sub), np.nan)
    applies = np.isfinite(chances) if check.needs_mask else np.ones(len(sub), bool)
    judged = np.isfinite(values) & applies
    n_applies, n_judged = int(applies.sum()), int(judged.sum())
    problems = sub["problem"].fillna("").astype(str).to_numpy() if "problem" in sub else np.full(len(sub), "")
    mapless = int(((problems != "") & applies).sum())
    why = []
    if mapless:
        kinds = ", ".join(sorted(set(problems[(problems != "") & applies])))
        why.append(f"in {mapless} of {n_applies} the map itself is {kinds}")
    if n_applies - n_judged - mapless > 0:
        why.append(f"in {n_applies - n_judged - mapless} of {n_applies} {check.undefined}")
    chance = float(np.nanmean(chances[judged])) if check.needs_mask and n_judged else np.nan
    row = {"mean": np.nan, "lo": np.nan, "hi": np.nan, "chance": chance, "reference": check.reference,
           "passing": np.nan, "cases": n_judged, "of": n_applies}
    if n_applies == 0:
        return {**row, "band": COULD_NOT_JUDGE, "reason": f"no case to judge: {check.undefined}"}
    if n_judged == 0 or n_judged < MIN_JUDGED_SHARE * n_applies:
        head = f"none of the {n_applies} cases could be judged" if n_judged == 0 else \
            f"only {n_judged} of {n_applies} cases could be judged (at least {MIN_JUDGED_SHARE:.0%} needed)"
        return {**row, "band": COULD_NOT_JUDGE, "reason": f"{head}: " + "; ".join(why)}
    v = values[judged]
    c = clusters[judged] if clusters is not None else np.arange(n_judged)
    per_case = sub["band"].to_numpy()[judged]
    row["passing"] = float(np.mean(per_case == "passes"))
    note = f" ({n_applies - n_judged} of {n_applies} cases not judged: " + "; ".join(why) + ")" if why else ""
    if check.name == "pointing_game":
        # one finding per case: plain Wilson; several images of a patient: at the design-effect-adjusted n
        lo, hi = wilson_clustered(v, c) if clusters is not None else wilson(float(v.sum()), len(v))
        b, reason = band_pointing(float(v.mean()), lo, hi, chance, check)
        return {**row, "mean": float(v.mean()), "lo": lo, "hi": hi, "band": b, "reason": reason + note}
    lo, hi = _mean_interval(v, c if clusters is not None else None, n_boot, seed)
    mean = float(v.mean())
    b = band(check, mean, chance if check.relative_to_chance else None)
    if b == UNDEFINED:
        return {**row, "mean": mean, "lo": lo, "hi": hi, "band": COULD_NOT_JUDGE, "reason": check.undefined}
    shown = f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" + (f", {mean / chance:.1f}x chance" if check.relative_to_chance
                                                   and chance > 0 else "")
    return {**row, "mean": mean, "lo": lo, "hi": hi, "band": b, "reason": f"{shown} ({check.band_source})" + note}


def quality_summary(checks: pd.DataFrame, frame: pd.DataFrame | None = None, *, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """``checks``: per case, method and check (``workspace.trust.trust``, with a ``model`` column where several); one row
    per model, method and check: mean with 95% interval (the hit rate and its Wilson interval for the pointing
    game), share of judged cases passing, cases judged (``cases``) of those the check applies to (``of``), chance and
    clinical reference where they apply, the band over cases (``passes`` / ``concern`` / ``fails`` /
    ``could not judge``) and its reason."""
    keys = [k for k in ("model", "method", "check") if k in checks]
    clusters = None
    if frame is not None and CLUSTER in frame:
        clusters = frame.set_index("case_id")[CLUSTER]
    rows = []
    for key, sub in checks.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        check = TRUST_CHECKS.get(dict(zip(keys, key))["check"])
        c = clusters.loc[sub["case_id"]].to_numpy() if clusters is not None else None
        rows.append({**dict(zip(keys, key)), **judge_check(check, sub, c, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)


def localisation_by_group(checks: pd.DataFrame, frame: pd.DataFrame, by: str, check: str = "relevance_mass",
                          *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Does the map find the finding equally well for every group? Mean of a localisation check per method and
    group, with its interval, as a multiple of chance."""
    merged = checks[checks["check"] == check].merge(frame[["case_id", by, *([CLUSTER] if CLUSTER in frame else [])]],
                                                    on="case_id")
    rows = []
    keys = [k for k in ("model", "method") if k in merged] + [by]
    for key, sub in merged.groupby(keys, sort=True, observed=True):
        values = sub["value"].to_numpy(float)
        lo, hi = _mean_interval(values, sub[CLUSTER].to_numpy() if CLUSTER in sub else None, n_boot, seed)
        chance = float(np.nanmean(sub["chance"].astype(float)))
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "cases": int(np.isfinite(values).sum()),
                     "mean": mean, "lo": lo, "hi": hi, "times_chance": mean / chance if chance else np.nan})
    return pd.DataFrame(rows)


def in_words(summary: pd.DataFrame) -> list[str]:
    """One sentence per model and method: which checks its maps pass and fail, on average, and which could not be
    judged and why (a check that could not be judged never counts as passed)."""
    lines = []
    keys = [k for k in ("model", "method") if k in summary]
    for key, sub in summary.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        title = " ".join(str(k) for k in key)

        def named(which: str) -> list[str]:
            return [TRUST_CHECKS.get(c).title.lower() for c in sub.loc[sub["band"] == which, "check"]]

        passed, failed, concern = named("passes"), named("fails"), named("concern")
        unjudged = [f"{TRUST_CHECKS.get(r.check).title.lower()} ({r.reason})"
                    for r in sub[sub["band"] == COULD_NOT_JUDGE].itertuples()]
        verdict = ("not to be trusted alone" if failed else "usable with care" if concern else
                   "could not be judged" if not passed else
                   "passes every check that could be judged" if unjudged else "trustworthy on every check run")
        parts = [f"**{title}**: {verdict}"]
        if passed:
            parts.append(f"passes {', '.join(passed)}")
        if concern:
            parts.append(f"a concern on {', '.join(concern)}")
        if failed:
            parts.append(f"fails {', '.join(failed)}")
        if unjudged:
            parts.append(f"{COULD_NOT_JUDGE} {', '.join(unjudged)}")
        lines.append("; ".join(parts) + ".")
    return lines


def quality_sample(frame: pd.DataFrame, n_cases: int, strata: Sequence[str], *, n_classes: int,
                   class_index: int | None, threshold: float | Callable[[], float] | None = None, seed: int = 0,
                   cohort: str = "the cohort") -> tuple[pd.DataFrame, pd.Series]:
    """The cases whose explanations are checked and the class each is explained for: ``(sample, target per case
    id)``. ``frame``: the cohort's frame joined to the model's predictions; of its labelled cases, ``n_cases`` are
    drawn stratified by ``strata`` and outcome (:func:`stratified_sample`). ``class_index`` None (a top-class model):
    each case's top class is explained and judged against the label; else that class, judged at ``threshold`` (or
    what calling it returns: an operating point fitted only once the cohort is known to hold labelled cases)."""
    frame = frame[frame["label"].notna()]
    if frame.empty:
        raise InvalidInputError(f"cohort {cohort!r} has no labelled cases to sample")
    if class_index is None:
        judged = with_outcomes(frame, None, n_classes=n_classes)
        targets = judged.set_index("case_id")["predicted"].astype(int)
    else:
        judged = with_outcomes(frame, class_index, threshold() if callable(threshold) else threshold)
        targets = pd.Series(class_index, index=judged["case_id"])
    chosen = stratified_sample(judged, n_cases, [*strata, "outcome"], seed)
    return judged.set_index("case_id").loc[chosen].reset_index(), targets.loc[chosen]


__all__ += ["quality_sample"]
