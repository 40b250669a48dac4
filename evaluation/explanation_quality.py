"""Which explanation method can be trusted for this model? Per method and check, the mean over a sample of cases
with a bootstrap interval (patients resampled where known), the share of cases that pass, and the band of the mean;
per group, how well the maps localise the finding; and the verdict in words.

The sample is stratified by group and outcome (:func:`stratified_sample`), so a cohort where most cases are easy
negatives does not hide how the maps behave on the positives and the errors.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_adapters.records import CLUSTER
from evaluation.metrics import bootstrap_weights, cluster_weights
from explainers.trust import TRUST_CHECKS, band

__all__ = ["stratified_sample", "quality_summary", "localisation_by_group", "in_words"]


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
    w = (cluster_weights(clusters[ok], n_boot, rng) if clusters is not None
         else bootstrap_weights(np.zeros(len(values), int), n_boot, rng))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ values) / w.sum(axis=1)
    means = means[np.isfinite(means)]
    return tuple(np.quantile(means, [0.025, 0.975])) if len(means) else (np.nan, np.nan)


def quality_summary(checks: pd.DataFrame, frame: pd.DataFrame | None = None, *, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """``checks``: per case, method and check (``Workspace.trust``, with a ``model`` column where several); one row
    per model, method and check: mean with 95% interval, share passing, cases judged, the band of the mean
    (localisation judged against the mean chance)."""
    keys = [k for k in ("model", "method", "check") if k in checks]
    clusters = None
    if frame is not None and CLUSTER in frame:
        clusters = frame.set_index("case_id")[CLUSTER]
    rows = []
    for key, sub in checks.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        check = TRUST_CHECKS.get(dict(zip(keys, key))["check"])
        values = sub["value"].to_numpy(float)
        c = clusters.loc[sub["case_id"]].to_numpy() if clusters is not None else None
        lo, hi = _mean_interval(values, c, n_boot, seed)
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        chance = float(np.nanmean(sub["chance"].astype(float))) if check.needs_mask else np.nan
        judged = sub[sub["band"] != "n/a"]
        rows.append({**dict(zip(keys, key)), "mean": mean, "lo": lo, "hi": hi,
                     "chance": chance, "passing": float((judged["band"] == "passes").mean()) if len(judged) else np.nan,
                     "cases": len(judged), "band": band(check, mean, chance) if check.name != "pointing_game"
                     else band_pointing(mean, chance)})
    return pd.DataFrame(rows)


def band_pointing(hit_rate: float, chance: float | None) -> str:
    """The pointing game over cases: its hit rate against chance (the mask's share), like the other localisation
    checks."""
    return band(TRUST_CHECKS.get("relevance_mass"), hit_rate, chance)


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
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "cases": int(np.isfinite(values).sum()),
                     "mean": mean, "lo": lo, "hi": hi, "times_chance": mean / chance if chance else np.nan})
    return pd.DataFrame(rows)


def in_words(summary: pd.DataFrame) -> list[str]:
    """One sentence per model and method: which checks its maps pass and fail, on average."""
    lines = []
    keys = [k for k in ("model", "method") if k in summary]
    for key, sub in summary.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        title = " ".join(str(k) for k in key)
        passed = [TRUST_CHECKS.get(c).title.lower() for c in sub.loc[sub["band"] == "passes", "check"]]
        failed = [TRUST_CHECKS.get(c).title.lower() for c in sub.loc[sub["band"] == "fails", "check"]]
        concern = [TRUST_CHECKS.get(c).title.lower() for c in sub.loc[sub["band"] == "concern", "check"]]
        verdict = ("trustworthy on every check run" if not failed and not concern else
                   "not to be trusted alone" if failed else "usable with care")
        parts = [f"**{title}**: {verdict}"]
        if passed:
            parts.append(f"passes {', '.join(passed)}")
        if concern:
            parts.append(f"a concern on {', '.join(concern)}")
        if failed:
            parts.append(f"fails {', '.join(failed)}")
        lines.append("; ".join(parts) + ".")
    return lines
