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
import difflib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from data_adapters.errors import GlassboxError, InvalidInputError, ModelError
from data_adapters.hashing import file_hash, json_hash
from data_adapters.models.base import ModelLoader
from data_adapters.models.monai_bundle import (
    MSG_UNTRUSTED,
    MonaiBundleLoader,
    bundle_spec,
    is_bundle,
    trusted,
)
from data_adapters.models.state_dict import StateDictLoader, monai_network
from data_adapters.models.torchscript import TorchscriptLoader
from data_adapters.records import ModelCard, ModelHandle, Preprocessing
from data_adapters.registry import Registry
from data_adapters.schema import MODEL_SPEC, PREPROCESSING, Field, read_json

__all__ = ["MODEL_LOADERS", "load_model", "monai_network", "read_spec", "spec_path", "write_spec", "SPEC_NAME"]

MODEL_LOADERS: Registry[type[ModelLoader]] = Registry("model format")
MODEL_LOADERS.register(StateDictLoader)
MODEL_LOADERS.register(TorchscriptLoader)
MODEL_LOADERS.register(MonaiBundleLoader)

SPEC_NAME = "model.json"
_ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.SELU,
                torch.nn.Hardtanh, torch.nn.SiLU, torch.nn.Mish)


def spec_path(path: str | Path) -> Path:
    """The file that describes a model given as its folder or as that file: ``model.json``, or a MONAI
    bundle's ``configs/metadata.json``."""
    path = Path(path)
    if path.is_dir() and not (path / SPEC_NAME).is_file() and is_bundle(path):
        return path / "configs" / "metadata.json"
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


#: the fields model.json may hold (a loader may read more, listed by its ``spec_keys``)
SPEC_KEYS = frozenset({"name", "version", "format", "weights", "network", "task", "class_names", "preprocessing",
                       "explain_layer", "card", "input_format"})


def _check_keys(fields: dict, known: set[str] | frozenset[str], where: str) -> None:
    """Unknown keys are refused with the closest known one: a misspelt ``explain_layr`` would otherwise be ignored
    silently and the default used."""
    unknown = sorted(set(fields) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidInputError(f"{where} has unknown field(s) {', '.join(hints)}; known: {sorted(known)}")


def preprocessing_from(fields: dict) -> Preprocessing:
    """A :class:`Preprocessing` from its JSON fields (lists become tuples)."""
    if not isinstance(fields, dict):
        raise InvalidInputError(f"preprocessing must be an object, got {type(fields).__name__}")
    _check_keys(fields, {f.name for f in dataclasses.fields(Preprocessing)}, "preprocessing")
    fields = PREPROCESSING.check(fields, "preprocessing")  # types, ranges, a window with a_min < a_max
    tuples = {k: tuple(float(v) for v in fields[k]) if k != "spatial_size" else tuple(int(v) for v in fields[k])
              for k in ("spatial_size", "spacing", "intensity_range") if fields.get(k) is not None}
    return Preprocessing(**{**fields, **tuples})


def read_spec(path: str | Path) -> tuple[dict, Path]:
    """A model's spec and the file it came from: ``model.json``, or a MONAI bundle's metadata (read as plain
    JSON; nothing in the bundle is evaluated here)."""
    path = Path(path)
    if path.is_dir() and not (path / SPEC_NAME).is_file() and is_bundle(path):
        try:  # the same bounds as model.json (size, depth, duplicate keys, an object) before the bundle reads it
            read_json(path / "configs" / "metadata.json")
        except InvalidInputError as e:
            raise ModelError(str(e)) from e
        return bundle_spec(path), path / "configs" / "metadata.json"
    where = spec_path(path)
    if not where.is_file():
        raise ModelError(f"{path}: no {SPEC_NAME} here; a model is a folder with {SPEC_NAME} and its weights, "
                         "or a MONAI bundle (configs/metadata.json, configs/inference.json, models/model.pt)")
    try:  # bounded: size, nesting depth, duplicate keys, an object at the top level
        return read_json(where), where
    except InvalidInputError as e:
        raise ModelError(str(e)) from e


def load_model(path: str | Path, *, roots: Sequence[str | Path] | None = None,
               remedy: str = "add its parent folder to \"model_roots\" in settings.json") -> ModelHandle:
    """Load a model folder (``model.json``, or a MONAI bundle); the module is in eval mode with frozen parameters.

    ``roots``: the trusted model folders. Formats whose config is code (MONAI bundles) load only from under
    one of them; ``remedy`` says how the operator adds a root (for the message)."""
    spec, where = read_spec(path)
    folder = Path(path) if Path(path).is_dir() else where.parent
    try:  # the declared schema: unknown keys (did you mean), types, ranges; card.limitations "x" becomes ["x"]
        _check_keys(spec, SPEC_KEYS, str(where.name))
        spec = MODEL_SPEC.with_fields({k: Field() for k in SPEC_KEYS - set(MODEL_SPEC.fields)}).check(spec, "")
    except InvalidInputError as e:
        raise ModelError(f"{where}: {e}") from e
    loader = MODEL_LOADERS.get(str(_field(spec, "format", where)))
    if getattr(loader, "runs_config_code", False):
        root_paths = [Path(r) for r in roots or []]
        if not trusted(folder, root_paths):
            raise ModelError(MSG_UNTRUSTED.format(folder=folder, roots=", ".join(map(str, root_paths)) or "none",
                                                  remedy=remedy))
    try:
        module, weights = loader().load(spec, folder)
    except GlassboxError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # ill-typed network args, sizes, names
        raise ModelError(f"{where}: the network could not be built from its spec ({type(e).__name__}: {e}); check "
                         "'network' (name and args) and the weights") from e
    names = _field(spec, "class_names", where)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ModelError(f"{where}: class_names must be a list of non-empty strings, e.g. [\"no lesion\", "
                         f"\"lesion\"], got {json.dumps(names)[:80]}")
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
            source=str(folder), explain_layer=spec.get("explain_layer"),
        )
    except (TypeError, ValueError, InvalidInputError) as e:
        raise ModelError(f"{where}: {e}") from e
    _prepare(handle)
    return handle


def _prepare(handle: ModelHandle) -> None:
    """Eval mode, frozen weights, no in-place activations (they break gradient hooks); check output width."""
    module = handle.module
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if handle.hookable:
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
