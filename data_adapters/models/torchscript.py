"""A TorchScript archive (``torch.jit.script(model).save(path)``): code and weights, no unpickling of objects."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from data_adapters.errors import ModelError
from data_adapters.models.base import ModelLoader, weights_path
from data_adapters.models.state_dict import MSG_PICKLED

__all__ = ["TorchscriptLoader"]


class TorchscriptLoader(ModelLoader):
    def load(self, spec: dict[str, Any], folder: Path) -> tuple[torch.nn.Module, Path]:
        path = weights_path(spec, folder, "model.ts")
        if not path.is_file():
            raise ModelError(f"{path}: TorchScript file not found")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if not any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                raise ModelError(MSG_PICKLED.format(path=path))
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"{path}: not a TorchScript archive ({str(e).splitlines()[0]})") from e
        return module, path
