"""Occlusion (Zeiler & Fergus, 2014): the drop in the class score when a window is set to the baseline (zero).

``window`` and ``stride`` are in pixels (voxels) per spatial axis; all channels are occluded together.
"""
from __future__ import annotations

from captum.attr import Occlusion as CaptumOcclusion

from explainers.saliency.base import SaliencyMethod


class Occlusion(SaliencyMethod):
    title = "Occlusion"
    citation = "Zeiler & Fergus, ECCV 2014"
    defaults = {"window": 16, "stride": 8}
    relative_cost = 100

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        c, spatial = x.shape[1], x.ndim - 2
        attr = CaptumOcclusion(scorer).attribute(
            x, target=target, sliding_window_shapes=(c, *[params["window"]] * spatial),
            strides=(c, *[params["stride"]] * spatial),
            perturbations_per_eval=max(1, internal_batch_size // max(1, len(x))))
        return attr, None
