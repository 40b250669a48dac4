"""Figures of cohort statistics, each a pure function returning a plotly Figure."""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn.metrics import roc_curve

from data_adapters.tables import OUTCOME, SCORE
from evaluation.calibration import reliability_table
from evaluation.metrics import higher_is_better

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=360)

#: the tags Plotly renders as markup that data must never carry: a link (phishing) or styled text (spoofing)
_MARKUP = re.compile(r"<(/?)(a|span)\b", re.IGNORECASE)


def plain_figure(fig: go.Figure) -> go.Figure:
    """``fig`` with every string that could come from a file (group, class, case and concept names in trace names,
    categories, hover text and titles) unable to render a link or styled text: ``<a`` and ``<span`` are escaped
    wherever they occur. Glassbox's own figure code uses neither, so nothing it draws changes. Every page and the
    report draw through this."""
    def clean(value):
        if isinstance(value, str):
            return _MARKUP.sub(lambda m: "&lt;" + m.group(1) + m.group(2), value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clean(v) for v in value)
        if isinstance(value, np.ndarray) and value.dtype == object:
            return np.array([clean(v) for v in value.ravel()], dtype=object).reshape(value.shape)
        return value

    return go.Figure(clean(fig.to_dict()))


def forest_plot(table: pd.DataFrame, metric: str, *, title: str | None = None) -> go.Figure:
    """One row per group: the estimate and its interval; the overall estimate as a dashed line."""
    rows = table[table["group"] != "overall"].dropna(subset=[metric])
    overall = table.loc[table["group"] == "overall", metric]
    fig = go.Figure(go.Scatter(
        x=rows[metric], y=rows["group"], mode="markers",
        marker=dict(size=9, color=np.where(rows["small"], "#a0aec0", "#2b6cb0")),
        error_x=dict(type="data", symmetric=False, array=rows[f"{metric}_hi"] - rows[metric],
                     arrayminus=rows[metric] - rows[f"{metric}_lo"]),
        customdata=np.column_stack([rows["n"], rows["events"] if "events" in rows else rows["n"] * np.nan]),
        hovertemplate="%{y}: %{x:.3f}<br>n=%{customdata[0]}"
                      + (", events=%{customdata[1]}" if "events" in rows else "") + "<extra></extra>"))
    if len(overall) and pd.notna(overall.iloc[0]):
        fig.add_vline(x=float(overall.iloc[0]), line_dash="dash", line_color="#718096",
                      annotation_text="overall", annotation_position="top")
    fig.update_layout(title=title or f"{metric.replace('_', ' ')} by group (95% CI; grey: too small to judge)",
                      yaxis=dict(autorange="reversed"), **{**_LAYOUT, "height": 120 + 36 * len(rows)})
    return fig


#: most points drawn per ROC curve (the browser draws every point it is sent)
ROC_POINTS = 500


