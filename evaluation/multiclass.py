"""Multi-class performance done as a multi-class model is used: the top class against the label.

A K-class model's outcome for a case is its top class (argmax) against the label; one-vs-rest views of a single
class are a choice the pages offer, not the default. Per group: accuracy, balanced accuracy (mean recall over the
classes present, as scikit-learn), top-k accuracy, macro and prevalence-weighted one-vs-rest AUROC (scikit-learn's
``multi_class="ovr"``), top-label calibration (ECE of the top-class confidence) and the multi-class Brier score,
each with a 95% bootstrap interval, plus a confusion matrix per group. Like the binary table, every replicate is
computed at once from a ``(B, n)`` matrix of resample counts: a plain bootstrap of each group's images (not
stratified by class: the class mix is part of what varies), or a cluster bootstrap of patients where the cohort
says which patient each image came from (``evaluation.subgroups``).
Between-group gaps use the same simultaneous (max-t) intervals as the binary table, one family over every metric ×
pair of comparable groups. A group too small to judge gets its estimate but no interval.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER, probability_columns
from evaluation.calibration import ece_expected_by_chance, miscalibration_holm, miscalibration_test
from evaluation.inference import case_weights, percentile_interval
from evaluation.metrics import TOP_CLASS, Replicates, entries
from evaluation.subgroups import N_BOOT, MISSING, GapJudgement, gap_rows, replicate_weights, resampling

__all__ = ["MulticlassReport", "multiclass_report", "top_class", "probabilities", "confusion_by_group"]

def probabilities(frame: pd.DataFrame, n_classes: int) -> np.ndarray:
    """The ``p_0 … p_{K-1}`` columns of a predictions frame as ``(n, K)``."""
    return frame[probability_columns(n_classes)].to_numpy(float)


def top_class(frame: pd.DataFrame, n_classes: int) -> np.ndarray:
    """Each case's top class (argmax of its probabilities; the first class on a tie, as ``numpy.argmax``)."""
    return probabilities(frame, n_classes).argmax(axis=1)


@dataclass(frozen=True)
class MulticlassReport(GapJudgement):
    """``table``: one row per group plus ``overall`` (n, each metric with ``_lo``/``_hi``, ``small``, ``notes``);
    ``gaps``: best versus worst comparable group per metric, simultaneous intervals; ``confusion``: group →
    ``(K, K)`` counts, rows the true class, columns the top class."""

    by: tuple[str, ...]
    class_names: tuple[str, ...]
    level: float
    n_boot: int
    min_n: int
    resampling: str
    table: pd.DataFrame
    gaps: pd.DataFrame
    confusion: dict[str, np.ndarray]

    @property
    def size_rule(self) -> str:
        return f"n≥{self.min_n}"


def multiclass_report(frame: pd.DataFrame, by: str | Sequence[str], class_names: Sequence[str], *,
                      n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0, min_n: int = 30) -> MulticlassReport:
    """``frame``: labelled cases joined to predictions (``label``, ``p_0 … p_{K-1}``, the attributes in ``by``,
    and :data:`CLUSTER` where patients are known)."""
    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in frame.columns]
    if missing:
        raise InvalidInputError(f"unknown attribute(s) {missing}")
    if n_boot < 1:
        raise InvalidInputError(f"n_boot must be at least 1, got {n_boot}")
    K = len(class_names)
    frame = frame[frame["label"].notna()].reset_index(drop=True)
    if frame.empty:
        raise InvalidInputError("no labelled cases: multi-class performance needs labels")
    for b in by:
        frame[b] = frame[b].astype("string").fillna(MISSING)
    y_all = frame["label"].astype(int).to_numpy()
    P_all = probabilities(frame, K)
    rng = np.random.default_rng(seed)
    shared = replicate_weights(frame, n_boot, rng)
    groups = [("overall", frame)] + [
        (" · ".join(map(str, key if isinstance(key, tuple) else (key,))), sub)
        for key, sub in frame.groupby(by if len(by) > 1 else by[0], sort=True, observed=True)]
    rows, reps, confusion = [], {}, {}
    for name, sub in groups:
        idx = sub.index.to_numpy()
        y, P = y_all[idx], P_all[idx]
        point = Replicates(np.ones((1, len(y))), y, P)
        # not stratified by class: with seven classes a group's class mix is part of what varies between samples,
        # and holding it fixed gives zero-width intervals wherever a model's answer is constant within a class
        weights = shared[:, idx] if shared is not None else case_weights(len(y), n_boot, rng)
        boot = Replicates(weights, y, P)
        present = len(np.unique(y))
        row = {"group": name, "n": len(y)}
        if shared is not None:
            row["patients"] = int(sub[CLUSTER].nunique())
        row["classes_present"] = present
        notes, reps[name] = [], {}
        small = len(y) < min_n
        for entry in entries(TOP_CLASS):
            m = entry.name
            value = float(entry(point)[0])
            values = entry(boot)
            why = entry.why_undefined(point)
            if why:
                notes.append(f"{m}: {why}")
            reps[name][m] = values
            lo, hi = percentile_interval(values, level) if np.isfinite(value) and not small else (np.nan, np.nan)
            row.update({m: value, f"{m}_lo": lo, f"{m}_hi": hi})
            if m == "ece":  # no interval (biased at small n); its chance figure and consistency test instead
                del row["ece_lo"], row["ece_hi"]
                row["ece_chance"] = ece_expected_by_chance(P.max(axis=1))
                row["ece_p"] = miscalibration_test(P.argmax(axis=1) == y, P.max(axis=1), clusters=(
                    sub[CLUSTER].to_numpy() if shared is not None else None)).p_value
        if present < K:
            notes.append(f"{K - present} of {K} classes absent: balanced accuracy and AUROC over the {present} present")
        row["small"] = small
        if small:
            notes.insert(0, f"too small to judge (n={len(y)}; needs n≥{min_n}): no interval")
        row["notes"] = "; ".join(notes)
        rows.append(row)
        confusion[name] = confusion_matrix(y, P.argmax(axis=1), labels=list(range(K)))
    table = miscalibration_holm(pd.DataFrame(rows))
    gaps = pd.DataFrame(gap_rows([(m.name, m.name) for m in entries(TOP_CLASS, gaps=True)], table, reps, level))
    return MulticlassReport(by=tuple(by), class_names=tuple(class_names), level=level, n_boot=n_boot, min_n=min_n,
                            resampling=resampling(frame, stratified=False), table=table, gaps=gaps, confusion=confusion)


def confusion_frame(matrix: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """A confusion matrix as a table: rows ``true <class>``, columns ``predicted <class>``."""
    return pd.DataFrame(matrix, index=[f"true {c}" for c in class_names],
                        columns=[f"predicted {c}" for c in class_names])


def confusion_by_group(report: MulticlassReport, k: int | None = None) -> dict[str, pd.DataFrame]:
    """Each group's confusion table; with ``k`` (the board's minimum), groups under ``k`` cases left out."""
    sizes = report.table.set_index("group")["n"]
    return {g: confusion_frame(m, report.class_names) for g, m in report.confusion.items()
            if k is None or g == "overall" or sizes[g] >= k}
