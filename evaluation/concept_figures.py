"""Figures of concept attributions (TCAV)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def tcav_figure(scores: pd.DataFrame) -> go.Figure:
    """Bars: mean TCAV score per concept and layer with its spread over random runs; the random-vs-random
    mean as a grey marker; significant results solid, the rest faded and marked in the hover text."""
    fig = go.Figure()
    for layer, sub in scores.groupby("layer", sort=False):
        fig.add_trace(go.Bar(
            x=sub["concept"], y=sub["score"], name=layer,
            error_y=dict(type="data", array=sub["spread"]),
            marker=dict(opacity=[1.0 if s else 0.35 for s in sub["significant"]]),
            customdata=sub[["p_adjusted", "cav_accuracy", "verdict"]].to_numpy(),
            hovertemplate="%{x} @ " + layer + "<br>TCAV %{y:.2f}<br>adjusted p %{customdata[0]:.2g}"
                          "<br>CAV accuracy %{customdata[1]:.2f}<br>%{customdata[2]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=scores["concept"], y=scores["null_score"], mode="markers", name="random concepts",
                             marker=dict(symbol="line-ew-open", size=28, color="#4a5568", line=dict(width=2)),
                             hovertemplate="random vs random %{y:.2f}<extra></extra>"))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.05], title="TCAV score"),
                      title="TCAV scores (faded: not significant after correction)", height=380,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig
