"""The tables that cross package borders, and the one place their column names are spelled.

A model's per-case results travel as typed tables, validated once on construction:

- :class:`PredictionTable`: one row per case, ``case_id`` then ``p_0`` … ``p_{K-1}`` (the probability of class
  k, :func:`probability_column`). Case ids are unique, probabilities lie in [0, 1], and for a single-label task
  (binary, multi-class) each row sums to 1.
- :class:`UncertaintyTable`: one row per case from one method (``mc_dropout``, ``tta``, ``ensemble``): the mean
  probability ``mean_k`` and its spread ``std_k`` per class, the predictive ``entropy`` and the
  ``mutual_information``; :data:`FIGURES` says what each figure is and which way is more uncertain.

A cohort's frame (:meth:`data_adapters.records.Cohort.frame`) carries :data:`LABEL` and, where patients are
known, :data:`CLUSTER`; a labelled frame for one class (``evaluation.subgroups.labelled_frame``) adds
:data:`OUTCOME` (the label is that class) and :data:`SCORE` (that class's probability).

The Parquet layout of the cache is these columns, so tables written before this module read back unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from data_adapters.errors import InvalidInputError

__all__ = [
    "CASE_ID", "LABEL", "CLUSTER", "OUTCOME", "SCORE", "ENTROPY", "MUTUAL_INFORMATION", "FIGURES", "Figure",
    "probability_column", "probability_columns", "mean_column", "mean_columns", "std_column", "std_columns",
    "uncertainty_columns", "PredictionTable", "UncertaintyTable",
]

CASE_ID = "case_id"
#: the class index a cohort's frame gives each case (nullable integer; missing for unlabelled cases)
LABEL = "label"
#: the column of a cohort's frame that groups a patient's images (resampled together by every bootstrap)
CLUSTER = "_cluster"
#: a labelled frame's binary target for one class: the case's label is that class
OUTCOME = "y"
#: a labelled frame's score for one class: the model's probability of that class
SCORE = "p"
ENTROPY = "entropy"
MUTUAL_INFORMATION = "mutual_information"

#: single-label rows sum to 1 within this (float32 softmax and sigmoid, summed in float64)
SUM_TOLERANCE = 1e-4
SINGLE_LABEL = ("binary", "multiclass")


def _n(classes: int | Sequence[Any] | Any) -> int:
    """A class count from an int, a list of class names, or anything with ``n_classes`` (a ``ModelHandle``)."""
    n = getattr(classes, "n_classes", classes)
    if not isinstance(n, (int, np.integer)):
        n = len(n)
    return int(n)


def probability_column(k: int | str) -> str:
    """The column holding the probability of class ``k`` (its index; or a name where a table is relabelled for
    export)."""
    return f"p_{k}"


def probability_columns(classes: int | Sequence[Any] | Any) -> list[str]:
    """Every probability column of a model with these classes: a count, the class names, or the handle."""
    return [probability_column(k) for k in range(_n(classes))]


def mean_column(k: int | str) -> str:
    """An uncertainty table's mean probability of class ``k`` over the method's draws."""
    return f"mean_{k}"


def mean_columns(classes: int | Sequence[Any] | Any) -> list[str]:
    return [mean_column(k) for k in range(_n(classes))]


def std_column(k: int | str) -> str:
    """An uncertainty table's spread (standard deviation over draws) of class ``k``'s probability."""
    return f"std_{k}"


def std_columns(classes: int | Sequence[Any] | Any) -> list[str]:
    return [std_column(k) for k in range(_n(classes))]


def uncertainty_columns(classes: int | Sequence[Any] | Any) -> list[str]:
    """The figure columns of an uncertainty table, in their on-disk order (after ``case_id``)."""
    return [*mean_columns(classes), *std_columns(classes), ENTROPY, MUTUAL_INFORMATION]


@dataclass(frozen=True)
class Figure:
    """One per-case uncertainty figure: its column (for ``std``, one per class), what it is, and that a higher
    value means more uncertain."""

    name: str
    description: str
    per_class: bool = False
    higher_is_more_uncertain: bool = True


#: the per-case figures of an uncertainty table (Gal & Ghahramani 2016; Depeweg et al. 2018)
FIGURES = {
    ENTROPY: Figure(ENTROPY, "predictive entropy of the mean probabilities (total uncertainty)"),
    MUTUAL_INFORMATION: Figure(MUTUAL_INFORMATION, "mutual information between the prediction and the draws "
                               "(the epistemic part: models disagreeing)"),
    "std": Figure("std", "standard deviation of a class's probability over the draws", per_class=True),
}


def _frame_of(frame: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"{what}: expected a table, got {type(frame).__name__}")
    missing = [c for c in [CASE_ID, *columns] if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{what}: column(s) {', '.join(map(repr, missing))} missing "
                                f"(it has {', '.join(map(repr, map(str, frame.columns))) or 'none'})")
    ids = frame[CASE_ID]
    if ids.isna().any():
        raise InvalidInputError(f"{what}: row {int(np.flatnonzero(ids.isna().to_numpy())[0])} has no case_id")
    duplicated = ids.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise InvalidInputError(f"{what}: case_id in row {row} appears twice (case ids must be unique)")
    return frame.reset_index(drop=True)


def _check_probabilities(values: np.ndarray, columns: list[str], what: str, single_label: bool) -> None:
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise InvalidInputError(f"{what}: row {row}, column {columns[col]!r} is not a probability in [0, 1]")
    if single_label and values.shape[1]:
        off = np.abs(values.sum(axis=1) - 1.0) > SUM_TOLERANCE
        if off.any():
            row = int(np.flatnonzero(off)[0])
            raise InvalidInputError(f"{what}: row {row}'s probabilities sum to {values[row].sum():.6g}, not 1 "
                                    f"(a single-label task)")


class _Table:
    """A frozen, validated table: the frame is kept private and handed out as a copy."""

    __slots__ = ("_frame", "task", "n_classes")
    _frame: pd.DataFrame
    task: str
    n_classes: int

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self._frame)

    def __getstate__(self) -> dict:  # pickled by st.cache_data
        return {name: getattr(self, name) for name in self._fields()}

    def __setstate__(self, state: dict) -> None:
        self._set(**state)

    @classmethod
    def _fields(cls) -> tuple[str, ...]:
        return tuple(name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ()))

    @property
    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (a copy: for display, merging with a cohort's frame, or writing)."""
        return self._frame.copy()

    @property
    def case_ids(self) -> list[str]:
        return self._frame[CASE_ID].astype(str).tolist()

    def select(self, case_ids: Sequence[str]):
        """The rows of these cases, in this order (every one must be in the table)."""
        case_ids = list(case_ids)
        index = pd.Index(self._frame[CASE_ID]).get_indexer(case_ids)
        if (index < 0).any():
            missing = case_ids[int(np.flatnonzero(index < 0)[0])]
            raise InvalidInputError(f"{type(self).__name__}: case {missing!r} is not in the table")
        return self._replace(self._frame.iloc[index], index)

    def _replace(self, frame: pd.DataFrame, index: np.ndarray):
        raise NotImplementedError


