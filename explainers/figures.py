"""Figures of one case: the image with window/level, an attribution overlay and the ground-truth outline."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

COLORMAPS = ("Inferno", "Jet", "Viridis", "Hot", "RdBu_r")


def window_image(image: np.ndarray, window: float, level: float) -> np.ndarray:
    """Map intensities to display 0..1: ``level`` is the centre, ``window`` the width (same units as the image)."""
    low = level - window / 2
    return np.clip((image - low) / max(window, 1e-6), 0.0, 1.0)


def overlay_values(attribution: np.ndarray, signed: bool) -> tuple[np.ndarray, float, float]:
    """The map scaled to its 99th percentile of magnitude; returns values and colour range."""
    values = attribution if signed else np.abs(attribution)
    scale = float(np.percentile(np.abs(values), 99)) or 1.0
    values = np.clip(values / scale, -1.0, 1.0)
    return values, (-1.0 if signed else 0.0), 1.0


def case_figure(image: np.ndarray, *, window: float = 1.0, level: float = 0.5, attribution: np.ndarray | None = None,
                opacity: float = 0.5, colormap: str = "Inferno", signed: bool = False, mask: np.ndarray | None = None,
                title: str = "", height: int = 340) -> go.Figure:
    """``image`` and ``attribution`` are 2D ``(H, W)``; ``mask`` is a 2D boolean outline to draw."""
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=window_image(image, window, level), colorscale="gray", zmin=0, zmax=1,
                             showscale=False, hovertemplate="x %{x}, y %{y}<br>display %{z:.2f}<extra></extra>"))
    if attribution is not None and opacity > 0:
        values, zmin, zmax = overlay_values(attribution, signed)
        colorscale = "RdBu_r" if signed and colormap not in ("RdBu_r",) else colormap
        shown = np.where(np.abs(values) < 0.05, np.nan, values)  # let the image show through weak evidence
        fig.add_trace(go.Heatmap(z=shown, colorscale=colorscale, zmin=zmin, zmax=zmax, opacity=opacity,
                                 colorbar=dict(title="attr.", thickness=10, len=0.8),
                                 hovertemplate="x %{x}, y %{y}<br>attribution %{z:.2f}<extra></extra>"))
    if mask is not None and mask.any():
        fig.add_trace(go.Contour(z=mask.astype(float), contours=dict(start=0.5, end=0.5, coloring="none"),
                                 line=dict(color="#00e5ff", width=2), showscale=False, hoverinfo="skip",
                                 name="ground truth"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, showlegend=False,
                      margin=dict(l=5, r=5, t=35 if title else 5, b=5), plot_bgcolor="rgba(0,0,0,0)")
    return fig


#: CT presets (center, width) in Hounsfield units
CT_WINDOWS = {"lung": (-600.0, 1500.0), "soft tissue": (40.0, 400.0), "bone": (400.0, 1800.0), "brain": (40.0, 80.0)}


def display_windows(array: np.ndarray, file_window: tuple[float, float] | None = None) -> dict[str, tuple[float, float]]:
    """Named (center, width) choices for an image: the file's own window, the full range, and the CT presets
    when the values look like Hounsfield units (air near -1000)."""
    lo, hi = float(np.min(array)), float(np.max(array))
    windows = {}
    if file_window:
        windows["from file"] = file_window
    windows["full range"] = ((lo + hi) / 2, max(hi - lo, 1e-6))
    if lo < -500 and hi > 100:
        windows.update(CT_WINDOWS)
    return windows
