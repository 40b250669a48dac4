"""Subgroup performance with honest intervals: fairlearn's MetricFrame for the estimates, a vectorised bootstrap
for 95% intervals, and between-group gaps with intervals simultaneous over everything the report judges.

**Resampling** (stated per metric on its registry entry, ``evaluation.metrics.METRICS``): each group's cases are
resampled to the group's size with the class mix varying, as it varies between samples (patients across the whole
cohort where the cohort says which patient each image came from; Poisson cells for very large groups). Holding a
group's class counts fixed, as this module did before, leaves the prevalence variation out of PPV, NPV, selection
rate and ECE: on five equal groups that design flagged a gap in about half of all cohorts
(``benchmarks/calibration/subgroups.py``; still available as ``design="fixed class counts"``).

**Gaps.** A gap is reported for the best and worst group, a pair chosen *after* looking at the estimates, for every
metric and the fairness differences. All of them are judged together: one max-t (Romano & Wolf 2005) over every
metric × every pair of comparable groups gives one critical value, so the chance that *any* gap is flagged when
every group is equal stays at or below 5% (the calibration suite measures it: ``tests/calibration/test_calibration_subgroups.py``
quick, the benchmark in full). Each report says so in words (:attr:`GapJudgement.error_control`).

**Small groups** get their estimate but no interval ("too small to judge"), never a zero-width one; a proportion
whose every resample agrees gets Wilson's interval. ECE is shown beside what a perfectly calibrated model would read
at that n (``ece_chance``). A release gate (:meth:`GapJudgement.gate`) passes only a gap *shown* within its limit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from scipy.stats import norm
from sklearn.metrics import roc_curve

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER, LABEL, OUTCOME, SCORE, PredictionTable, probability_column
from evaluation.metrics import (
    CELL_BOOTSTRAP_FROM,
    ONE_VS_REST,
    Cells,
    cluster_cell_weights,
    bootstrap_weights,
    entries,
    cluster_weights,
    counts,
    false_positive_rate,
    metric,
    selection_rate,
    sensitivity,
)
from evaluation.calibration import ece_expected_by_chance, miscalibration_holm, miscalibration_test
from evaluation.inference import (
    Verdict,
    case_weights,
    combine_verdicts,
    max_t,
    percentile_interval,
    wilson,  # its old home: importers keep working
    wilson_clustered,
)
from evaluation.suppression import suppression

__all__ = ["SubgroupReport", "subgroup_report", "choose_threshold", "board_view", "labelled_frame", "MISSING",
           "gap_row", "gap_rows", "replicate_weights", "resampling", "GapJudgement", "gap_gate", "family_text",
           "N_BOOT", "SUBGROUP_DESIGNS", "wilson"]

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
    if not 0 < target <= 1:  # sensitivity=2 would otherwise pick the curve's first threshold, silently
        raise InvalidInputError(MSG_RULE.format(rule=rule) + f": the target must lie in (0, 1], got {value!r}")
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
    kind = ("bootstrap of images stratified by class (class counts fixed)" if stratified else
            "bootstrap of images within each group, the class mix varying")
    return f"{kind}; no patient key, so images are treated as independent"


def labelled_frame(cohort_frame: pd.DataFrame, predictions: PredictionTable, class_index: int) -> pd.DataFrame:
    """Cohort rows with labels, joined to predictions: adds ``y`` (:data:`~data_adapters.tables.OUTCOME`: label ==
    class) and ``p`` (:data:`~data_adapters.tables.SCORE`: its probability)."""
    frame = cohort_frame.merge(predictions.frame, on="case_id", how="inner")
    frame = frame[frame[LABEL].notna()].copy()
    if frame.empty:
        raise InvalidInputError(MSG_NO_LABELS.format(k=class_index))
    frame[OUTCOME] = (frame[LABEL] == class_index).to_numpy(dtype=bool)
    frame[SCORE] = frame[probability_column(class_index)].astype(float)
    return frame


def _point(name: str, y_true, y_pred, p) -> float:
    return float(metric(name, ONE_VS_REST)(counts(np.ones((1, len(y_true))), np.asarray(y_true), np.asarray(p),
                                          np.asarray(y_pred)))[0])


#: default resamples: at 2,000 the 95% max-t critical value's Monte Carlo interval is about ±2%, stated with every
#: gate (``gap_upper_mc_lo``/``_hi``) so a verdict that could move with the seed says so
N_BOOT = 2000
#: the subgroup resampling designs (:data:`evaluation.inference.DESIGNS`); the second is the old one, kept so the
#: calibration suite can show what it did wrong
SUBGROUP_DESIGNS = ("cases within group", "fixed class counts")
#: how the gap family is controlled: "all" one max-t over every metric × pair (the product), "per metric" each
#: metric on its own (the old way, for the calibration suite)
FAMILIES = ("all", "per metric")


class GapJudgement:
    """What a report with a ``gaps`` table (from :func:`gap_rows`) says about them; ``size_rule`` says what made a
    group large enough to compare."""

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

    @property
    def error_control(self) -> str:
        """Which error the gap judgements control, and over what family, in words."""
        return family_text(self.gaps, self.level)

    def judgement(self) -> str:
        """One line for the page and the CLI: flags found, none found, or could not judge (never a false
        all-clear when nothing was compared), with the error controlled."""
        groups = int(self.gaps["groups"].max()) if len(self.gaps) else 0
        compared = int(self.gaps["groups_compared"].max()) if len(self.gaps) else 0
        if not self.comparable:
            return f"could not judge: {compared} of {groups} group(s) had {self.size_rule}; no gap was tested"
        flags = self.flags()
        if flags:
            return (f"{len(flags)} gap(s) whose simultaneous interval excludes zero, among {compared} comparable "
                    f"groups ({self.error_control})")
        return (f"no gap whose simultaneous {int(round(self.level * 100))}% interval excludes zero, among {compared} "
                f"of {groups} groups ({self.error_control})")

    def gate(self, limits: dict[str, float]) -> Verdict:
        """A fairness release gate: each ``metric → limit`` passes only when the gap is *shown* within its limit (the
        simultaneous upper bound of the largest pairwise gap at most the limit); ``fail`` when it is shown to exceed
        it (some pair's simultaneous lower bound above the limit); ``not shown`` otherwise; ``could not judge``
        when fewer than two groups could be compared. Each reason states the bound's Monte Carlo interval."""
        return gap_gate(self.gaps, limits, self.level)


def family_text(gaps: pd.DataFrame, level: float) -> str:
    """"family-wise 5% over 9 metrics × 10 pairs of 5 groups (90 contrasts, one max-t)" for a gaps table."""
    if not len(gaps) or "contrasts" not in gaps or not (gaps["contrasts"] > 0).any():
        return f"family-wise {_pct(1 - level)} over no contrast (nothing compared)"
    measures = int(gaps["family_measures"].max())
    pairs, groups = int(gaps["pairs"].max()), int(gaps["groups_compared"].max())
    contrasts = int(gaps["contrasts"].max())
    per = (gaps["family"] == "per metric").any() if "family" in gaps else False
    if per:
        return f"{_pct(1 - level)} per metric over its {pairs} pairs (not adjusted across metrics)"
    return (f"family-wise {_pct(1 - level)} over {measures} metrics × {pairs} pairs of {groups} groups "
            f"({contrasts} contrasts, one max-t)")


def _pct(x: float) -> str:
    return f"{round(x * 100, 1):g}%"


def gap_gate(gaps: pd.DataFrame, limits: dict[str, float], level: float) -> Verdict:
    """:meth:`GapJudgement.gate` on a gaps table."""
    verdicts = []
    rows = gaps.set_index("metric")
    control = (f"passes only a gap shown within its limit: the simultaneous {_pct(level)} upper bound of the largest "
               f"pairwise gap ≤ the limit ({family_text(gaps, level)}), so a gap truly above its limit passes at most "
               f"{_pct(1 - level)} of the time")
    for metric, limit in limits.items():
        r = rows.loc[metric]
        mc = f"Monte Carlo interval of the bound {r['gap_upper_mc_lo']:.3f} to {r['gap_upper_mc_hi']:.3f}"
        if r["groups_compared"] < 2 or not np.isfinite(r["gap_upper"]):
            verdicts.append(Verdict("could not judge", [f"{metric}: {r['groups_compared']} of {r['groups']} group(s) "
                                                        "large enough to compare (needs 2)"], control))
            continue
        largest = (f"gap {r['difference']:.3f} ({r['higher_group']} vs {r['lower_group']}), simultaneous "
                   f"{_pct(level)} interval {r['difference_lo']:.3f} to {r['difference_hi']:.3f}")
        if r["gap_lower"] > limit:
            verdicts.append(Verdict("fail", [
                f"{metric} {largest}; {r['exceed_pair']} at least {r['gap_lower_pair']:.3f}, which lies above "
                f"{limit:g}: shown to exceed it"], control))
        elif r["gap_upper"] <= limit:
            close = "; within Monte Carlo error of the limit: raise --n-boot" if r["gap_upper_mc_hi"] > limit else ""
            verdicts.append(Verdict("pass", [
                f"{metric} gap interval does not lie above {limit:g} ({r['groups_compared']} groups compared): shown "
                f"within it, every pair's simultaneous upper bound ≤ {r['gap_upper']:.3f} ({mc}){close}"], control))
        else:
            close = "; within Monte Carlo error of the limit: raise --n-boot" if r["gap_upper_mc_lo"] <= limit else ""
            verdicts.append(Verdict("not shown", [
                f"{metric} {largest}: not shown within {limit:g} (simultaneous upper bound {r['gap_upper']:.3f}; "
                f"{mc}){close}"], control))
    return combine_verdicts(verdicts, control)


@dataclass(frozen=True)
class SubgroupReport(GapJudgement):
    """``table``: one row per group plus ``overall`` (n, events, prevalence, each metric with ``_lo``/``_hi``,
    ``ece_chance``, ``small`` and ``notes``); ``gaps``: one row per metric and fairness difference, with
    intervals simultaneous over the whole family (:func:`gap_rows`)."""

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
    design: str = "cases within group"
    resampling: str = ""

    @property
    def size_rule(self) -> str:
        return f"n≥{self.min_n} and ≥{self.min_events} cases of each class"


def subgroup_report(frame: pd.DataFrame, by: str | Sequence[str], *, class_index: int = 1,
                    threshold: float | None = None, rule: str = "youden", n_boot: int = N_BOOT, level: float = 0.95,
                    seed: int = 0, min_n: int = 30, min_events: int = 5, min_patients: int = 10,
                    design: str = "cases within group", family: str = "all") -> SubgroupReport:
    """``frame`` from :func:`labelled_frame` (columns ``y``, ``p`` and the attributes in ``by``; :data:`CLUSTER`
    where patients are known). ``design``: how a group is resampled where patients are not known
    (:data:`SUBGROUP_DESIGNS`); ``family``: how the gap judgements are adjusted (:data:`FAMILIES`)."""
    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in frame.columns]
    if missing:
        raise InvalidInputError(f"unknown attribute(s) {missing}; available: "
                                f"{[c for c in frame.columns if c not in ('case_id', 'y', 'p', 'label')]}")
    if n_boot < 1:
        raise InvalidInputError(f"n_boot must be at least 1, got {n_boot}")
    if design not in SUBGROUP_DESIGNS:
        raise InvalidInputError(f"design {design!r} is not one of {', '.join(SUBGROUP_DESIGNS)}")
    if family not in FAMILIES:
        raise InvalidInputError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    frame = frame.reset_index(drop=True)
    for b in by:
        frame[b] = frame[b].astype("string").fillna(MISSING)
    y, p = frame[OUTCOME].to_numpy(bool), frame[SCORE].to_numpy(float)
    if threshold is None:
        threshold = choose_threshold(y, p, rule)
    else:
        rule = "set by user"
    called = p >= threshold
    frame["called"] = called
    z = float(norm.ppf(1 - (1 - level) / 2))

    if len(frame) < CELL_BOOTSTRAP_FROM:
        mf = MetricFrame(metrics={m.name: partial(_point, m.name) for m in entries(ONE_VS_REST)}, y_true=y,
                         y_pred=called, sensitive_features=frame[by],
                         sample_params={m.name: {"p": p} for m in entries(ONE_VS_REST)})
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
        cells = {name: Cells.of(sub[OUTCOME].to_numpy(bool), sub[SCORE].to_numpy(float), sub["called"].to_numpy(bool),
                                threshold) for name, sub in groups}
        if clustered:
            drawn = cluster_cell_weights(frame[CLUSTER].to_numpy(), [(sub.index.to_numpy(), cells[name])
                                                                     for name, sub in groups], n_boot, rng)
            cell_weights = dict(zip([name for name, _ in groups], drawn))
    for name, sub in groups:
        if large:
            ys, ps, cs = sub[OUTCOME].to_numpy(bool), sub[SCORE].to_numpy(float), sub["called"].to_numpy(bool)
            point_counts = counts(np.ones((1, len(ys))), ys, ps, cs)
            cell = cells[name]
            boot = cell.counts(cell_weights[name] if clustered else cell.resample(n_boot, rng, design=design))
        else:
            sub = sub.sort_values(SCORE, kind="stable")  # sorted once: the AUROC replicates need no gather
            ys, ps, cs = sub[OUTCOME].to_numpy(bool), sub[SCORE].to_numpy(float), sub["called"].to_numpy(bool)
            point_counts = counts(np.ones((1, len(ys))), ys, ps, cs)
            if shared is not None:
                weights = shared[:, sub.index.to_numpy()]
            elif design == "fixed class counts":
                weights = bootstrap_weights(ys, n_boot, rng)
            else:
                weights = case_weights(len(ys), n_boot, rng)
            boot = counts(weights, ys, ps, cs)
        events = int(ys.sum())
        lo_p, hi_p = (wilson_clustered(ys, sub[CLUSTER].to_numpy(), z) if clustered  # patients share a label
                      else wilson(events, len(ys), z))
        patients = int(sub[CLUSTER].nunique()) if clustered else None
        row = {"group": name, "n": len(ys), **({"patients": patients} if clustered else {}),
               "events": events, "prevalence": events / len(ys),
               "prevalence_lo": lo_p, "prevalence_hi": hi_p}
        small = (len(ys) < min_n or min(events, len(ys) - events) < min_events
                 or (clustered and patients < min_patients))
        notes = []
        reps[name] = {}
        for entry in entries(ONE_VS_REST):
            m = entry.name
            if mf is None:
                value = float(entry(point_counts)[0])
            elif name == "overall":
                value = float(mf.overall[m])
            else:
                key = tuple(sub.iloc[0][b] for b in by)
                value = float(by_group.loc[key if len(by) > 1 else key[0], m])
            values = entry(boot)
            reps[name][m] = values
            why = entry.why_undefined(point_counts)
            if why:
                notes.append(f"{m}: {why}")
                value = np.nan
            lo, hi = (np.nan, np.nan) if why or small else percentile_interval(values, level)
            if not small and not why and lo == hi and entry.proportion:  # every resample alike: Wilson's
                success, among = entry.proportion(ys, cs)
                lo, hi = (wilson_clustered(success[among], sub[CLUSTER].to_numpy()[among], z) if clustered
                          else wilson(float(success[among].sum()), float(among.sum()), z))
                notes.append(f"{m}: every resample gave {value:.3f}; Wilson interval instead")
            row.update({m: value, f"{m}_lo": lo, f"{m}_hi": hi})
            if m == "ece":  # no interval: ECE is biased at small n, its resampled interval under-covers
                # (benchmarks/calibration/ece.py); shown beside its chance figure with the consistency test instead
                del row["ece_lo"], row["ece_hi"]
                row["ece_chance"] = ece_expected_by_chance(ps)
                row["ece_p"] = miscalibration_test(  # a patient's images drawn together where patients are known
                    ys, ps, clusters=sub[CLUSTER].to_numpy() if clustered else None).p_value
        reps[name]["_tpr"] = sensitivity(boot)
        reps[name]["_fpr"] = false_positive_rate(boot)
        reps[name]["_selection"] = selection_rate(boot)
        row["_tpr"] = float(sensitivity(point_counts)[0])
        row["_fpr"] = float(false_positive_rate(point_counts)[0])
        row["_selection"] = float(selection_rate(point_counts)[0])
        row["small"] = small
        if large:
            notes.append(f"intervals from class × score-bin counts ({len(cells[name].count)} cells; AUROC binning "
                         f"error ≤ {cells[name].auroc_error:.4f})")
        if small:
            units = f", patients={patients}" if clustered else ""
            needs = f" and ≥{min_patients} patients" if clustered else ""
            notes.insert(0, f"too small to judge (n={len(ys)}, events={events}{units}; needs n≥{min_n} and "
                            f"≥{min_events} of each class{needs}): no interval")
        row["notes"] = "; ".join(notes)
        rows.append(row)
    table = miscalibration_holm(pd.DataFrame(rows))
    gaps = _gaps(table, reps, level, family)
    hidden = ["_tpr", "_fpr", "_selection"]
    how = "patients" if clustered else ("cells" if large else design)
    return SubgroupReport(by=tuple(by), class_index=class_index, threshold=float(threshold), threshold_rule=rule,
                          level=level, n_boot=n_boot, min_n=min_n, min_events=min_events,
                          table=table.drop(columns=hidden), gaps=gaps, design=how,
                          resampling=resampling(frame, stratified=design == "fixed class counts"))