class PredictionTable(_Table):
    """A model's per-case probabilities: ``case_id`` and :func:`probability_columns` (one per class).

    ``task``: ``binary``, ``multiclass`` (rows sum to 1) or ``multilabel`` (independent probabilities).
    Extra columns of ``frame`` are dropped. :meth:`with_cohort` adds each case's label and patient from a cohort's
    frame (:meth:`labels`, :meth:`clusters`), kept beside the probabilities, never in :attr:`frame`.
    """

    __slots__ = ("_labels", "_clusters")
    _labels: pd.arrays.IntegerArray | None
    _clusters: np.ndarray | None

    def __init__(self, frame: pd.DataFrame, *, task: str, n_classes: int) -> None:
        what = "predictions"
        columns = probability_columns(n_classes)
        frame = _frame_of(frame, columns, what)[[CASE_ID, *columns]]
        values = frame[columns].to_numpy(np.float64)
        _check_probabilities(values, columns, what, task in SINGLE_LABEL)
        self._set(_frame=frame, task=task, n_classes=int(n_classes), _labels=None, _clusters=None)

    @classmethod
    def of(cls, case_ids: Sequence[str], probabilities: np.ndarray, *, task: str) -> PredictionTable:
        """From case ids and an ``(n, K)`` array of probabilities."""
        probabilities = np.asarray(probabilities, np.float64)
        if probabilities.ndim != 2 or len(probabilities) != len(case_ids):
            raise InvalidInputError(f"predictions: {len(case_ids)} case ids but probabilities of shape "
                                    f"{probabilities.shape} (expected ({len(case_ids)}, K))")
        frame = pd.DataFrame(probabilities, columns=probability_columns(probabilities.shape[1]))
        frame.insert(0, CASE_ID, list(case_ids))
        return cls(frame, task=task, n_classes=probabilities.shape[1])

    def _replace(self, frame: pd.DataFrame, index: np.ndarray) -> PredictionTable:
        out = PredictionTable(frame, task=self.task, n_classes=self.n_classes)
        out._set(_labels=None if self._labels is None else self._labels[index],
                 _clusters=None if self._clusters is None else self._clusters[index])
        return out

    def with_cohort(self, cohort_frame: pd.DataFrame) -> PredictionTable:
        """This table with each case's :data:`LABEL` (nullable: unlabelled cases are missing) and, where the cohort
        knows every case's patient, its :data:`CLUSTER`, from a cohort's frame holding every case of the table.
        A single-label task's labels must be class indices."""
        missing = [c for c in (CASE_ID, LABEL) if c not in cohort_frame.columns]
        if missing:
            raise InvalidInputError(f"cohort frame: column(s) {', '.join(map(repr, missing))} missing")
        index = pd.Index(cohort_frame[CASE_ID]).get_indexer(self._frame[CASE_ID])
        if (index < 0).any():
            case = self._frame[CASE_ID].iloc[int(np.flatnonzero(index < 0)[0])]
            raise InvalidInputError(f"predictions: case {case!r} is not in the cohort")
        try:
            labels = pd.array(cohort_frame[LABEL].iloc[index].to_numpy(), dtype="Int64")
        except (TypeError, ValueError) as e:
            raise InvalidInputError("cohort frame: column 'label' must hold class indices (or be empty)") from e
        values = labels.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isnan(values) & ((values < 0) | (values >= self.n_classes))
        if self.task in SINGLE_LABEL and bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(f"cohort frame: case {self.case_ids[row]!r} has label {int(values[row])}, not a "
                                    f"class index in 0..{self.n_classes - 1}")
        clusters = None
        if CLUSTER in cohort_frame.columns and cohort_frame[CLUSTER].notna().all():
            clusters = cohort_frame[CLUSTER].iloc[index].to_numpy()
        out = PredictionTable(self._frame, task=self.task, n_classes=self.n_classes)
        out._set(_labels=labels, _clusters=clusters)
        return out

    def labels(self) -> pd.arrays.IntegerArray | None:
        """``(n,)`` each case's label (missing where unlabelled), or None before :meth:`with_cohort`."""
        return None if self._labels is None else self._labels.copy()

    def clusters(self) -> np.ndarray | None:
        """``(n,)`` each case's patient code (images of one patient share it), or None where not known."""
        return None if self._clusters is None else self._clusters.copy()

    def probabilities(self) -> np.ndarray:
        """``(n, K)`` float64, rows in :attr:`case_ids` order."""
        return self._frame[probability_columns(self.n_classes)].to_numpy(np.float64)

    def probability(self, k: int) -> np.ndarray:
        """``(n,)``: every case's probability of class ``k``."""
        if not 0 <= int(k) < self.n_classes:
            raise InvalidInputError(f"class {k} is not one of the model's {self.n_classes} classes")
        return self._frame[probability_column(int(k))].to_numpy(np.float64)

    def top_class(self) -> np.ndarray:
        """``(n,)``: each case's most probable class."""
        return self.probabilities().argmax(axis=1)


