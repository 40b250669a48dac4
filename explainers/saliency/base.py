"""The shared behaviour of saliency methods (after Captum's Attribution family).

A method turns a batch of preprocessed inputs ``(B, C, *spatial)`` and one target class into maps with the
same spatial shape, ``(B, C', *spatial)`` with ``C'`` equal to ``C`` (input-gradient methods) or 1 (layer
methods, upsampled). Hooks are Captum's, registered per call and removed even after an error.
"""
from __future__ import annotations

import contextlib
import difflib
from typing import Any, ClassVar

import numpy as np
import torch

from data_adapters.errors import ExplainerError, InvalidInputError, UnknownNameError
from data_adapters.records import ModelHandle


class SaliencyMethod:
    """One attribution method. Subclasses set ``title``, ``defaults`` and implement :meth:`compute`."""

    title: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when the method hooks a layer (Grad-CAM family): needs a hookable (non-TorchScript) module
    uses_layer: ClassVar[bool] = False
    #: True when the method draws random numbers: it takes a ``seed``
    randomised: ClassVar[bool] = False
    #: forward passes per case, relative to plain saliency: the app shows progress for slow methods
    relative_cost: ClassVar[int] = 1

    @classmethod
    def get_name(cls) -> str:
        return cls.__module__.rsplit(".", 1)[-1]

    @classmethod
    def params(cls, given: dict[str, Any] | None) -> dict[str, Any]:
        """The defaults overridden by ``given``; an unknown or ill-typed parameter is an error naming it."""
        out = dict(cls.defaults)
        for key, value in (given or {}).items():
            if key not in cls.defaults:
                close = difflib.get_close_matches(key, list(cls.defaults), n=2)
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                raise UnknownNameError(f"{cls.get_name()} has no parameter {key!r}{hint}; "
                                       f"parameters: {', '.join(cls.defaults) or 'none'}")
            kind = type(cls.defaults[key])
            try:
                out[key] = kind(value) if kind is not bool else value in (True, 1, "1", "true", "True")
            except (TypeError, ValueError) as e:
                raise InvalidInputError(f"{cls.get_name()}: parameter {key!r} must be {kind.__name__}, "
                                        f"got {value!r}") from e
        return out

    @classmethod
    def check_model(cls, handle: ModelHandle) -> None:
        if cls.uses_layer and isinstance(handle.module, torch.jit.ScriptModule):
            raise ExplainerError(f"{cls.get_name()} hooks a layer, which TorchScript models do not allow; "
                                 "use an input-gradient method (saliency, integrated_gradients, ...) or load "
                                 "the model as a state dict with its network spec")

    def compute(self, scorer: torch.nn.Module, x: torch.Tensor, target: int, layer: torch.nn.Module | None,
                params: dict[str, Any], internal_batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(maps, convergence_delta or None)`` for the batch ``x``."""
        raise NotImplementedError


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Draws inside are reproducible and leave the global random state as it was."""
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()  # Captum's GradientShap draws baselines with numpy's global generator
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(numpy_state)
