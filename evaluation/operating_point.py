"""One operating threshold per model and class, shared by every page and command.

Case review's outcomes, the subgroup table and the Uncertainty page's errors must agree on who is a false
negative, so the threshold is chosen once, by a stated rule on a named split, and every view uses it:

- the split: the first of ``validation``, ``val``, ``tune``, ``calibration``, ``test`` found in the cohort's
  ``split`` column (a split the model did not train on), else every labelled case, and the record says which;
- the rule: ``youden`` (default), ``sensitivity=<x>``, ``specificity=<x>`` (see :func:`choose_threshold`), or a
  fixed value, as the operator sets in the workspace's ``settings.json``::

      {"operating_point": {"rule": "sensitivity=0.9", "split": "validation"}}
      {"operating_point": {"threshold": 0.42}}
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError
from evaluation.subgroups import choose_threshold

__all__ = ["OperatingPoint", "operating_point", "PREFERRED_SPLITS"]

PREFERRED_SPLITS = ("validation", "val", "tune", "calibration", "test")


@dataclass(frozen=True)
class OperatingPoint:
    """The shared threshold for class ``class_index``: ``p >= threshold`` calls the class."""

    class_index: int
    threshold: float
    rule: str
    split: str | None
    n: int

    def describe(self) -> str:
        where = f"split '{self.split}'" if self.split else "every labelled case"
        if self.rule == "fixed":
            return f"{self.threshold:.3f} (set by the operator)"
        return f"{self.threshold:.3f} ({self.rule} on {where}, {self.n} cases)"


def operating_point(cohort_frame: pd.DataFrame, predictions: pd.DataFrame, class_index: int, *,
                    settings: dict | None = None) -> OperatingPoint:
    """The threshold for ``class_index`` from the cohort's labels and the model's predictions, by the rule and
    split in ``settings`` (the ``operating_point`` entry of ``settings.json``) or the defaults above. Without
    labels of both kinds, 0.5 with rule ``default (no labels)``."""
    settings = settings or {}
    if "threshold" in settings:
        value = settings["threshold"]
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidInputError(f"settings.json operating_point.threshold must be a number in [0, 1], got {value!r}")
        return OperatingPoint(class_index, float(value), "fixed", None, 0)
    rule = settings.get("rule", "youden")
    frame = cohort_frame.merge(predictions, on="case_id", how="inner")
    frame = frame[frame["label"].notna()]
    split = settings.get("split")
    if split is None and "split" in frame:
        present = set(frame["split"].dropna().astype(str))
        split = next((s for s in PREFERRED_SPLITS if s in present), None)
    if split is not None:
        if "split" not in frame or not (frame["split"].astype(str) == split).any():
            raise InvalidInputError(f"settings.json operating_point.split {split!r}: no labelled case has that split")
        frame = frame[frame["split"].astype(str) == split]
    y = (frame["label"] == class_index).to_numpy(bool)
    if not len(y) or y.all() or not y.any():
        return OperatingPoint(class_index, 0.5, "default (no labels of both kinds)", split, len(y))
    p = frame[f"p_{class_index}"].to_numpy(float)
    return OperatingPoint(class_index, float(np.clip(choose_threshold(y, p, rule), 0.0, 1.0)), rule, split, len(y))
