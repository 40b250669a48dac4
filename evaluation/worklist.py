"""The radiologist's worklist: every case with what the model said, how sure it was, whether it is referred, who has
reviewed it, and (given another version) whether its outcome flipped; presets and filters that pick what to read
next, in a stated order.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_adapters.tables import PredictionTable, probability_columns
from evaluation.outcomes import OUTCOMES, TOP_CLASS_OUTCOMES, with_outcomes
from evaluation.referral import REFER_FRACTION, referred

__all__ = ["PRESETS", "STATUSES", "SORTS", "WorklistFilter", "worklist", "select", "neighbour", "case_options",
           "FILTER_GROUPS", "filter_groups", "outcome_choices"]

NOT_REVIEWED = "not reviewed"
STATUSES = (NOT_REVIEWED, "agree", "disagree", "unsure")
#: preset → (what it keeps, in words; the column it sorts by; descending?)
PRESETS = {
    "all cases": ("every case, in cohort order", "order", False),
    "most confident errors": ("labelled cases the model got wrong, the most confident first", "confidence", True),
    "referred": ("cases above the cohort's referral cutoff of uncertainty, the most uncertain first", "uncertainty",
                 True),
    "not yet reviewed": ("cases you have not recorded a verdict on, in cohort order", "order", False),
    "flips between versions": ("labelled cases whose outcome differs under the other version (fixed or broken), the "
                               "largest change of probability first", "flip_size", True),
    "flagged for the board": ("cases a reader flagged for the ethics board, the most recent first", "reviewed_at",
                              True),
}
#: columns a reader may sort by → label
SORTS = {"order": "cohort order", "probability": "probability", "confidence": "confidence in the call",
         "uncertainty": "uncertainty", "reviews": "number of readers", "reviewed_at": "last reviewed"}


def worklist(frame: pd.DataFrame, *, class_index: int | None, threshold: float, n_classes: int,
             class_names: Sequence[str], uncertainty: pd.Series | None = None,
             refer_fraction: float = REFER_FRACTION,
             verdicts: pd.DataFrame | None = None, reader: str | None = None,
             other: PredictionTable | None = None) -> pd.DataFrame:
    """One row per case of ``frame`` (a cohort frame joined to predictions ``p_0 … p_{K-1}``), in its order.

    Adds ``truth`` and ``called`` (class names), ``probability`` (of the top class, or of ``class_index``),
    ``outcome``, ``confidence`` (distance of the probability from the threshold, scaled to 0..1: how sure the call
    was), ``uncertainty`` and ``refer`` (``evaluation.referral.referred``) where an uncertainty per case
    (indexed by case id) is given, ``status`` (``reader``'s latest verdict, or not reviewed), ``reviews`` (readers
    with a verdict), ``flagged`` (any reader flagged it for the board), ``reviewed_at``, and with ``other`` (the
    other version's predictions; a case it lacks flips nowhere) ``flip`` (fixed / broken / empty) and ``flip_size``."""
    out = with_outcomes(frame.reset_index(drop=True), class_index, threshold, n_classes=n_classes)
    out["order"] = np.arange(len(out))
    names = list(class_names)
    lookup = np.array([*names, "unlabelled"], dtype=object)
    labels = out["label"].astype("Int64")
    out["truth"] = lookup[labels.fillna(len(names)).to_numpy(int)]
    if class_index is None:
        out["called"] = lookup[out["predicted"].to_numpy(int)]
        out["confidence"] = (out["probability"] - 1 / n_classes) / (1 - 1 / n_classes)
    else:
        out["called"] = np.where(out["called"], names[class_index], f"not {names[class_index]}")
        span = np.where(out["probability"] >= threshold, 1 - threshold, threshold)
        out["confidence"] = np.abs(out["probability"] - threshold) / np.maximum(span, 1e-9)
    if uncertainty is not None:
        values = uncertainty.reindex(out["case_id"]).to_numpy(float)
        out["uncertainty"] = values
        out["refer"] = referred(values, refer_fraction)
    else:
        out["uncertainty"] = np.nan
        out["refer"] = False
    out["status"], out["reviews"], out["flagged"], out["reviewed_at"] = NOT_REVIEWED, 0, False, ""
    if verdicts is not None and len(verdicts):
        by_case = verdicts.groupby("case_id")
        counts = by_case["reader"].nunique()
        out["reviews"] = out["case_id"].map(counts).fillna(0).astype(int)
        out["flagged"] = out["case_id"].map(by_case["flag_board"].any()).fillna(False).astype(bool)
        out["reviewed_at"] = out["case_id"].map(by_case["at"].max()).fillna("")
        if reader is not None:
            mine = verdicts[verdicts["reader"] == reader].drop_duplicates("case_id", keep="last")
            out["status"] = out["case_id"].map(mine.set_index("case_id")["agreement"]).fillna(NOT_REVIEWED)
    out["flip"], out["flip_size"] = "", 0.0
    if other is not None:
        probs = (other.frame.set_index("case_id").reindex(out["case_id"])[probability_columns(n_classes)]
                 .reset_index(drop=True))
        theirs = with_outcomes(pd.concat([out[["label"]], probs], axis=1), class_index, threshold,
                               n_classes=n_classes)
        labelled = out["label"].notna().to_numpy()
        mine_right, their_right = ~out["error"].to_numpy(bool), ~theirs["error"].to_numpy(bool)
        out["flip"] = np.where(labelled & mine_right & ~their_right, "fixed",
                               np.where(labelled & ~mine_right & their_right, "broken", ""))
        # fixed: right under this version, wrong under the other; broken: the reverse
        out["flip_size"] = np.abs(out["probability"].to_numpy() - theirs["probability"].to_numpy())
    return out


@dataclasses.dataclass(frozen=True)
class WorklistFilter:
    """What a reader asked for: a preset, then filters (each empty means "any"), then an order."""

    preset: str = "all cases"
    outcomes: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()  # true class indices
    groups: tuple[tuple[str, tuple], ...] = ()  # (attribute, allowed values)
    splits: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    probability: tuple[float, float] = (0.0, 1.0)
    referred_only: bool = False
    sort: str | None = None  # None: the preset's order
    descending: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        if self.sort is not None and self.sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}")