def _contrasts(table: pd.DataFrame, reps, column: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The comparable groups for ``column`` and every pair's ``(i, j)`` with replicate differences ``(P, B)``."""
    eligible = table[(table["group"] != "overall") & ~table["small"] & table[column].notna()]
    groups = eligible["group"].tolist()
    i, j = np.triu_indices(len(groups), k=1)
    if len(groups) < 2:
        return groups, i, j, np.zeros((0, 0))
    values = np.stack([np.asarray(reps[g][column], np.float64) for g in groups])
    return groups, i, j, values[i] - values[j]


def gap_rows(measures: Sequence[tuple[str, str]], table: pd.DataFrame, reps, level: float, *,
             family_columns: Sequence[str] | None = None, family: str = "all") -> list[dict]:
    """One gap row per ``(name, column)`` of ``measures``: the gap between the best and worst comparable group in
    ``column`` with its interval, and the largest gap over every pair with simultaneous bounds.

    All the intervals are simultaneous over one family: every pair of comparable groups in every column of
    ``family_columns`` (default: the measures' columns), by one max-t (:func:`evaluation.inference.max_t`) over all
    those standardised pairwise differences of the bootstrap replicates ``reps`` (group → column → ``(B,)``). So
    the chance that *any* gap is flagged when every group is equal stays at most ``1 - level``, whatever number of
    metrics and groups is shown. ``family="per metric"``: each column adjusted on its own (the old way)."""
    columns = list(dict.fromkeys(family_columns or [c for _, c in measures]))
    found = {c: _contrasts(table, reps, c) for c in dict.fromkeys([*columns, *(c for _, c in measures)])}
    in_family = [c for c in columns if found[c][3].size]
    if family == "all":
        stacked = np.concatenate([found[c][3] for c in in_family]) if in_family else np.zeros((0, 0))
        joint = max_t(stacked, level) if in_family else None
        offsets = dict(zip(in_family, np.cumsum([0] + [len(found[c][3]) for c in in_family])[:-1]))
    contrasts = int(sum(len(found[c][3]) for c in in_family))
    rows = []
    n_groups = int((table["group"] != "overall").sum())
    for name, column in measures:
        groups, i, j, diffs = found[column]
        base = {"metric": name, "groups_compared": len(groups), "groups": n_groups, "family": family,
                "family_measures": len(in_family), "contrasts": contrasts if family == "all" else len(i)}
        if len(groups) < 2:
            rows.append({**base, "higher_group": None, "lower_group": None, "difference": np.nan,
                         "difference_lo": np.nan, "difference_hi": np.nan, "ratio": np.nan, "ratio_lo": np.nan,
                         "ratio_hi": np.nan, "gap_lower": np.nan, "gap_upper": np.nan, "gap_upper_mc_lo": np.nan,
                         "gap_upper_mc_hi": np.nan, "critical": np.nan, "exceed_pair": "", "gap_lower_pair": np.nan,
                         "flag": "", "pairs": 0,
                         "note": f"could not judge: {len(groups)} of {n_groups} group(s) large enough to compare"})
            continue
        if family == "all" and column in offsets:
            result, se = joint, joint.se[offsets[column]:offsets[column] + len(i)]
        elif family == "all":  # a column outside the family shares its critical value (EO's TPR and FPR)
            result, se = joint, max_t(diffs, level).se
        else:
            result = max_t(diffs, level)
            se = result.se
        c = result.critical
        point = table.set_index("group")[column]
        values = point.loc[groups].to_numpy(float)
        hi_g, lo_g = groups[int(np.argmax(values))], groups[int(np.argmin(values))]
        pair = {frozenset((groups[a], groups[b])): k for k, (a, b) in enumerate(zip(i, j))}
        diff = float(point[hi_g] - point[lo_g])
        half = c * se[pair[frozenset((hi_g, lo_g))]] if hi_g != lo_g else 0.0
        abs_d = np.abs(values[i] - values[j])
        lower = abs_d - c * se
        widest = int(np.argmax(lower))
        a, b = reps[hi_g][column], reps[lo_g][column]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(a > 0, b / a, np.nan)
        r_lo, r_hi = percentile_interval(ratio, level)
        d_lo, d_hi = diff - half, diff + half
        flag = ""
        if d_lo > 0:
            flag = (f"{name.replace('_', ' ')}: {hi_g} {point[hi_g]:.3f} vs {lo_g} {point[lo_g]:.3f}, a gap of "
                    f"{diff:.3f} whose {_pct(level)} interval ({d_lo:.3f} to {d_hi:.3f}, simultaneous over "
                    f"{base['contrasts']} contrast(s)) excludes zero")
        hi_name, lo_name = (groups[i[widest]], groups[j[widest]]) if values[i[widest]] >= values[j[widest]] else \
            (groups[j[widest]], groups[i[widest]])
        rows.append({**base, "higher_group": hi_g, "lower_group": lo_g, "difference": diff, "difference_lo": d_lo,
                     "difference_hi": d_hi, "ratio": float(point[lo_g] / point[hi_g]) if point[hi_g] else np.nan,
                     "ratio_lo": r_lo, "ratio_hi": r_hi, "gap_lower": float(lower.max()),
                     "gap_upper": float(np.max(abs_d + c * se)),
                     "gap_upper_mc_lo": float(np.max(abs_d + result.critical_lo * se)),
                     "gap_upper_mc_hi": float(np.max(abs_d + result.critical_hi * se)), "critical": c,
                     "exceed_pair": f"{hi_name} vs {lo_name}", "gap_lower_pair": float(lower[widest]),
                     "flag": flag, "pairs": len(i), "note": ""})
    return rows


def gap_row(metric: str, table: pd.DataFrame, reps, column: str, alpha: float) -> dict:
    """One measure's gap row, simultaneous over its own pairs only (a family of one metric)."""
    return gap_rows([(metric, column)], table, reps, 1 - 2 * alpha)[0]


#: the columns whose pairwise gaps form the subgroup report's family: every metric whose entry takes gaps, and the
#: selection rate (equalized odds' TPR and FPR are sensitivity and 1 − specificity: the same contrasts)
FAMILY_COLUMNS = (*(m.name for m in entries(ONE_VS_REST, gaps=True)), "_selection")


def _gaps(table: pd.DataFrame, reps, level: float, family: str = "all") -> pd.DataFrame:
    judged = [m.name for m in entries(ONE_VS_REST, gaps=True)]
    measures = [(m, m) for m in judged] + [("tpr", "_tpr"), ("fpr", "_fpr"),
                                           ("demographic_parity_difference", "_selection")]
    found = {r["metric"]: r for r in gap_rows(measures, table, reps, level, family_columns=FAMILY_COLUMNS,
                                              family=family)}
    rows = [found[m] for m in judged]
    # equalized odds (Hardt et al., 2016): the larger of the TPR and FPR gaps, as fairlearn defines it
    tpr, fpr = found["tpr"], found["fpr"]
    eo = tpr if np.nan_to_num(tpr["difference"], nan=-1) >= np.nan_to_num(fpr["difference"], nan=-1) else fpr
    component = "TPR" if eo is tpr else "FPR"
    eo = {**eo, "metric": "equalized_odds_difference",
          "flag": eo["flag"].replace(eo["metric"], f"equalized odds ({component})", 1)}
    if np.isfinite(tpr["gap_upper"]) and np.isfinite(fpr["gap_upper"]):  # the gate bounds cover both components
        for key in ("gap_upper", "gap_upper_mc_lo", "gap_upper_mc_hi"):
            eo[key] = max(tpr[key], fpr[key])
        if fpr["gap_lower"] > tpr["gap_lower"]:
            eo["gap_lower"], eo["exceed_pair"], eo["gap_lower_pair"] = (fpr["gap_lower"], fpr["exceed_pair"],
                                                                       fpr["gap_lower_pair"])
        else:
            eo["gap_lower"], eo["exceed_pair"], eo["gap_lower_pair"] = (tpr["gap_lower"], tpr["exceed_pair"],
                                                                       tpr["gap_lower_pair"])
    dp = dict(found["demographic_parity_difference"])
    if dp["higher_group"] is not None:
        by_group = table.set_index("group")
        prevalence_gap = float(by_group.loc[dp["higher_group"], "prevalence"] - by_group.loc[dp["lower_group"],
                                                                                             "prevalence"])
        if dp["difference_lo"] <= prevalence_gap <= dp["difference_hi"]:
            dp["note"] = (f"within its interval of the groups' prevalence difference ({prevalence_gap:+.3f}): a "
                          "model right for everyone shows this gap; judge by equalized odds instead")
    return pd.DataFrame([*rows, eo, dp])


def board_view(table: pd.DataFrame, k: int, *, decision=None, by: Sequence[str] = (),
               where: dict | None = None) -> pd.DataFrame:
    """The table as an ethics board sees it: every figure of a hidden group shown as ``<k``. With ``decision`` (a
    :class:`evaluation.suppression.BoardSuppression` over the cohort), the groups of ``by`` among the labelled cases
    with ``where`` are hidden as that one decision for every board table says; without, by the one-table rule."""
    sizes = dict(zip(table["group"], table["n"]))
    hide = (decision.for_table(sizes, list(by), where=where, labelled=True) if decision is not None
            else suppression(sizes, k))
    return hide.table(table)