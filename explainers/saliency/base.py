"""The shared behaviour of saliency methods (after Captum's Attribution family).

A method turns a batch of preprocessed inputs ``(B, C, *spatial)`` and one target class into maps with the
same spatial shape, ``(B, C', *spatial)`` with ``C'`` equal to ``C`` (input-gradient methods) or 1 (layer
methods, upsampled). Hooks are Captum's, registered per call and removed even after an error.
"""
from __future__ import annotations

import difflib
from typing import Any, ClassVar

import torch

from data_adapters.errors import ExplainerError, InvalidInputError, UnknownNameError
from data_adapters.records import ModelHandle
from explainers.seeding import case_seed, seeded


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

    #: integer parameters where 0 has a meaning of its own (integrated gradients: ``n_steps=0`` chooses per case)
    zero_means: tuple[str, ...] = ()
    #: the largest value of an integer parameter whose memory or time grows with it, and why (others: 100000)
    maxima: ClassVar[dict[str, tuple[int, str]]] = {}

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
            except (TypeError, ValueError, OverflowError) as e:
                raise InvalidInputError(f"{cls.get_name()}: parameter {key!r} must be {kind.__name__}, "
                                        f"got {value!r}") from e
            # counts (steps, samples, windows) are positive, 0 meaning "the default" where the default is 0;
            # amounts (noise) are finite and non-negative; seeds are any non-negative integer
            floor = 0 if key == "seed" or cls.defaults[key] == 0 or key in cls.zero_means else 1
            high, why = cls.maxima.get(key, (100_000, ""))
            if kind is int and not floor <= out[key] <= high:
                raise InvalidInputError(f"{cls.get_name()}: parameter {key!r} must be an integer from {floor} to "
                                        f"{high}, got {value!r}" + (f" ({why})" if why else ""))
            if kind is float and not (0.0 <= out[key] < float("inf")):
                raise InvalidInputError(f"{cls.get_name()}: parameter {key!r} must be a finite number ≥ 0, "
                                        f"got {value!r}")
        return out

    @classmethod
    def check_model(cls, handle: ModelHandle) -> None:
        if cls.uses_layer and not handle.hookable:
            from explainers.saliency import MSG_TORCHSCRIPT_LAYER
            raise ExplainerError(MSG_TORCHSCRIPT_LAYER.format(model=handle.label))

    def compute(self, scorer: torch.nn.Module, x: torch.Tensor, target: int, layer: torch.nn.Module | None,
                params: dict[str, Any], internal_batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(maps, convergence_delta or None)`` for the batch ``x``. Each case's map must depend on that
        case alone (no statistics across the batch); randomised methods are called one case at a time with the
        global generators seeded from the case (see :meth:`attribute`)."""
        raise NotImplementedError

    def attribute(self, scorer: torch.nn.Module, x: torch.Tensor, target: int, layer: torch.nn.Module | None,
                  params: dict[str, Any], internal_batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`compute` over the batch; for randomised methods, case by case under a seed made of ``seed`` and
        the case's content, so that a case's map never depends on its batch."""
        if not self.randomised:
            return self.compute(scorer, x, target, layer, params, internal_batch_size)
        maps, deltas = [], []
        for i in range(len(x)):
            with seeded(case_seed(x[i], params["seed"]), x.device):
                m, d = self.compute(scorer, x[i:i + 1], target, layer, params, internal_batch_size)
            maps.append(m)
            deltas.append(d)
        return torch.cat(maps), (torch.cat(deltas) if deltas[0] is not None else None)
