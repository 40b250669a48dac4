"""Do two maps of one case say the same thing? Agreement of two attribution maps, as Case review shows them.

Both maps are reduced to |map| summed over channels (where the evidence is, whatever its sign), on the same grid.
``spearman``: rank correlation of those magnitudes over every pixel or voxel (scipy's ``spearmanr``; 1: the same
ordering, 0: unrelated). ``top_overlap``: intersection over union of the top ``top`` fraction of each (the regions a
reader's eye goes to; 1: the same region). SSIM is not used: it compares local image structure, which attribution
maps of different models need not share even when they point at the same place.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from data_adapters.errors import InvalidInputError

__all__ = ["map_agreement", "TOP_FRACTION"]

#: the share of pixels treated as "where the map points"
TOP_FRACTION = 0.05


def _magnitude(array: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(array, np.float64)).sum(axis=0).ravel()


def map_agreement(a: np.ndarray, b: np.ndarray, *, top: float = TOP_FRACTION) -> dict[str, float]:
    """Agreement of two maps ``(C, *spatial)`` (channels may differ: layer methods give one)."""
    if a.shape[1:] != b.shape[1:]:
        raise InvalidInputError(f"maps of shapes {a.shape} and {b.shape} do not share a grid")
    x, y = _magnitude(a), _magnitude(b)
    if np.array_equal(x, y):
        rho = 1.0
    elif np.ptp(x) == 0 or np.ptp(y) == 0:  # a flat map has no ordering to agree with
        rho = np.nan
    else:
        rho = float(spearmanr(x, y).statistic)
    k = max(1, int(round(top * len(x))))
    top_a = set(np.argsort(-x, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-y, kind="stable")[:k].tolist())
    return {"spearman": rho, "top_overlap": len(top_a & top_b) / len(top_a | top_b)}
