"""Guided Grad-CAM (Selvaraju et al., 2017): guided backpropagation times upsampled Grad-CAM."""
from __future__ import annotations

from captum.attr import GuidedGradCam as CaptumGuidedGradCam

from explainers.saliency.base import SaliencyMethod

__all__ = ["GuidedGradCam"]


class GuidedGradCam(SaliencyMethod):
    title = "Guided Grad-CAM"
    citation = "Selvaraju et al., ICCV 2017"
    uses_layer = True
    relative_cost = 2

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        return CaptumGuidedGradCam(scorer, layer).attribute(x, target=target, interpolate_mode="nearest"), None
