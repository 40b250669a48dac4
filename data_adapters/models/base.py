"""The interface every model loader shares: a model spec (``model.json``) in, a torch module out."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class ModelLoader:
    """Builds the torch module a ``model.json`` describes. The registry key is the spec's ``format``."""

    def load(self, spec: dict[str, Any], folder: Path) -> tuple[torch.nn.Module, Path]:
        """Return the module and the weights file it came from (hashed as the model's identity)."""
        raise NotImplementedError
