"""A command's case selection, grouping and board view, resolved against a cohort (name resolution for
``--where``, ``--by`` and ``--board``): each bad name refused with the cohort's own names and a did-you-mean, so the
command line only parses and prints."""
from __future__ import annotations

import difflib
from collections.abc import Sequence

import pandas as pd

from data_adapters.errors import InvalidInputError
from evaluation.cohort_summary import band_column, band_notes, board_decision
from evaluation.suppression import MISSING

__all__ = ["select_where", "group_by", "board_where", "board_view"]


def select_where(frame: pd.DataFrame, clauses: Sequence[str], attributes: Sequence[str]) -> pd.DataFrame:
    """The rows of ``frame`` matching every ``ATTRIBUTE=VALUE`` clause (``--where``); an unknown attribute or a
    value no row has is refused, naming the cohort's attributes or the attribute's values."""
    for clause in clauses:
        name, sep, value = clause.partition("=")
        if not sep or name not in attributes:
            raise InvalidInputError(f"--where {clause!r}: expected ATTRIBUTE=VALUE with an attribute of the cohort "
                                    f"({', '.join(attributes)})")
        present = sorted(frame[name].dropna().astype(str).unique())
        if value not in present:
            close = difflib.get_close_matches(value, present, n=1)
            raise InvalidInputError(f"--where {clause!r}: no labelled case has {name} {value!r}; its values are "
                                    f"{', '.join(present)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        frame = frame[frame[name].astype(str) == value]
    return frame


def group_by(frame: pd.DataFrame, text: str, attributes: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--by a,b`` as the columns to group by, and notes: a numeric attribute is grouped in its stated bands
    (``frame`` from :func:`evaluation.cohort_summary.with_bands`)."""
    notes, by = [], []
    explained = band_notes(frame)
    for name in [b.strip() for b in text.split(",") if b.strip()]:
        if band_column(name) in explained:
            by.append(band_column(name))
            notes.append(f"{name} is numeric: grouped as {explained[band_column(name)]}")
        elif name in attributes or name in explained:
            by.append(name)
        else:
            close = difflib.get_close_matches(name, list(attributes), n=1)
            raise InvalidInputError(f"--by {name!r} is not an attribute of the cohort ({', '.join(attributes)})"
                                    + (f"; did you mean {close[0]!r}?" if close else ""))
    if not by:
        raise InvalidInputError("--by needs at least one attribute")
    return by, notes


def board_where(clauses: Sequence[str], decision) -> dict[str, set[str]]:
    """``--where`` as the board's tables see it (attribute → values), refused for an attribute the board's tables
    do not group by (a board selects cases only as its tables group them) and for one given twice."""
    where: dict[str, set[str]] = {}
    for clause in clauses:
        name, _, value = clause.partition("=")
        if not decision.covers([name]):
            raise InvalidInputError(f"--where {clause!r}: with --board, cases can be selected only by an attribute "
                                    f"the board's tables group by ({', '.join(decision.attributes)})")
        where.setdefault(name, set()).add(value)
    if any(len(v) > 1 for v in where.values()):
        raise InvalidInputError("--where: give each attribute once with --board")
    return where


def board_view(cohort, k: int, frame: pd.DataFrame, by: Sequence[str], clauses: Sequence[str]):
    """What a board view at ``k`` hides of the table of ``frame``'s cases grouped by ``by``: the one decision over
    every board table of the cohort (:func:`evaluation.cohort_summary.board_decision`), as an
    :class:`evaluation.suppression.Suppression`."""
    decision = board_decision(cohort, k)
    where = board_where(clauses, decision)
    by = list(by)
    if not decision.covers(by):
        raise InvalidInputError(f"--by {','.join(by)}: with --board, group by the board's attributes "
                                f"({', '.join(decision.attributes)})")
    keys = frame[by].astype("string").fillna(MISSING).astype(str)
    sizes = keys.agg(" · ".join, axis=1).value_counts().to_dict() if by else {}
    return decision.for_table({"overall": len(frame), **sizes}, by, where=where, labelled=True)
