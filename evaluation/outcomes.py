"""Per-case outcome at an operating threshold: correct, false positive or false negative for one class."""
from __future__ import annotations

import numpy as np
import pandas as pd

from data_adapters.records import Cohort

OUTCOMES = ("correct", "false positive", "false negative", "unlabelled")


def case_outcomes(cohort: Cohort, predictions: pd.DataFrame, class_index: int, threshold: float = 0.5) -> pd.DataFrame:
    """The cohort frame joined to predictions, with ``predicted`` (class ``class_index`` called at
    ``p >= threshold``, one-vs-rest) and ``outcome`` for that class."""
    frame = cohort.frame().merge(predictions, on="case_id", how="left")
    p = frame[f"p_{class_index}"].to_numpy(dtype=float)
    called = p >= threshold
    is_class = (frame["label"] == class_index).to_numpy(dtype=bool, na_value=False)
    labelled = frame["label"].notna().to_numpy()
    outcome = np.where(~labelled, "unlabelled",
                       np.where(called & ~is_class, "false positive",
                                np.where(~called & is_class, "false negative", "correct")))
    return frame.assign(probability=p, called=called, outcome=outcome)