def roc_by_group(frame: pd.DataFrame, by: str) -> go.Figure:
    """ROC curve per group of ``by`` (groups with both classes), from columns ``y`` and ``p``."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#a0aec0"),
                             showlegend=False, hoverinfo="skip"))
    for name, sub in frame.groupby(by, observed=True, sort=True):
        if sub[OUTCOME].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(sub[OUTCOME], sub[SCORE])
        if len(fpr) > ROC_POINTS:  # a million cases: the polyline at ROC_POINTS false-positive rates, not every vertex
            grid = np.unique(np.concatenate([np.linspace(0, 1, ROC_POINTS), fpr[:1], fpr[-1:]]))
            fpr, tpr = grid, np.interp(grid, fpr, tpr)
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (n={len(sub)})"))
    fig.update_layout(title=f"ROC by {by}", xaxis_title="1 - specificity", yaxis_title="sensitivity", **_LAYOUT)
    return fig


def reliability_diagram(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, bins: int = 10,
                        title: str = "Reliability") -> go.Figure:
    """``curves``: name → (y, p). Observed frequency against mean predicted probability per bin."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#a0aec0"),
                             name="perfect", hoverinfo="skip"))
    for name, (y, p) in curves.items():
        t = reliability_table(y, p, bins)
        fig.add_trace(go.Scatter(x=t["predicted"], y=t["observed"], mode="lines+markers", name=name,
                                 customdata=t["n"], hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}"
                                                                  "<br>n=%{customdata}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="mean predicted probability", yaxis_title="observed frequency",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], **_LAYOUT)
    return fig


def risk_coverage_figure(curve: pd.DataFrame, refer_fraction: float | None = None) -> go.Figure:
    fig = go.Figure(go.Scatter(x=curve["coverage"], y=curve["accuracy"], mode="lines", name="kept cases",
                               hovertemplate="coverage %{x:.2f}<br>accuracy %{y:.3f}<extra></extra>"))
    if refer_fraction is not None:
        fig.add_vline(x=1 - refer_fraction, line_dash="dash", line_color="#c05621",
                      annotation_text=f"refer {refer_fraction:.0%}")
    fig.update_layout(title="Risk-coverage: accuracy when the most uncertain cases are referred",
                      xaxis_title="coverage (fraction decided by the model)", yaxis_title="accuracy on kept cases",
                      **_LAYOUT)
    return fig


def uncertainty_by_group_figure(table: pd.DataFrame, measure: str) -> go.Figure:
    fig = go.Figure(go.Bar(x=table["group"], y=table["mean"],
                           error_y=dict(type="data", symmetric=False, array=table["mean_hi"] - table["mean"],
                                        arrayminus=table["mean"] - table["mean_lo"]),
                           customdata=table["n"], hovertemplate="%{x}: %{y:.3f} (n=%{customdata})<extra></extra>"))
    fig.update_layout(title=f"Mean {measure.replace('_', ' ')} by group (95% CI)", yaxis_title=measure, **_LAYOUT)
    return fig


def confusion_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """A confusion table (rows true class, columns top class) as a heatmap of row shares, counts written in."""
    counts = table.to_numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(z=share, x=[c.removeprefix("predicted ") for c in table.columns],
                               y=[r.removeprefix("true ") for r in table.index], colorscale="Blues", zmin=0, zmax=1,
                               text=counts, texttemplate="%{text}", colorbar=dict(title="row share", thickness=10),
                               hovertemplate="true %{y}, top class %{x}: %{text} (%{z:.0%} of the row)"
                                             "<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="true class")
    fig.update_xaxes(title="top class")
    fig.update_layout(title=title, **{**_LAYOUT, "height": max(300, 60 + 34 * len(table))})
    return fig


def delta_forest(table: pd.DataFrame, metric: str) -> go.Figure:
    """Candidate − baseline per group for one metric: the delta and its paired 95% interval, zero and −margin
    marked (where the metric's registry entry says lower is better, Brier and ECE, +margin instead)."""
    rows = table[table["metric"] == metric].dropna(subset=["delta"])
    colours = {"not worse (shown)": "#2f855a", "worse": "#c53030", "not shown": "#b7791f"}
    fig = go.Figure(go.Scatter(
        x=rows["delta"], y=rows["group"], mode="markers",
        marker=dict(size=9, color=[colours.get(v, "#a0aec0") for v in rows["verdict"]]),
        error_x=dict(type="data", symmetric=False, array=rows["delta_hi"] - rows["delta"],
                     arrayminus=rows["delta"] - rows["delta_lo"]),
        customdata=np.column_stack([rows["n"], rows["verdict"]]),
        hovertemplate="%{y}: %{x:+.3f}<br>n=%{customdata[0]} · %{customdata[1]}<extra></extra>"))
    fig.add_vline(x=0, line_color="#718096")
    if len(rows):
        margin = float(rows["margin"].iloc[0])
        worse = -margin if higher_is_better(metric) else margin
        fig.add_vline(x=worse, line_dash="dash", line_color="#c53030", annotation_text="margin",
                      annotation_position="top")
    fig.update_layout(title=f"{metric.replace('_', ' ')}: candidate − baseline (paired 95% CI)",
                      yaxis=dict(autorange="reversed"), **{**_LAYOUT, "height": 140 + 36 * len(rows)})
    return fig


FLIP_COLOURS = {"fixed": "#2f855a", "broken": "#c53030", "still wrong": "#b7791f", "both right": "#a0aec0"}


def flip_scatter(changes: pd.DataFrame, baseline: str, candidate: str) -> go.Figure:
    """Each case's probability under the baseline against the candidate, coloured by what changed."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#cbd5e0"),
                             showlegend=False, hoverinfo="skip"))
    for kind, colour in FLIP_COLOURS.items():
        sub = changes[changes["change"] == kind]
        fig.add_trace(go.Scatter(x=sub["p_baseline"], y=sub["p_candidate"], mode="markers", name=f"{kind} ({len(sub)})",
                                 marker=dict(color=colour, size=7 if kind != "both right" else 5),
                                 text=sub["case_id"], hovertemplate="%{text}: %{x:.3f} → %{y:.3f}<extra></extra>"))
    fig.update_layout(title="Probability per case", xaxis_title=baseline, yaxis_title=candidate, **_LAYOUT)
    return fig


def agreement_figure(table: pd.DataFrame, by: str | None) -> go.Figure:
    """Distribution of map agreement (rank correlation of |map|) over cases, per group."""
    fig = go.Figure()
    groups = [("all", table)] if not by or by not in table else list(table.groupby(by, observed=True))
    for name, sub in groups:
        fig.add_trace(go.Box(y=sub["spearman"], name=str(name), boxpoints="all", jitter=0.4, text=sub["case_id"],
                             hovertemplate="%{text}: %{y:.2f}<extra></extra>"))
    fig.update_layout(title="Agreement between the versions' maps (Spearman of |map|)", yaxis=dict(range=[-1, 1]),
                      showlegend=False, **_LAYOUT)
    return fig
