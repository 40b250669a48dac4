"""Vanilla gradient (Simonyan et al., 2014, "Deep inside convolutional networks"), signed."""
from __future__ import annotations

from captum.attr import Saliency as CaptumSaliency

from explainers.saliency.base import SaliencyMethod

__all__ = ["Saliency"]


class Saliency(SaliencyMethod):
    title = "Saliency (gradient)"
    citation = "Simonyan, Vedaldi & Zisserman, ICLR workshop 2014"

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        return CaptumSaliency(scorer).attribute(x, target=target, abs=False), None
