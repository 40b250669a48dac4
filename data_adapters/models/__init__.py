"""Model loaders: a folder with ``model.json`` (or the json itself) to a :class:`ModelHandle`.

``model.json`` declares the format (a key of ``MODEL_LOADERS``: ``state_dict`` or ``torchscript``), the
weights file, the task and class names, the preprocessing, an optional layer for layer methods
(Grad-CAM), and the model card. Example::

    {"name": "lesion-detector", "version": "v2", "format": "state_dict", "weights": "weights.pt",
     "network": {"name": "DenseNet", "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 1}},
     "task": "binary", "class_names": ["no lesion", "lesion"],
     "preprocessing": {"in_channels": 1, "spatial_size": [128, 128], "intensity": "zscore"},
     (optional in preprocessing: "resize": true, or "spacing": [mm, ...] to resample images of other sizes onto
     the model's grid; "intensity": "range" with "intensity_range": [a_min, a_max, b_min, b_max])
     "explain_layer": "features.denseblock3",
     "card": {"intended_use": "...", "training_data": "...", "limitations": ["..."]}}
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from data_adapters.errors import GlassboxError, InvalidInputError, ModelError
from data_adapters.hashing import file_hash, json_hash
from data_adapters.models.base import ModelLoader
from data_adapters.models.state_dict import StateDictLoader, monai_network
from data_adapters.models.torchscript import TorchscriptLoader
from data_adapters.records import ModelCard, ModelHandle, Preprocessing
from data_adapters.registry import Registry

__all__ = ["MODEL_LOADERS", "load_model", "spec_path", "monai_network", "write_spec"]

MODEL_LOADERS: Registry[type[ModelLoader]] = Registry("model format")
MODEL_LOADERS.register(StateDictLoader)
MODEL_LOADERS.register(TorchscriptLoader)

SPEC_NAME = "model.json"
_ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.SELU,
                torch.nn.Hardtanh, torch.nn.SiLU, torch.nn.Mish)


def spec_path(path: str | Path) -> Path:
    """The ``model.json`` for a model given as its folder or as the json file."""
    path = Path(path)
    return path / SPEC_NAME if path.is_dir() else path


def write_spec(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / SPEC_NAME
    out.write_text(json.dumps(spec, indent=2) + "\n")
    return out


def _field(spec: dict, key: str, where: Path):
    if key not in spec:
        raise ModelError(f"{where}: missing field {key!r}")
    return spec[key]


def preprocessing_from(fields: dict) -> Preprocessing:
    """A :class:`Preprocessing` from its JSON fields (lists become tuples)."""
    if not isinstance(fields, dict):
        raise InvalidInputError(f"preprocessing must be an object, got {type(fields).__name__}")
    known = {f.name for f in dataclasses.fields(Preprocessing)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InvalidInputError(f"preprocessing has unknown field(s) {unknown}; known: {sorted(known)}")
    tuples = {k: tuple(float(v) for v in fields[k]) if k != "spatial_size" else tuple(int(v) for v in fields[k])
              for k in ("spatial_size", "spacing", "intensity_range") if fields.get(k) is not None}
    return Preprocessing(**{**fields, **tuples})


def load_model(path: str | Path) -> ModelHandle:
    """Load a model described by ``model.json``; the module is in eval mode with frozen parameters."""
    where = spec_path(path)
    if not where.is_file():
        raise ModelError(f"{path}: no {SPEC_NAME} here; a model is a folder with {SPEC_NAME} and its weights")
    try:
        spec = json.loads(where.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{where}: not valid JSON ({e})") from e
    loader = MODEL_LOADERS.get(str(_field(spec, "format", where)))
    module, weights = loader().load(spec, where.parent)
    try:
        pre = preprocessing_from(_field(spec, "preprocessing", where))
        card = spec.get("card", {})
        handle = ModelHandle(
            name=str(_field(spec, "name", where)), version=str(spec.get("version", "unversioned")),
            module=module, preprocessing=pre, class_names=tuple(map(str, _field(spec, "class_names", where))),
            task=str(_field(spec, "task", where)), weights_hash=json_hash(file_hash(weights), spec),
            card=ModelCard(intended_use=card.get("intended_use", "not stated"),
                           training_data=card.get("training_data", "not stated"),
                           limitations=tuple(card.get("limitations", ())),
                           extra={k: str(v) for k, v in card.items()
                                  if k not in ("intended_use", "training_data", "limitations")}),
            source=str(where.parent), explain_layer=spec.get("explain_layer"),
        )
    except (TypeError, InvalidInputError) as e:
        raise ModelError(f"{where}: {e}") from e
    _prepare(handle)
    return handle


def _prepare(handle: ModelHandle) -> None:
    """Eval mode, frozen weights, no in-place activations (they break gradient hooks); check output width."""
    module = handle.module
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if not isinstance(module, torch.jit.ScriptModule):
        for m in module.modules():
            if isinstance(m, _ACTIVATIONS) and getattr(m, "inplace", False):
                m.inplace = False
    expected = 1 if handle.task == "binary" else handle.n_classes
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *handle.preprocessing.input_shape))
    except GlassboxError:
        raise
    except Exception as e:
        raise ModelError(f"{handle.source}: model fails on an input of its declared shape "
                         f"{handle.preprocessing.input_shape}: {e}") from e
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{handle.source}: a {handle.task} model with classes {handle.class_names} must output "
                         f"(batch, {expected}) logits, got {shape}")
