"""The interface every model loader shares: a model spec (``model.json``) in, a torch module out."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from data_adapters.errors import ModelError

__all__ = ["ModelLoader", "weights_path"]


class ModelLoader:
    """Builds the torch module a ``model.json`` describes. The registry key is the spec's ``format``."""

    def load(self, spec: dict[str, Any], folder: Path) -> tuple[torch.nn.Module, Path]:
        """Return the module and the weights file it came from (hashed as the model's identity)."""
        raise NotImplementedError


def weights_path(spec: dict[str, Any], folder: Path, default: str) -> Path:
    """The spec's ``weights`` file inside the model folder; one that resolves outside it (``../``, an absolute
    path, a symlink) is refused, so a model folder cannot point Glassbox at a file elsewhere on the server."""
    path = folder / str(spec.get("weights", default))
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ModelError(f"{folder / 'model.json'}: weights {str(spec.get('weights'))!r} lie outside the model "
                         "folder; put the weights file beside model.json")
    return path
