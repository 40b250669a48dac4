"""Saliency methods over Captum: one registry, one batched entry point (:func:`explain`).

Adding a method is adding one module here with a :class:`SaliencyMethod` subclass registered in
``SALIENCY_METHODS`` (its key is the module name).
"""
from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from data_adapters.errors import ExplainerError, UnknownNameError
from data_adapters.preprocessing import prepare_batch
from data_adapters.records import Attribution, ModelHandle
from data_adapters.registry import Registry
from explainers.device import CPU_BATCH, batch_size_for, map_batches, module_device
from explainers.inference import ClassScores
from explainers.saliency.base import SaliencyMethod
from explainers.saliency.grad_cam import GradCam
from explainers.saliency.gradient_shap import GradientShap
from explainers.saliency.guided_grad_cam import GuidedGradCam
from explainers.saliency.integrated_gradients import IntegratedGradients
from explainers.saliency.occlusion import Occlusion
from explainers.saliency.saliency import Saliency
from explainers.saliency.smoothgrad import Smoothgrad

__all__ = ["SALIENCY_METHODS", "SaliencyMethod", "explain", "explain_layer", "resolve_layer", "MSG_TORCHSCRIPT_LAYER",
           "default_methods", "DEFAULT_METHODS"]

#: the methods a page opens with: a layer method beside an input gradient
DEFAULT_METHODS = ("grad_cam", "saliency")

SALIENCY_METHODS: Registry[type[SaliencyMethod]] = Registry("saliency method")
for _cls in (Saliency, IntegratedGradients, Smoothgrad, GradientShap, Occlusion, GradCam, GuidedGradCam):
    SALIENCY_METHODS.register(_cls)

Progress = Callable[[int, int], None]
#: examples per forward pass inside one method call (IG steps, SmoothGrad samples, occlusion windows) on the CPU.
#: Measured on 2 cores (benchmarks/integrated_gradients.py): 50..1000 run within noise of a per-image loop (bigger
#: slightly slower),
#: the CPU being compute-bound; the GPU path sizes batches from free memory instead.
CPU_INTERNAL_BATCH = 64


MSG_TORCHSCRIPT_LAYER = ("model {model} is TorchScript: layer methods (Grad-CAM, Guided Grad-CAM) hook a layer, which "
                         "TorchScript does not allow, whatever explain_layer says; use an input-gradient method "
                         "(saliency, integrated_gradients, ...) or give the model as a state dict with its network "
                         "spec")


def default_methods(*handles: ModelHandle) -> list[str]:
    """The methods to open with for ``handles`` (one version, or the versions shown side by side):
    :data:`DEFAULT_METHODS`, less the layer methods (Grad-CAM family, ``uses_layer``) a TorchScript model cannot
    take, with integrated gradients in their place, so no page opens on an error."""
    if all(h.hookable for h in handles):
        return list(DEFAULT_METHODS)
    kept = [m for m in DEFAULT_METHODS if not SALIENCY_METHODS.get(m).uses_layer]
    return kept + [m for m in ("integrated_gradients",) if m not in kept]


def explain_layer(handle: ModelHandle) -> str:
    """The layer layer-methods hook: the model's declared ``explain_layer``, else its last convolution. A
    TorchScript model has none to offer (hooks need the Python module): said once, with the remedy."""
    if not handle.hookable:
        raise ExplainerError(MSG_TORCHSCRIPT_LAYER.format(model=handle.label))
    if handle.explain_layer:
        return handle.explain_layer
    convs = [n for n, m in handle.module.named_modules()
             if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))]
    if not convs:
        raise ExplainerError(f"model {handle.label} has no convolution; set 'explain_layer' in its model.json")
    return convs[-1]


def resolve_layer(handle: ModelHandle, name: str) -> torch.nn.Module:
    layers = dict(handle.module.named_modules())
    if name not in layers:
        close = difflib.get_close_matches(name, list(layers), n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise UnknownNameError(f"model {handle.label} has no layer {name!r}{hint}")
    return layers[name]


def explain(handle: ModelHandle, images: np.ndarray, case_ids: Sequence[str], method: str,
            target: int | str, params: dict[str, Any] | None = None, *, case_batch: int | None = None,
            progress: Progress | None = None) -> list[Attribution]:
    """Attribute ``target`` for each image ``(N, C, *spatial)`` with ``method``, batched on the model's device.

    Returns one :class:`Attribution` per case, its array ``(C', *spatial)`` float32 with ``C'`` the input's
    channels (or 1 for layer methods). Out-of-memory halves the batch and retries.
    """
    cls = SALIENCY_METHODS.get(method)
    cls.check_model(handle)
    target_index = handle.class_index(target)
    full = cls.params(params)
    if len(images) != len(case_ids):
        raise ExplainerError(f"{len(images)} images but {len(case_ids)} case ids")
    layer = resolve_layer(handle, explain_layer(handle)) if cls.uses_layer else None
    device = module_device(handle.module)
    scorer = ClassScores(handle)
    item_bytes = int(np.prod(handle.preprocessing.input_shape)) * 4 * 64  # activations ~64x the input
    internal = CPU_INTERNAL_BATCH if device.type != "cuda" else batch_size_for(device, item_bytes, cap=4096)
    size = case_batch or max(1, min(CPU_BATCH if device.type != "cuda" else internal, internal // cls.relative_cost))
    method_impl = cls()
    recorded = {**full, **({"layer": explain_layer(handle)} if cls.uses_layer else {})}

    def run(s: slice) -> list[Attribution]:
        start = time.perf_counter()
        x = prepare_batch(handle.preprocessing, images[s], device).requires_grad_(True)
        with torch.enable_grad():
            maps, delta = method_impl.attribute(scorer, x, target_index, layer, full, internal)
        maps = maps.detach().float().cpu().numpy()
        deltas = delta.detach().float().cpu().numpy().reshape(-1) if delta is not None else None
        seconds = (time.perf_counter() - start) / len(maps)
        steps = getattr(method_impl, "steps_used", None)  # per case, where the method chose them (adaptive IG)
        return [Attribution(case_id=cid, model_hash=handle.weights_hash, method=cls.get_name(),
                            params={**recorded, "steps_used": steps[k]} if steps and full.get("n_steps") == 0
                            else recorded,
                            target=target_index, array=np.ascontiguousarray(m), seconds=seconds,
                            convergence_delta=None if deltas is None else float(deltas[k]))
                for k, (cid, m) in enumerate(zip(case_ids[s], maps))]

    return map_batches(run, len(images), size, progress)
