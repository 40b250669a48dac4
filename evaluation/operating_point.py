"""One operating threshold per model version and class, fitted once and shared by every page, command, monitor window
and report.

Case review's outcomes, the subgroup table, the Uncertainty page's errors, ``glassbox monitor`` and the board report
must agree on who is a false negative, so the threshold belongs to the model version, not to whichever cohort is
open. In order of precedence:

1. ``fixed``: a threshold the operator sets in the workspace's ``settings.json``::

       {"operating_point": {"threshold": 0.42}}

2. ``model``: the model's own threshold, stated in its card (``model.json`` ``card.operating_threshold``; binary
   models, the positive class);
3. ``validation``: fitted by a stated rule on a named validation split: the first of :data:`VALIDATION_SPLITS`
   (``validation``, ``valid``, ``val``, ``tune``, ``calibration``; case-insensitive) found in the cohort's
   ``split`` column, or the split ``settings.json`` names::

       {"operating_point": {"rule": "sensitivity=0.9", "split": "valid"}}

   The fit is stored in the workspace with its provenance (model hash, cohort hash, split, rule, n, date), keyed by
   the model hash, and reused on every other cohort;
4. ``fallback``: without a validation split the threshold must be fitted on the cases it will be judged on (the
   ``test`` split if there is one, else every labelled case). It carries a visible :attr:`OperatingPoint.warning`
   ("sensitivity and specificity read optimistic"), is stored too (so the views still agree), and is replaced as
   soon as a cohort with a validation split is opened (a fallback on a ``test`` split replaces one on every
   labelled case).

``test`` is never taken as a validation split: a threshold chosen on the test split, then judged on it, makes the
test figures optimistic (Youden's index maximised on the very cases it is read from).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError
from data_adapters.tables import PredictionTable, probability_column
from evaluation.subgroups import choose_threshold

__all__ = ["OperatingPoint", "operating_point", "fit_operating_point", "VALIDATION_SPLITS", "PREFERRED_SPLITS",
           "SOURCES", "validation_split"]

#: split names taken as validation (held out from training, not the test set), in order of preference
VALIDATION_SPLITS = ("validation", "valid", "val", "tune", "calibration")
#: kept for callers of the earlier name: the validation splits only (``test`` is no longer one)
PREFERRED_SPLITS = VALIDATION_SPLITS
#: where a threshold came from, best first; a stored point is replaced only by a better-ranked one
SOURCES = ("fixed", "model", "validation", "fallback", "default")

MSG_FALLBACK = ("no validation split ({names}) among the labelled cases of cohort {cohort!r}: the threshold is fitted on "
                "{where}, the cases it is judged on, so sensitivity and specificity read optimistic there; add a "
                "'valid' split or set settings.json operating_point.threshold")


@dataclass(frozen=True)
class OperatingPoint:
    """The shared threshold for class ``class_index``: ``p >= threshold`` calls the class; with where it came from.

    ``source``: one of :data:`SOURCES`; ``split``/``n``: the cases it was fitted on; ``model_hash``/``cohort_hash``/
    ``cohort``/``fitted_at``: its provenance; ``warning``: non-empty when it had to be fitted on the split judged."""

    class_index: int
    threshold: float
    rule: str
    split: str | None
    n: int
    source: str = "validation"
    model_hash: str = ""
    cohort_hash: str = ""
    cohort: str = ""
    fitted_at: str = ""
    warning: str = ""

    def describe(self) -> str:
        """``0.463 (youden on split 'valid' of cohort 'nih', 62 cases; model 3fa2c1d0e4b5, 2026-12-04)``."""
        if self.source == "fixed":
            return f"{self.threshold:.3f} (set by the operator in settings.json)"
        if self.source == "model":
            return f"{self.threshold:.3f} (the model's own, from its card)"
        where = f"split '{self.split}'" if self.split else "every labelled case"
        of = f" of cohort '{self.cohort}'" if self.cohort else ""
        stamp = "; ".join(x for x in (f"model {self.model_hash[:12]}" if self.model_hash else "",
                                      self.fitted_at[:10]) if x)
        text = f"{self.threshold:.3f} ({self.rule} on {where}{of}, {self.n} cases" + (f"; {stamp}" if stamp else "")
        return text + ")" + (" — not a validation split" if self.source == "fallback" else "")

    def record(self) -> dict:
        """As stored in the workspace (JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> OperatingPoint:
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            point = cls(**{k: v for k, v in record.items() if k in names})
        except TypeError as e:
            raise InvalidInputError(f"stored operating point is incomplete: {e}") from e
        if point.source not in SOURCES or not 0 <= float(point.threshold) <= 1:
            raise InvalidInputError(f"stored operating point has source {point.source!r}, threshold "
                                    f"{point.threshold!r}")
        return point

    @property
    def rank(self) -> tuple[int, int]:
        """Lower is better: the source's place in :data:`SOURCES`, then a fallback on a held-out ``test`` split
        before one on every labelled case (which includes the training cases)."""
        return SOURCES.index(self.source), int(self.split is None)

    def better_than(self, other: OperatingPoint | None) -> bool:
        """Whether this point should replace ``other`` in the store (a better-ranked one)."""
        return other is None or self.rank < other.rank


def validation_split(splits, wanted: str | None = None) -> str | None:
    """The split of ``splits`` (names present in a cohort) to fit a threshold on: ``wanted`` when given (the
    operator's choice, matched exactly), else the first of :data:`VALIDATION_SPLITS`, matched case-insensitively
    and returned as the cohort spells it; None when the cohort has none."""
    present = [str(s) for s in splits]
    if wanted is not None:
        return wanted if wanted in present else None
    lowered = {s.strip().lower(): s for s in present}
    return next((lowered[s] for s in VALIDATION_SPLITS if s in lowered), None)


def _fixed(settings: dict) -> float | None:
    if "threshold" not in settings:
        return None
    value = settings["threshold"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidInputError(f"settings.json operating_point.threshold must be a number in [0, 1], got {value!r}")
    return float(value)


def fit_operating_point(cohort_frame: pd.DataFrame, predictions: PredictionTable, class_index: int, *,
                        settings: dict | None = None, model_hash: str = "", cohort_hash: str = "", cohort: str = "",
                        model_threshold: float | None = None, now: str | None = None) -> OperatingPoint:
    """The threshold for ``class_index`` by the precedence in the module docstring, from ``cohort_frame`` (``label``,
    optional ``split``) and the model's ``predictions``. ``settings``: the ``operating_point`` entry of
    ``settings.json``; ``model_threshold``: the model's own (:attr:`ModelHandle.stated_threshold`).

    Without labels of both kinds: 0.5 with rule ``default (no labels of both kinds)`` and source ``default``."""
    settings = settings or {}
    provenance = dict(model_hash=model_hash, cohort_hash=cohort_hash, cohort=cohort,
                      fitted_at=now or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    fixed = _fixed(settings)
    if fixed is not None:
        return OperatingPoint(class_index, fixed, "fixed", None, 0, "fixed", model_hash=model_hash)
    if model_threshold is not None:
        return OperatingPoint(class_index, float(model_threshold), "model's own", None, 0, "model",
                              model_hash=model_hash)
    rule = settings.get("rule", "youden")
    frame = cohort_frame.merge(predictions.frame, on="case_id", how="inner")
    frame = frame[frame["label"].notna()]
    wanted = settings.get("split")
    present = sorted(set(frame["split"].dropna().astype(str))) if "split" in frame else []
    split = validation_split(present, wanted)
    if wanted is not None and split is None:
        raise InvalidInputError(f"settings.json operating_point.split {wanted!r}: no labelled case has that split; "
                                f"cohort {cohort or '(unnamed)'} has {', '.join(map(repr, present)) or 'no splits'}")
    source, warning = "validation", ""
    if split is None:  # no validation split: fitted on the cases it will be judged on, and says so
        source = "fallback"
        split = next((s for s in present if s.strip().lower() == "test"), None)
        where = f"split '{split}'" if split else "every labelled case"
        warning = MSG_FALLBACK.format(names=", ".join(VALIDATION_SPLITS), cohort=cohort or "(unnamed)", where=where)
    if split is not None:
        frame = frame[frame["split"].astype(str) == split]
    y = (frame["label"] == class_index).to_numpy(bool)
    if not len(y) or y.all() or not y.any():
        return OperatingPoint(class_index, 0.5, "default (no labels of both kinds)", split, len(y), "default",
                              **provenance, warning="no labels of both kinds to fit a threshold on: 0.5 is used")
    p = frame[probability_column(class_index)].to_numpy(float)
    value = float(np.clip(choose_threshold(y, p, rule), 0.0, 1.0))
    return OperatingPoint(class_index, value, rule, split, len(y), source, **provenance, warning=warning)


def operating_point(cohort_frame: pd.DataFrame, predictions: PredictionTable, class_index: int, *,
                    settings: dict | None = None) -> OperatingPoint:
    """:func:`fit_operating_point` without provenance or storage (one cohort's fit, as a function of its data)."""
    return fit_operating_point(cohort_frame, predictions, class_index, settings=settings, now="")
