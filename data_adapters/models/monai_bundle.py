"""MONAI bundle folders (``configs/metadata.json``, ``configs/inference.json`` and ``models/model.pt``).

The network comes from the inference config's ``network_def`` and the preprocessing from its ``preprocessing``
transforms (intensity scaling, spacing, resize) and the metadata's ``network_data_format`` (channels, spatial
shape, output channels and their names). Weights are read with ``weights_only=True``.

A bundle config is code: ``_target_`` names any importable class and ``$`` expressions are evaluated Python. So
a bundle is parsed only when it sits under one of the configured model roots (``Workspace.model_roots``); a
bundle elsewhere is refused before any of its config is read into MONAI's parser.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from data_adapters.errors import ModelError
from data_adapters.models.base import ModelLoader
from data_adapters.models.state_dict import read_weights

__all__ = ["MSG_UNTRUSTED", "is_bundle", "trusted", "bundle_spec", "MonaiBundleLoader"]

METADATA = Path("configs") / "metadata.json"
CONFIGS = (Path("configs") / "inference.json", Path("configs") / "inference.yaml")
WEIGHTS = Path("models") / "model.pt"

MSG_UNTRUSTED = (
    "{folder}: is a MONAI bundle outside the configured model roots ({roots}). A bundle's config can instantiate "
    "any Python class and evaluate expressions, so Glassbox parses bundles only from trusted folders. Copy it into "
    "one of those roots, or, if you trust it, {remedy}."
)
#: transform names in a bundle's preprocessing → what they mean for :class:`Preprocessing`
INTENSITY_TRANSFORMS = {"ScaleIntensityd": "minmax", "ScaleIntensity": "minmax",
                        "NormalizeIntensityd": "zscore", "NormalizeIntensity": "zscore",
                        "ScaleIntensityRanged": "range", "ScaleIntensityRange": "range"}


def is_bundle(folder: Path) -> bool:
    return (folder / METADATA).is_file()


def _config_path(folder: Path) -> Path:
    for rel in CONFIGS:
        if (folder / rel).is_file():
            return folder / rel
    raise ModelError(f"{folder}: MONAI bundle has no configs/inference.json (or .yaml)")


def trusted(folder: Path, roots: list[Path]) -> bool:
    resolved = folder.resolve()
    return any(resolved.is_relative_to(r.resolve()) for r in roots)


def _parser(folder: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(str(folder / METADATA))
    parser.read_config(str(_config_path(folder)))
    parser["bundle_root"] = str(folder)
    return parser


def _target_name(item: Any) -> str:
    target = item.get("_target_", "") if isinstance(item, dict) else ""
    return str(target).rsplit(".", 1)[-1]


def _preprocessing(parser, folder: Path, image_format: dict) -> dict:
    """``Preprocessing`` fields from the metadata's input format and the config's preprocessing transforms."""
    shape = image_format.get("spatial_shape", [])
    if not shape or not all(isinstance(s, int) for s in shape):
        raise ModelError(f"{folder}/{METADATA}: network_data_format.inputs.image.spatial_shape must be fixed "
                         f"integers (patch-based bundles with shapes like '16*n' are not classifiers), got {shape}")
    fields: dict[str, Any] = {"in_channels": int(image_format.get("num_channels", 1)), "spatial_size": shape}
    transforms = parser.get("preprocessing#transforms", []) if "preprocessing" in parser.config else []
    for i, item in enumerate(transforms):
        name = _target_name(item)

        def arg(key: str, default: Any = None, _i: int = i) -> Any:
            where = f"preprocessing#transforms#{_i}#{key}"
            return parser.get_parsed_content(where) if where.split("#")[-1] in transforms[_i] else default

        if name in INTENSITY_TRANSFORMS:
            fields["intensity"] = INTENSITY_TRANSFORMS[name]
            if fields["intensity"] == "range":
                fields["intensity_range"] = [float(arg(k)) for k in ("a_min", "a_max", "b_min", "b_max")]
        elif name in ("Spacingd", "Spacing"):
            pixdim = arg("pixdim")
            fields["spacing"] = [float(v) for v in (pixdim if isinstance(pixdim, (list, tuple))
                                                    else [pixdim] * len(shape))]
        elif name in ("Resized", "Resize"):
            fields["resize"] = True
    return fields


def bundle_spec(folder: Path) -> dict[str, Any]:
    """A ``model.json``-like spec read from the bundle's metadata alone (plain JSON: nothing is evaluated), so a
    workspace can list bundles without trusting them."""
    try:
        meta = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{folder / METADATA}: not valid JSON ({e})") from e
    fmt = meta.get("network_data_format", {})
    outputs = fmt.get("outputs", {})
    pred = outputs.get("pred") or next(iter(outputs.values()), {})
    if str(pred.get("format", "")).lower() == "segmentation" or pred.get("spatial_shape"):
        raise ModelError(f"{folder}: a segmentation bundle (its output is an image); Glassbox reviews classifiers")
    k = int(pred.get("num_channels", 0) or 0)
    if k < 1:
        raise ModelError(f"{folder}/{METADATA}: network_data_format.outputs.pred.num_channels is missing")
    channel_def = {int(i): str(v) for i, v in (pred.get("channel_def") or {}).items()}
    if k == 1:
        task = "binary"
        names = ["negative", channel_def.get(0, "positive")]
    else:
        task = "multilabel" if "multi-label" in str(pred.get("type", "")).lower() else "multiclass"
        names = [channel_def.get(i, f"class {i}") for i in range(k)]
    return {
        "name": str(meta.get("name", folder.name)), "version": str(meta.get("version", "unversioned")),
        "format": "monai_bundle", "weights": str(WEIGHTS), "task": task, "class_names": names,
        "input_format": fmt.get("inputs", {}).get("image", {}),
        "card": {"intended_use": str(meta.get("intended_use", meta.get("description", "not stated"))),
                 "training_data": str(meta.get("data_source", "not stated")),
                 "limitations": [str(meta["limitations"])] if meta.get("limitations") else [],
                 "authors": str(meta.get("authors", "not stated")),
                 "references": "; ".join(map(str, meta.get("references", []))) or "none",
                 "bundle": "MONAI bundle; network and preprocessing from configs/inference"},
    }


class MonaiBundleLoader(ModelLoader):
    """Registered as ``monai_bundle``. ``runs_config_code``: ``load_model`` checks the model roots first."""

    runs_config_code = True

    def load(self, spec: dict[str, Any], folder: Path) -> tuple[torch.nn.Module, Path]:
        parser = _parser(folder)
        try:
            module = parser.get_parsed_content("network_def")
        except Exception as e:  # a config can fail in any way its Python can
            raise ModelError(f"{folder}: the bundle's network_def could not be built ({type(e).__name__}: {e})") from e
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"{folder}: network_def is a {type(module).__name__}, not a torch module")
        path = folder / str(spec.get("weights", WEIGHTS))
        state = read_weights(path)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # checkpoints saved by MONAI's CheckpointSaver nest the weights
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise ModelError(f"{path}: weights do not fit the bundle's network_def ({str(e).splitlines()[0]})") from e
        spec["preprocessing"] = _preprocessing(parser, folder, spec.pop("input_format", {}))
        return module, path
