"""Subgroup performance with honest intervals: fairlearn's MetricFrame for the estimates, a vectorised
stratified bootstrap for 95% intervals, and between-group gaps with their own intervals.

The bootstrap resamples each group's positives and negatives separately (their counts stay fixed) and
evaluates every replicate at once as weighted counts (see ``evaluation.metrics``); no per-replicate loop.

A gap is reported for the best and worst group, a pair chosen *after* looking at the estimates; an interval
built for that pair alone flags far too often when there are many groups (with 10 equal groups, in 46 of 60
simulations). Gap intervals are therefore simultaneous over every pair of comparable groups: the bootstrap
distribution of the largest standardised pairwise deviation (max-t; Romano & Wolf 2005) gives the critical
value, so the chance of flagging any gap when all groups are equal stays at or below the nominal 5% (0 of 60
simulations; ``tests/test_subgroups.py``).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from scipy.stats import norm
from sklearn.metrics import roc_curve

from data_adapters.errors import InvalidInputError
from data_adapters.records import CLUSTER
from evaluation.metrics import (
    CELL_BOOTSTRAP_FROM,
    METRICS,
    Cells,
    cluster_cell_weights,
    WHY_UNDEFINED,
    bootstrap_weights,
    cluster_weights,
    counts,
    false_positive_rate,
    selection_rate,
    sensitivity,
)
from evaluation.inference import wilson  # noqa: F401 (its old home: importers keep working)
from evaluation.suppression import suppression

__all__ = ["SubgroupReport", "subgroup_report", "choose_threshold", "board_view", "labelled_frame", "MISSING",
           "gap_row", "replicate_weights", "resampling", "GapJudgement"]

MISSING = "(missing)"
MSG_NO_LABELS = "no labelled cases for class {k}: subgroup performance needs labels"
MSG_RULE = "threshold rule {rule!r} is not 'youden' or 'sensitivity=<0..1>' / 'specificity=<0..1>'"


def choose_threshold(y: np.ndarray, p: np.ndarray, rule: str = "youden") -> float:
    """An operating threshold by a stated rule: ``youden`` (max sensitivity + specificity - 1), or the
    highest threshold reaching ``sensitivity=0.9`` (or the lowest reaching ``specificity=0.9``)."""
    y = np.asarray(y, bool)
    if y.all() or (~y).all():
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.clip(thr, 0.0, 1.0)
    if rule == "youden":
        return float(thr[np.argmax(tpr - fpr)])
    name, _, value = rule.partition("=")
    try:
        target = float(value)
    except ValueError:
        raise InvalidInputError(MSG_RULE.format(rule=rule)) from None
    if name == "sensitivity":
        return float(thr[np.argmax(tpr >= target)])
    if name == "specificity":
        ok = np.nonzero(1 - fpr >= target)[0]
        return float(thr[ok[-1]])
    raise InvalidInputError(MSG_RULE.format(rule=rule))


def replicate_weights(frame: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    """Cluster-bootstrap weights ``(n_boot, len(frame))`` drawn once for the whole frame when it says which patient
    each image came from (column :data:`CLUSTER`), so every group's replicate resamples the same patients; None
    otherwise (each group is then resampled on its own, stratified by class)."""
    if CLUSTER not in frame or frame[CLUSTER].isna().any():
        return None
    return cluster_weights(frame[CLUSTER].to_numpy(), n_boot, rng)


def resampling(frame: pd.DataFrame, *, stratified: bool = True) -> str:
    """One line for a page or command: what the intervals resample."""
    if CLUSTER in frame and frame[CLUSTER].notna().all():
        return (f"cluster bootstrap: {frame[CLUSTER].nunique()} patients resampled, not the {len(frame)} images, "
                "which are not independent")
    kind = "stratified bootstrap of images" if stratified else "bootstrap of images"
    return f"{kind}; no patient key, so images are treated as independent"


def labelled_frame(cohort_frame: pd.DataFrame, predictions: pd.DataFrame, class_index: int) -> pd.DataFrame:
    """Cohort rows with labels, joined to predictions: adds ``y`` (label == class) and ``p`` (its probability)."""
    frame = cohort_frame.merge(predictions, on="case_id", how="inner")
    frame = frame[frame["label"].notna()].copy()
    if frame.empty:
        raise InvalidInputError(MSG_NO_LABELS.format(k=class_index))
    frame["y"] = (frame["label"] == class_index).to_numpy(dtype=bool)
    frame["p"] = frame[f"p_{class_index}"].astype(float)
    return frame


def _point(name: str, y_true, y_pred, p) -> float:
    return float(METRICS.get(name)(counts(np.ones((1, len(y_true))), np.asarray(y_true), np.asarray(p),
                                          np.asarray(y_pred)))[0])


class GapJudgement:
    """What a report with a ``gaps`` table (from :func:`gap_row`) says about them; ``size_rule`` says what made a group
    large enough to compare."""

    gaps: pd.DataFrame
    level: float

    @property
    def size_rule(self) -> str:
        raise NotImplementedError

    def flags(self) -> list[str]:
        return [f for f in self.gaps["flag"] if f]

    @property
    def comparable(self) -> bool:
        """Whether at least two groups were large enough to compare (otherwise no gap could be judged)."""
        return bool((self.gaps["groups_compared"] >= 2).any())

    def judgement(self) -> str:
        """One line for the page and the CLI: flags found, none found, or could not judge (never a false
        all-clear when nothing was compared)."""
        groups = int(self.gaps["groups"].max()) if len(self.gaps) else 0
        compared = int(self.gaps["groups_compared"].max()) if len(self.gaps) else 0
        if not self.comparable:
            return f"could not judge: {compared} of {groups} group(s) had {self.size_rule}; no gap was tested"
        flags = self.flags()
        if flags:
            return f"{len(flags)} gap(s) whose interval excludes zero, among {compared} comparable groups"
        return (f"no gap whose simultaneous {int(round(self.level * 100))}% interval excludes zero, among {compared} "
                f"of {groups} groups")


@dataclass(frozen=True)
class SubgroupReport(GapJudgement):
    """``table``: one row per group plus ``overall`` (n, events, prevalence, each metric with ``_lo``/``_hi``,
    ``small`` and ``notes``); ``gaps``: one row per metric and fairness difference."""

    by: tuple[str, ...]
    class_index: int
    threshold: float
    threshold_rule: str
    level: float
    n_boot: int
    min_n: int
    min_events: int
    table: pd.DataFrame
    gaps: pd.DataFrame

    @property
    def size_rule(self) -> str:
        return f"n≥{self.min_n} and ≥{self.min_events} cases of each class"


def subgroup_report(frame: pd.DataFrame, by: str | Sequence[str], *, class_index: int = 1,
                    threshold: float | None = None, rule: str = "youden", n_boot: int = 1000, level: float = 0.95,
                    seed: int = 0, min_n: int = 30, min_events: int = 5) -> SubgroupReport:
    """``frame`` from :func:`labelled_frame` (columns ``y``, ``p`` and the attributes in ``by``)."""
    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in frame.columns]
    if missing:
        raise InvalidInputError(f"unknown attribute(s) {missing}; available: "
                                f"{[c for c in frame.columns if c not in ('case_id', 'y', 'p', 'label')]}")
    if n_boot < 1:
        raise InvalidInputError(f"n_boot must be at least 1, got {n_boot}")
    frame = frame.reset_index(drop=True)
    for b in by:
        frame[b] = frame[b].astype("string").fillna(MISSING)
    y, p = frame["y"].to_numpy(bool), frame["p"].to_numpy(float)
    if threshold is None:
        threshold = choose_threshold(y, p, rule)
    else:
        rule = "set by user"
    called = p >= threshold
    frame["called"] = called
    alpha = (1 - level) / 2
    z = float(norm.ppf(1 - alpha))

    if len(frame) < CELL_BOOTSTRAP_FROM:
        mf = MetricFrame(metrics={m: partial(_point, m) for m in METRICS.names()}, y_true=y, y_pred=called,
                         sensitive_features=frame[by], sample_params={m: {"p": p} for m in METRICS.names()})
        by_group = mf.by_group
    else:  # the same weighted counts MetricFrame would call per metric, computed once per group
        mf = by_group = None
    rng = np.random.default_rng(seed)
    large = len(frame) >= CELL_BOOTSTRAP_FROM  # resample sufficient statistics, not a (resamples × cases) matrix
    clustered = CLUSTER in frame and frame[CLUSTER].notna().all()
    shared = replicate_weights(frame, n_boot, rng) if not large else None
    rows, reps = [], {}
    groups = [("overall", frame)] + [
        (" · ".join(map(str, key if isinstance(key, tuple) else (key,))), sub)
        for key, sub in frame.groupby(by if len(by) > 1 else by[0], sort=True, observed=True)]
    cells = {}
    if large:
        cells = {name: Cells.of(sub["y"].to_numpy(bool), sub["p"].to_numpy(float), sub["called"].to_numpy(bool),
                                threshold) for name, sub in groups}
        if clustered:
            drawn = cluster_cell_weights(frame[CLUSTER].to_numpy(), [(sub.index.to_numpy(), cells[name])
                                                                     for name, sub in groups], n_boot, rng)
            cell_weights = dict(zip([name for name, _ in groups], drawn))
    for name, sub in groups:
        if large:
            ys, ps, cs = sub["y"].to_numpy(bool), sub["p"].to_numpy(float), sub["called"].to_numpy(bool)
            point_counts = counts(np.ones((1, len(ys))), ys, ps, cs)
            cell = cells[name]
            boot = cell.counts(cell_weights[name] if clustered else cell.resample(n_boot, rng))
        else:
            sub = sub.sort_values("p", kind="stable")  # sorted once: the AUROC replicates need no gather
            ys, ps, cs = sub["y"].to_numpy(bool), sub["p"].to_numpy(float), sub["called"].to_numpy(bool)
            point_counts = counts(np.ones((1, len(ys))), ys, ps, cs)
            weights = shared[:, sub.index.to_numpy()] if shared is not None else bootstrap_weights(ys, n_boot, rng)
            boot = counts(weights, ys, ps, cs)
        events = int(ys.sum())
        lo_p, hi_p = wilson(events, len(ys), z)
        row = {"group": name, "n": len(ys), **({"patients": int(sub[CLUSTER].nunique())} if shared is not None
                                               else {}),
               "events": events, "prevalence": events / len(ys),
               "prevalence_lo": lo_p, "prevalence_hi": hi_p}
        notes = []
        reps[name] = {}
        for m in METRICS.names():
            if mf is None:
                value = float(METRICS.get(m)(point_counts)[0])
            elif name == "overall":
                value = float(mf.overall[m])
            else:
                key = tuple(sub.iloc[0][b] for b in by)
                value = float(by_group.loc[key if len(by) > 1 else key[0], m])
            values = METRICS.get(m)(boot)
            reps[name][m] = values
            why = WHY_UNDEFINED[m](point_counts)
            if why:
                notes.append(f"{m}: {why}")
                value = np.nan
            ok = values[np.isfinite(values)]
            lo, hi = (np.quantile(ok, [alpha, 1 - alpha]) if len(ok) and not why else (np.nan, np.nan))
            row.update({m: value, f"{m}_lo": lo, f"{m}_hi": hi})
        reps[name]["_tpr"] = sensitivity(boot)
        reps[name]["_fpr"] = false_positive_rate(boot)
        reps[name]["_selection"] = selection_rate(boot)
        row["_tpr"] = float(sensitivity(point_counts)[0])
        row["_fpr"] = float(false_positive_rate(point_counts)[0])
        row["_selection"] = float(selection_rate(point_counts)[0])
        small = len(ys) < min_n or min(events, len(ys) - events) < min_events
        row["small"] = small
        if large:
            notes.append(f"intervals from class × score-bin counts ({len(cells[name].count)} cells; AUROC binning "
                         f"error ≤ {cells[name].auroc_error:.4f})")
        if small:
            notes.insert(0, f"too small to judge (n={len(ys)}, events={events}; needs n≥{min_n} and ≥{min_events} "
                            "of each class)")
        row["notes"] = "; ".join(notes)
        rows.append(row)
    table = pd.DataFrame(rows)
    gaps = _gaps(table, reps, alpha)
    hidden = ["_tpr", "_fpr", "_selection"]
    return SubgroupReport(by=tuple(by), class_index=class_index, threshold=float(threshold), threshold_rule=rule,
                          level=level, n_boot=n_boot, min_n=min_n, min_events=min_events,
                          table=table.drop(columns=hidden), gaps=gaps)


def _simultaneous_critical(reps, groups: list[str], column: str, level: float) -> tuple[float, dict]:
    """The max-t critical value over every pair of ``groups``, and each pair's bootstrap standard error of the
    difference (from the replicate-wise differences: right whether the groups were resampled independently or
    share patients under a cluster bootstrap)."""
    values = np.stack([reps[g][column] for g in groups])  # (G, B)
    centre = np.nanmean(values, axis=1, keepdims=True)
    i, j = np.triu_indices(len(groups), k=1)
    differences = values[i] - values[j]
    pair_se = np.nanstd(differences, axis=1)
    deviation = np.abs(differences - (centre[i] - centre[j]))  # (pairs, B)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(pair_se[:, None] > 0, deviation / pair_se[:, None], 0.0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where every pair is undefined: dropped below
        t_max = np.nanmax(t, axis=0) if len(t) else np.array([])
    t_max = t_max[np.isfinite(t_max)]
    critical = float(np.quantile(t_max, level)) if len(t_max) else np.nan
    se = {frozenset((groups[a], groups[b])): float(v) for a, b, v in zip(i, j, pair_se)}
    return critical, se


def gap_row(metric: str, table: pd.DataFrame, reps, column: str, alpha: float) -> dict:
    """The gap between the best and worst comparable group in ``column`` of ``table`` with its interval,
    simultaneous over every pair of comparable groups (max-t), from the bootstrap replicates ``reps``
    (group → column → ``(B,)`` array)."""
    eligible = table[(table["group"] != "overall") & ~table["small"] & table[column].notna()]
    n_groups = int((table["group"] != "overall").sum())
    if len(eligible) < 2:
        return {"metric": metric, "higher_group": None, "lower_group": None, "difference": np.nan,
                "difference_lo": np.nan, "difference_hi": np.nan, "ratio": np.nan, "ratio_lo": np.nan,
                "ratio_hi": np.nan, "flag": "", "groups_compared": len(eligible), "groups": n_groups, "pairs": 0,
                "note": f"could not judge: {len(eligible)} of {n_groups} group(s) large enough to compare"}
    hi_g = eligible.loc[eligible[column].idxmax(), "group"]
    lo_g = eligible.loc[eligible[column].idxmin(), "group"]
    groups = eligible["group"].tolist()
    critical, se = _simultaneous_critical(reps, groups, column, 1 - 2 * alpha)
    a, b = reps[hi_g][column], reps[lo_g][column]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(a > 0, b / a, np.nan)
    r_ok = ratio[np.isfinite(ratio)]
    r_lo, r_hi = np.quantile(r_ok, [alpha, 1 - alpha]) if len(r_ok) else (np.nan, np.nan)
    point_hi = float(table.set_index("group").loc[hi_g, column])
    point_lo = float(table.set_index("group").loc[lo_g, column])
    diff = point_hi - point_lo
    half = critical * se.get(frozenset((hi_g, lo_g)), 0.0) if hi_g != lo_g else 0.0
    d_lo, d_hi = diff - half, diff + half
    pairs = len(groups) * (len(groups) - 1) // 2
    flag = ""
    if d_lo > 0:
        flag = (f"{metric.replace('_', ' ')}: {hi_g} {point_hi:.3f} vs {lo_g} {point_lo:.3f}, a gap of "
                f"{diff:.3f} whose {int(round((1 - 2 * alpha) * 100))}% interval ({d_lo:.3f} to {d_hi:.3f}, "
                f"simultaneous over {pairs} pair(s)) excludes zero")
    return {"metric": metric, "higher_group": hi_g, "lower_group": lo_g, "difference": diff,
            "difference_lo": d_lo, "difference_hi": d_hi, "ratio": point_lo / point_hi if point_hi else np.nan,
            "ratio_lo": r_lo, "ratio_hi": r_hi, "flag": flag, "groups_compared": len(eligible), "groups": n_groups,
            "pairs": pairs, "note": ""}


def _gaps(table: pd.DataFrame, reps, alpha: float) -> pd.DataFrame:
    rows = [gap_row(m, table, reps, m, alpha) for m in METRICS.names()]
    # equalized odds (Hardt et al., 2016): the larger of the TPR and FPR gaps, as fairlearn defines it
    tpr, fpr = gap_row("tpr", table, reps, "_tpr", alpha), gap_row("fpr", table, reps, "_fpr", alpha)
    eo = tpr if np.nan_to_num(tpr["difference"], nan=-1) >= np.nan_to_num(fpr["difference"], nan=-1) else fpr
    component = "TPR" if eo is tpr else "FPR"
    eo = {**eo, "metric": "equalized_odds_difference",
          "flag": eo["flag"].replace(eo["metric"], f"equalized odds ({component})", 1)}
    dp = gap_row("demographic_parity_difference", table, reps, "_selection", alpha)
    if dp["higher_group"] is not None:
        by_group = table.set_index("group")
        prevalence_gap = float(by_group.loc[dp["higher_group"], "prevalence"] - by_group.loc[dp["lower_group"],
                                                                                             "prevalence"])
        if dp["difference_lo"] <= prevalence_gap <= dp["difference_hi"]:
            dp["note"] = (f"within its interval of the groups' prevalence difference ({prevalence_gap:+.3f}): a "
                          "model right for everyone shows this gap; judge by equalized odds instead")
    return pd.DataFrame([*rows, eo, dp])


def board_view(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The table as an ethics board sees it: every figure of a group under ``k`` cases suppressed, and one more
    group where the total would give a hidden one away (:mod:`evaluation.suppression` decides for every view)."""
    return suppression(dict(zip(table["group"], table["n"])), k).table(table)