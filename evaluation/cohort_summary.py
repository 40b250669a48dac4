"""Per-cohort counts: who is in the cohort, label balance by group, and figures of them."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from data_adapters.records import Cohort

AGE_BANDS = [0, 40, 60, 75, 200]
AGE_LABELS = ["<40", "40-59", "60-74", "75+"]


def with_bands(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``age_band`` when there is a numeric ``age`` column."""
    if "age" in frame and pd.api.types.is_numeric_dtype(frame["age"]):
        frame = frame.assign(age_band=pd.cut(frame["age"], AGE_BANDS, labels=AGE_LABELS, right=False).astype(str))
    return frame


def group_columns(cohort: Cohort, max_levels: int = 12) -> list[str]:
    """Attributes worth grouping by: categorical ones with few levels, plus ``age_band``."""
    frame = cohort.frame()
    cols = [a for a, kind in cohort.attribute_schema.items()
            if kind == "categorical" and 1 < frame[a].nunique(dropna=True) <= max_levels]
    if cohort.attribute_schema.get("age") == "numeric":
        cols.append("age_band")
    return sorted(cols, key=lambda c: (c != "site", c != "sex"))


def group_counts(cohort: Cohort, by: str | Sequence[str], class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Cases per group: ``n``, cases per label, and the share of the last class (prevalence)."""
    by = [by] if isinstance(by, str) else list(by)
    frame = with_bands(cohort.frame())
    frame[by] = frame[by].astype("string").fillna("(missing)")
    counts = frame.groupby(by, dropna=False)["label"].value_counts().unstack(fill_value=0)
    names = list(class_names) if class_names else [str(c) for c in counts.columns]
    counts = counts.rename(columns=lambda k: names[int(k)] if int(k) < len(names) else str(k))
    table = counts.copy()
    table.insert(0, "n", frame.groupby(by, dropna=False).size())
    labelled = counts.sum(axis=1)
    if len(counts.columns):
        table["prevalence"] = (counts.iloc[:, -1] / labelled.where(labelled > 0)).round(3)
    return table.reset_index()


def label_balance_figure(cohort: Cohort, by: str, class_names: Sequence[str] | None = None) -> go.Figure:
    table = group_counts(cohort, by, class_names)
    labels = [c for c in table.columns if c not in (by, "n", "prevalence")]
    long = table.melt(id_vars=[by], value_vars=labels, var_name="label", value_name="cases")
    fig = px.bar(long, x=by, y="cases", color="label", barmode="stack", title=f"Cases by {by} and label")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend_title_text="label")
    return fig
