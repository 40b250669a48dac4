"""Grad-CAM (Selvaraju et al., 2017): channel-weighted layer activations, upsampled to the input.

Computed at the model's ``explain_layer`` (default: its last convolution), then interpolated
(bilinear / trilinear) to the input's spatial size. ``relu`` keeps only evidence for the class.
"""
from __future__ import annotations

from captum.attr import LayerAttribution, LayerGradCam

from explainers.saliency.base import SaliencyMethod

__all__ = ["GradCam"]


class GradCam(SaliencyMethod):
    title = "Grad-CAM"
    citation = "Selvaraju et al., ICCV 2017"
    defaults = {"relu": True}
    uses_layer = True

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        cam = LayerGradCam(scorer, layer).attribute(x, target=target, relu_attributions=params["relu"])
        cam = cam.sum(dim=1, keepdim=True) if cam.shape[1] != 1 else cam
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode=mode), None
