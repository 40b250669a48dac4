"""GradientSHAP (Lundberg & Lee, 2017): expected gradients over random points between noisy inputs and baselines.

Baselines: the all-zero input and the case's own mean intensity per channel (never the batch's: a case's map
must not depend on which other cases it was computed with).
"""
from __future__ import annotations

import torch
from captum.attr import GradientShap as CaptumGradientShap

from explainers.saliency.base import SaliencyMethod

__all__ = ["GradientShap"]


class GradientShap(SaliencyMethod):
    title = "GradientSHAP"
    citation = "Lundberg & Lee, NeurIPS 2017"
    defaults = {"samples": 16, "noise": 0.1, "seed": 0}
    randomised = True
    relative_cost = 16
    #: each sample is a noisy copy of the input held at once (and a forward and backward pass)
    maxima = {"samples": (1000, "each sample is a noisy copy of the input held in memory and a forward and backward "
                                "pass")}

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        # called one case at a time (randomised): x is (1, C, *spatial) and the baselines are that case's own
        spatial = tuple(range(2, x.ndim))
        baselines = torch.cat([torch.zeros_like(x), x.mean(dim=spatial, keepdim=True).expand_as(x)])
        attr, delta = CaptumGradientShap(scorer).attribute(
            x, baselines=baselines, target=target, n_samples=params["samples"], stdevs=params["noise"],
            return_convergence_delta=True)
        return attr, delta.reshape(len(x), -1).mean(dim=1)
