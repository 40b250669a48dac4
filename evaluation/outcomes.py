"""Per-case outcomes. A multi-class model is judged as it is used: its top class against the label. A binary model,
or one class of any model viewed one-vs-rest, at an operating threshold: correct, false positive or false negative
for that class."""
from __future__ import annotations

import numpy as np
import pandas as pd

from data_adapters.records import Cohort, ModelHandle
from data_adapters.tables import PredictionTable, probability_column, probability_columns

OUTCOMES = ("correct", "false positive", "false negative", "unlabelled")
TOP_CLASS_OUTCOMES = ("correct", "misclassified", "unlabelled")


def uses_top_class(handle: ModelHandle) -> bool:
    """Whether the model's default view is its top class (a single-label model of more than two classes) rather
    than one class at a threshold (binary; multi-label, each label at its own threshold)."""
    return handle.judged_by_top_class


def case_outcomes(cohort: Cohort, predictions: PredictionTable, class_index: int | None, threshold: float = 0.5, *,
                  n_classes: int | None = None) -> pd.DataFrame:
    """The cohort frame joined to predictions, with ``predicted`` and ``outcome``.

    ``class_index`` None (the top-class view; needs ``n_classes``): ``predicted`` is each case's top class,
    ``probability`` its probability, and ``outcome`` correct or misclassified against the label. Otherwise one
    class one-vs-rest: ``called`` (``p >= threshold``), ``probability`` that class's, outcome correct, false positive
    or false negative for it."""
    return with_outcomes(cohort.frame().merge(predictions.frame, on="case_id", how="left"), class_index, threshold,
                         n_classes=n_classes)


def with_outcomes(frame: pd.DataFrame, class_index: int | None, threshold: float = 0.5, *,
                  n_classes: int | None = None) -> pd.DataFrame:
    """:func:`case_outcomes` for a frame that already holds ``label`` and ``p_0 … p_{K-1}``; adds ``error``
    (labelled and not correct) too."""
    labelled = frame["label"].notna().to_numpy()
    if class_index is None:
        if n_classes is None:
            raise ValueError("the top-class view needs n_classes")
        probs = frame[probability_columns(n_classes)].to_numpy(float)
        top = probs.argmax(axis=1)
        right = (frame["label"].to_numpy(dtype=float, na_value=-1) == top)
        outcome = np.where(~labelled, "unlabelled", np.where(right, "correct", "misclassified"))
        return frame.assign(predicted=top, probability=probs.max(axis=1), outcome=outcome,
                            error=labelled & ~right)
    p = frame[probability_column(class_index)].to_numpy(dtype=float)
    called = p >= threshold
    is_class = (frame["label"] == class_index).to_numpy(dtype=bool, na_value=False)
    outcome = np.where(~labelled, "unlabelled",
                       np.where(called & ~is_class, "false positive",
                                np.where(~called & is_class, "false negative", "correct")))
    return frame.assign(probability=p, called=called, outcome=outcome, error=labelled & (called != is_class))


def judged_class(handle: ModelHandle, target: int | str | None = None) -> int | None:
    """The class a model's outcomes are judged for: ``target`` (a class index or name; one class one-vs-rest) when
    given; else None (each case's top class against the label) for a single-label model of more than two classes,
    and the last class (the positive one) for the others."""
    if target is not None:
        return handle.class_index(target)
    return None if uses_top_class(handle) else handle.n_classes - 1


def class_views(handle: ModelHandle) -> list[int | None]:
    """The views a page offers a model in: the top class (None) first where the model is judged by it, then each
    class one-vs-rest; a page opens on :func:`judged_class`."""
    return ([None] if uses_top_class(handle) else []) + list(range(handle.n_classes))