class UncertaintyTable(_Table):
    """One method's per-case uncertainty: ``case_id``, then :func:`uncertainty_columns` (``mean_k``, ``std_k``,
    ``entropy``, ``mutual_information``). :data:`FIGURES` names each figure and its direction."""

    __slots__ = ("method",)
    method: str

    def __init__(self, frame: pd.DataFrame, *, method: str, task: str, n_classes: int) -> None:
        what = f"uncertainty ({method})"
        columns = uncertainty_columns(n_classes)
        frame = _frame_of(frame, columns, what)[[CASE_ID, *columns]]
        _check_probabilities(frame[mean_columns(n_classes)].to_numpy(np.float64), mean_columns(n_classes), what,
                             task in SINGLE_LABEL)
        figures = frame[[*std_columns(n_classes), ENTROPY, MUTUAL_INFORMATION]].to_numpy(np.float64)
        bad = ~np.isfinite(figures) | (figures < 0)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            name = [*std_columns(n_classes), ENTROPY, MUTUAL_INFORMATION][col]
            raise InvalidInputError(f"{what}: row {row}, column {name!r} must be a finite figure >= 0")
        self._set(_frame=frame, task=task, n_classes=int(n_classes), method=method)

    @classmethod
    def of(cls, case_ids: Sequence[str], summary: dict[str, np.ndarray], *, method: str,
           task: str) -> UncertaintyTable:
        """From :func:`explainers.uncertainty.summarise`'s ``mean``/``std`` ``(n, K)``, ``entropy`` and
        ``mutual_information`` ``(n,)``."""
        k = np.asarray(summary["mean"]).shape[1]
        frame = pd.DataFrame(np.column_stack([summary["mean"], summary["std"], summary[ENTROPY],
                                              summary[MUTUAL_INFORMATION]]), columns=uncertainty_columns(k))
        frame.insert(0, CASE_ID, list(case_ids))
        return cls(frame, method=method, task=task, n_classes=k)

    def _replace(self, frame: pd.DataFrame, index: np.ndarray) -> UncertaintyTable:
        return UncertaintyTable(frame, method=self.method, task=self.task, n_classes=self.n_classes)

    def means(self) -> np.ndarray:
        """``(n, K)``: the mean probability of each class over the method's draws."""
        return self._frame[mean_columns(self.n_classes)].to_numpy(np.float64)

    def spreads(self) -> np.ndarray:
        """``(n, K)``: the standard deviation of each class's probability over the draws."""
        return self._frame[std_columns(self.n_classes)].to_numpy(np.float64)

    def figure(self, name: str) -> np.ndarray:
        """``(n,)``: the figure ``name`` (``entropy``, ``mutual_information``, or ``std_k``)."""
        if name in (ENTROPY, MUTUAL_INFORMATION) or name in std_columns(self.n_classes):
            return self._frame[name].to_numpy(np.float64)
        raise InvalidInputError(f"uncertainty figure {name!r} is not one of "
                                f"{[ENTROPY, MUTUAL_INFORMATION, *std_columns(self.n_classes)]}")

    def predictions(self) -> PredictionTable:
        """The mean probabilities as a prediction table (named as the predictions are)."""
        frame = self._frame[[CASE_ID, *mean_columns(self.n_classes)]].rename(
            columns=dict(zip(mean_columns(self.n_classes), probability_columns(self.n_classes))))
        return PredictionTable(frame, task=self.task, n_classes=self.n_classes)
