"""SmoothGrad (Smilkov et al., 2017): gradients averaged over noisy copies of the input (Captum NoiseTunnel).

``noise`` is the standard deviation of the Gaussian noise in the model's preprocessed units.
"""
from __future__ import annotations

from captum.attr import NoiseTunnel, Saliency

from explainers.saliency.base import SaliencyMethod

__all__ = ["Smoothgrad"]


class Smoothgrad(SaliencyMethod):
    title = "SmoothGrad"
    citation = "Smilkov et al., arXiv:1706.03825, 2017"
    defaults = {"samples": 16, "noise": 0.15, "seed": 0}
    randomised = True
    relative_cost = 16
    #: each sample is a noisy copy of the input held at once (and a forward and backward pass)
    maxima = {"samples": (1000, "each sample is a noisy copy of the input held in memory and a forward and backward "
                                "pass")}

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        attr = NoiseTunnel(Saliency(scorer)).attribute(
            x, target=target, nt_type="smoothgrad", nt_samples=params["samples"], stdevs=params["noise"],
            nt_samples_batch_size=max(1, internal_batch_size // max(1, len(x))), abs=False)
        return attr, None
