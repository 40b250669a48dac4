"""A state dict of tensors plus a MONAI network spec (a class of ``monai.networks.nets`` and its arguments).

Weights are read with ``torch.load(..., weights_only=True)``: Glassbox never unpickles arbitrary objects.
"""
from __future__ import annotations

import difflib
import inspect
import pickle
from pathlib import Path
from typing import Any

import monai.networks.nets as monai_nets
import torch

from data_adapters.errors import ModelError, UnknownNameError
from data_adapters.models.base import ModelLoader, weights_path

__all__ = ["MSG_PICKLED", "monai_network", "read_weights", "StateDictLoader"]

MSG_PICKLED = (
    "{path}: holds a pickled Python object (such as a whole model saved with torch.save(model)), not a state "
    "dict of tensors. Glassbox refuses it because unpickling can run arbitrary code; it loads weights with "
    "weights_only=True. Save model.state_dict() with a MONAI network spec, or a TorchScript file instead."
)
MSG_NOT_STATE_DICT = "{path}: expected a state dict (a mapping of parameter names to tensors), got {kind}"
MSG_MISMATCH = "{path}: weights do not fit network {net}: missing keys {missing}, unexpected keys {unexpected}"


def monai_network(name: str) -> type[torch.nn.Module]:
    """A network class from ``monai.networks.nets`` by name (nothing else can be instantiated)."""
    options = sorted(n for n, obj in vars(monai_nets).items()
                     if inspect.isclass(obj) and issubclass(obj, torch.nn.Module))
    if name not in options:
        close = difflib.get_close_matches(name, options, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise UnknownNameError(f"network {name!r} is not a class of monai.networks.nets{hint}")
    return getattr(monai_nets, name)


def read_weights(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``, its failures named: missing, pickled objects, unreadable."""
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(MSG_PICKLED.format(path=path)) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ModelError(f"{path}: not a readable torch weights file ({e})") from e


class StateDictLoader(ModelLoader):
    def load(self, spec: dict[str, Any], folder: Path) -> tuple[torch.nn.Module, Path]:
        net = spec.get("network")
        if not isinstance(net, dict) or "name" not in net:
            raise ModelError(f"{folder}/model.json: format 'state_dict' needs a 'network' entry "
                             "like {\"name\": \"DenseNet\", \"args\": {...}}")
        cls = monai_network(str(net["name"]))
        try:
            module = cls(**dict(net.get("args", {})))
        except TypeError as e:
            raise ModelError(f"{folder}/model.json: network {net['name']} rejects its args: {e}") from e
        path = weights_path(spec, folder, "weights.pt")
        state = read_weights(path)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(MSG_NOT_STATE_DICT.format(path=path, kind=type(state).__name__))
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches raise even when not strict
            shapes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line][:3]
            raise ModelError(f"{path}: weights do not fit network {net['name']}: {'; '.join(shapes) or e}") from e
        if result.missing_keys or result.unexpected_keys:
            raise ModelError(MSG_MISMATCH.format(path=path, net=net["name"], missing=result.missing_keys[:5],
                                                 unexpected=result.unexpected_keys[:5]))
        return module, path
