"""Per-cohort counts: who is in the cohort, label balance by group, and figures of them."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from data_adapters.records import Cohort
from data_adapters.tables import CLUSTER
from evaluation.suppression import BoardSuppression, Suppression, board_suppression, suppression

AGE_BANDS = [0, 40, 60, 75, 200]
AGE_LABELS = ["<40", "40-59", "60-74", "75+"]


#: numeric attributes with at most this many distinct values are grouped by value, not banded
FEW_VALUES = 6


def bands(values: pd.Series, name: str) -> tuple[pd.Series, str]:
    """A numeric attribute as stated bands, and how they were made: ``age`` in fixed clinical bands (<40, 40-59,
    60-74, 75+); one with few values by value; any other in quartiles of the cohort (edges given)."""
    present = values.dropna()
    if name == "age":
        return (pd.cut(values, AGE_BANDS, labels=AGE_LABELS, right=False).astype("string"),
                f"{name} in bands {', '.join(AGE_LABELS)}")
    if present.nunique() <= FEW_VALUES:
        return values.astype("string"), f"{name} by value"
    cut = pd.qcut(values, 4, duplicates="drop")
    labels = {iv: f"{iv.left:.4g}–{iv.right:.4g}" for iv in cut.cat.categories}
    return (cut.map(labels).astype("string"),
            f"{name} in quartile bands of this cohort ({', '.join(labels.values())})")


def band_column(name: str) -> str:
    return f"{name}_band"


def numeric_attributes(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("case_id", "label", CLUSTER) and not c.endswith("_band")
            and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def with_bands(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``<attribute>_band`` for every numeric attribute (see :func:`bands`): one group per year of age is 50
    groups, none large enough to judge."""
    out = frame.copy()
    for column in numeric_attributes(frame):
        out[band_column(column)] = bands(frame[column], column)[0]
    return out


def band_notes(frame: pd.DataFrame) -> dict[str, str]:
    """``<attribute>_band`` → how that attribute was banded, for the page or command to state."""
    return {band_column(c): bands(frame[c], c)[1] for c in numeric_attributes(frame)}


def group_columns(cohort: Cohort, max_levels: int = 12) -> list[str]:
    """Attributes worth grouping by: categorical ones with 2 to ``max_levels`` values, and every numeric one as
    its bands (``<attribute>_band``) when that makes two or more groups. An attribute with one value is not
    offered."""
    frame = with_bands(cohort.frame())
    cols = [a for a, kind in cohort.attribute_schema.items()
            if kind == "categorical" and 1 < frame[a].nunique(dropna=True) <= max_levels]
    cols += [band_column(a) for a, kind in cohort.attribute_schema.items()
             if kind == "numeric" and band_column(a) in frame and frame[band_column(a)].nunique(dropna=True) > 1]
    return sorted(cols, key=lambda c: (c != "site", c != "sex"))


def group_counts(cohort: Cohort, by: str | Sequence[str], class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Cases per group: ``n``, cases per label, and for two classes the share of the second (prevalence); with more
    classes the counts per label are the whole story."""
    by = [by] if isinstance(by, str) else list(by)
    frame = with_bands(cohort.frame())
    frame[by] = frame[by].astype("string").fillna("(missing)")
    counts = frame.groupby(by, dropna=False)["label"].value_counts().unstack(fill_value=0)
    names = list(class_names) if class_names else [str(c) for c in counts.columns]
    counts = counts.rename(columns=lambda k: names[int(k)] if int(k) < len(names) else str(k))
    table = counts.copy()
    table.insert(0, "n", frame.groupby(by, dropna=False).size())
    labelled = counts.sum(axis=1)
    if len(names) == 2 and len(counts.columns):
        positive = counts[names[1]] if names[1] in counts else 0
        table["prevalence"] = (positive / labelled.where(labelled > 0)).round(3)
    return table.reset_index()


_DECISIONS: dict[tuple, BoardSuppression] = {}


def board_decision(cohort: Cohort, k: int, *, floor: int | None = None) -> BoardSuppression:
    """The one suppression decision (:func:`evaluation.suppression.board_suppression`) over every table a board can
    open of ``cohort`` at ``k``: its attributes (:func:`group_columns`, numeric ones in bands), totals, margins and
    two-way intersections, of the cohort and of its labelled cases. With ``floor`` (the operator's k) below ``k``,
    what ``floor`` withholds stays withheld. Kept per cohort content and k for the process."""
    k = int(k)
    floor = k if floor is None else min(int(floor), k)
    key = (cohort.content_hash, k, floor)
    if key not in _DECISIONS:
        base = board_decision(cohort, floor) if floor < k else None
        _DECISIONS[key] = board_suppression(with_bands(cohort.frame()), group_columns(cohort), k, base=base)
    return _DECISIONS[key]


def suppressed_counts(table: pd.DataFrame, k: int, hide: Suppression | None = None) -> pd.DataFrame:
    """:func:`group_counts` as a board sees it: every figure of a hidden group shown as ``<k``; ``hide``: the
    decision for this table (:meth:`BoardSuppression.for_table`), else the one-table rule."""
    groups = table.columns[0]
    hidden = (hide or suppression(dict(zip(table[groups].astype(str), table["n"])), k)).hidden
    out = table.astype(object)
    hide = table[groups].astype(str).isin(list(hidden)).to_numpy()
    figures = [c for c in table.columns if c == "n" or c == "prevalence" or pd.api.types.is_numeric_dtype(table[c])]
    out.loc[hide, figures] = f"<{k}"
    return out


def label_balance_figure(cohort: Cohort, by: str, class_names: Sequence[str] | None = None, *,
                         k: int | None = None, hide: Suppression | None = None) -> go.Figure:
    """Cases per group and label, stacked; with ``k`` (or ``hide``), only the groups a board may see
    (:mod:`evaluation.suppression`)."""
    table = group_counts(cohort, by, class_names)
    if k is not None or hide is not None:
        hidden = (hide or suppression(dict(zip(table[by].astype(str), table["n"])), k)).hidden
        table = table[~table[by].astype(str).isin(list(hidden))]
    labels = [c for c in table.columns if c not in (by, "n", "prevalence")]
    long = table.melt(id_vars=[by], value_vars=labels, var_name="label", value_name="cases")
    fig = px.bar(long, x=by, y="cases", color="label", barmode="stack", title=f"Cases by {by} and label")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend_title_text="label")
    return fig


#: the split a cohort's held-out cases carry: what a judgement opens on where a cohort has one
HELD_OUT = "test"


def held_out_split(frame: pd.DataFrame) -> str | None:
    """:data:`HELD_OUT` when ``frame`` (a cohort's frame) has a ``split`` column holding it, else None: versions,
    subgroups and uncertainty are judged on held-out cases by default, never silently on the training data."""
    return HELD_OUT if "split" in frame and (frame["split"] == HELD_OUT).any() else None