def select(table: pd.DataFrame, f: WorklistFilter) -> pd.DataFrame:
    """The rows of a :func:`worklist` that ``f`` keeps, in its order (ties in cohort order)."""
    keep = np.ones(len(table), bool)
    if f.preset == "most confident errors":
        keep &= table["error"].to_numpy(bool)
    elif f.preset == "referred":
        keep &= table["refer"].to_numpy(bool)
    elif f.preset == "not yet reviewed":
        keep &= (table["status"] == NOT_REVIEWED).to_numpy()
    elif f.preset == "flips between versions":
        keep &= (table["flip"] != "").to_numpy()
    elif f.preset == "flagged for the board":
        keep &= table["flagged"].to_numpy(bool)
    if f.outcomes:
        keep &= table["outcome"].isin(f.outcomes).to_numpy()
    if f.labels:
        keep &= table["label"].isin(f.labels).to_numpy()
    for attr, values in f.groups:
        if values:
            keep &= table[attr].astype(str).isin([str(v) for v in values]).to_numpy()
    if f.splits and "split" in table:
        keep &= table["split"].astype(str).isin(f.splits).to_numpy()
    if f.statuses:
        keep &= table["status"].isin(f.statuses).to_numpy()
    lo, hi = f.probability
    p = table["probability"].to_numpy(float)
    keep &= (p >= lo) & (p <= hi)
    if f.referred_only:
        keep &= table["refer"].to_numpy(bool)
    shown = table[keep]
    column, descending = (f.sort, f.descending) if f.sort else PRESETS[f.preset][1:]
    return shown.sort_values([column, "order"], ascending=[not descending, True], kind="stable",
                             na_position="last")


def neighbour(case_ids: Sequence[str], current: str | None, step: int) -> str | None:
    """The case ``step`` places from ``current`` in the list (wrapping at neither end); the first when ``current`` is
    not in it."""
    ids = list(case_ids)
    if not ids:
        return None
    if current not in ids:
        return ids[0]
    return ids[min(max(ids.index(current) + step, 0), len(ids) - 1)]


def case_options(shown_ids: Sequence[str], current: str | None, all_ids: Sequence[str]) -> tuple[list[str], bool]:
    """The cases the case box offers, and whether the case being read is kept open outside the filters: the rows
    the filters keep (``shown_ids``, in the worklist's order), with ``current`` put first when it is a case of the
    worklist (``all_ids``) that the filters (or a version switch) no longer match, so a reader never loses the case
    in front of them to a filter change."""
    options = list(shown_ids)
    kept = current is not None and current not in options and current in set(all_ids)
    return ([current, *options] if kept else options), kept


#: attribute columns a reader filters the worklist by (the first of the cohort's groups, ``split`` apart)
FILTER_GROUPS = 3


def filter_groups(groups: Sequence[str]) -> list[str]:
    """The cohort's group columns the worklist offers as filters: up to :data:`FILTER_GROUPS`, ``split`` apart
    (it has its own filter)."""
    return [g for g in groups if g != "split"][:FILTER_GROUPS]


def outcome_choices(table: pd.DataFrame, judged_by_top_class: bool) -> list[str]:
    """The outcomes a reader may filter by: the top-class outcomes for a model judged by its top class whose table
    holds them (the top-class view), else correct / false positive / false negative; never ``unlabelled``."""
    outcomes = TOP_CLASS_OUTCOMES if judged_by_top_class and "misclassified" in set(table["outcome"]) else OUTCOMES
    return [o for o in outcomes if o != "unlabelled"]
