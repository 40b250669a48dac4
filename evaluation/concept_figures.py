"""Figures and table layout of concept attributions (TCAV)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["TABLE_COLUMNS", "tcav_figure"]

#: the columns the Concepts page shows, in order (the download keeps every column)
TABLE_COLUMNS = ("concept", "layer", "significant", "verdict", "sensitivity", "null_sensitivity", "effect",
                 "effect_lo", "effect_hi", "p_value", "p_adjusted", "cav_accuracy", "score", "null_score", "runs",
                 "references", "causal_check", "causal_shift", "causal_lo", "causal_hi", "agreement")


def tcav_figure(scores: pd.DataFrame) -> go.Figure:
    """Bars: each concept's sensitivity (mean cosine between the class gradient and its CAV, the tested statistic)
    minus the reference concepts' mean, with its interval, per layer; significant results solid, the rest faded;
    the TCAV score and the causal check, where there is one, in the hover text."""
    fig = go.Figure()
    for layer, sub in scores.groupby("layer", sort=False):
        causal = [f"{a}" if isinstance(a, str) and a else "no causal check" for a in sub.get("agreement", [""] * len(sub))]
        fig.add_trace(go.Bar(
            x=sub["concept"], y=sub["effect"], name=layer,
            error_y=dict(type="data", symmetric=False, array=sub["effect_hi"] - sub["effect"],
                         arrayminus=sub["effect"] - sub["effect_lo"]),
            marker=dict(opacity=[1.0 if s else 0.35 for s in sub["significant"]]),
            customdata=list(zip(sub["p_adjusted"], sub["cav_accuracy"], sub["verdict"], sub["score"],
                                sub["null_score"], causal)),
            hovertemplate="%{x} @ " + layer + "<br>sensitivity − reference %{y:+.3f}<br>adjusted p %{customdata[0]:.2g}"
                          "<br>CAV accuracy %{customdata[1]:.2f}<br>TCAV %{customdata[3]:.2f} (reference "
                          "%{customdata[4]:.2f})<br>%{customdata[2]}<br>%{customdata[5]}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#4a5568", width=1))
    fig.update_layout(barmode="group", yaxis=dict(title="sensitivity minus reference concepts"),
                      title="Concept sensitivity over reference concepts (faded: not significant after correction)",
                      height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig
