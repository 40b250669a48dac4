"""Tiny models with known answers, and builders for model handles and image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from data_adapters.records import ModelCard, ModelHandle, Preprocessing

#: the repository root (the folder holding pyproject.toml), for tests that read the tree itself
ROOT = Path(__file__).resolve().parent.parent


class LinearModel(torch.nn.Module):
    """``scores = W @ x.flatten() + b``: its input gradient for class k is exactly ``W[k]``."""

    def __init__(self, input_shape: tuple[int, ...], n_out: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.input_shape = input_shape
        self.linear = torch.nn.Linear(int(np.prod(input_shape)), n_out)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=g))
            self.linear.bias.copy_(torch.randn(self.linear.bias.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class TinyCNN(torch.nn.Module):
    """Conv → ReLU → Conv → ReLU → global mean → Linear, in 2D or 3D."""

    def __init__(self, spatial_dims: int, in_channels: int, n_out: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
        self.features = torch.nn.Sequential(conv(in_channels, 4, 3, padding=1), torch.nn.ReLU(),
                                            conv(4, 6, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(6, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(2).mean(dim=2))


def handle_for(module: torch.nn.Module, *, task: str = "multiclass", n_classes: int = 3,
               input_shape: tuple[int, ...] = (1, 8, 8), explain_layer: str | None = None) -> ModelHandle:
    names = ("negative", "positive") if task == "binary" else tuple(f"class{k}" for k in range(n_classes))
    module.eval()
    return ModelHandle(name="tiny", version="t", module=module,
                       preprocessing=Preprocessing(in_channels=input_shape[0], spatial_size=input_shape[1:]),
                       class_names=names, task=task, weights_hash=f"tiny-{id(module)}", card=ModelCard(),
                       source="tests", explain_layer=explain_layer)


def write_png(path: Path, array: np.ndarray) -> Path:
    """``array`` uint8 or uint16, (H, W) or (H, W, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


def all_hooks(module: torch.nn.Module) -> int:
    """How many hooks of any kind are registered anywhere in ``module``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in module.modules())


def random_png_cohort(folder: Path, n: int, *, seed: int = 0, size: int = 12, n_classes: int = 3):
    """A manifest of ``n`` random 16-bit PNGs with labels ``i % n_classes`` and a two-level ``site``; loaded."""
    from data_adapters.cohort import load_manifest

    rng = np.random.default_rng(seed)
    rows = ["case_id,image,label,site"]
    for i in range(n):
        write_png(folder / f"i{i}.png", rng.integers(0, 65535, (size, size), dtype=np.uint16))
        rows.append(f"k{i},i{i}.png,{i % n_classes},{'AB'[i % 2]}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return load_manifest(folder / "manifest.csv")


def torchscript_binary_model(folder: Path, size: int) -> Path:
    """A model folder: a scripted 2D TinyCNN with one logit for ``(1, size, size)`` inputs, z-scored."""
    from data_adapters.models import write_spec

    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyCNN(2, 1, 1)).save(str(folder / "model.ts"))
    write_spec(folder, {"name": "tiny", "format": "torchscript", "weights": "model.ts", "task": "binary",
                        "class_names": ["normal", "abnormal"],
                        "preprocessing": {"in_channels": 1, "spatial_size": [size, size], "intensity": "zscore"}})
    return folder



def tiny_workspace(root: Path, n: int = 6) -> Path:
    """A workspace with one cohort ``pngs`` of ``n`` random 12×12 PNGs and one TorchScript model ``tiny``."""
    random_png_cohort(root / "cohorts" / "pngs", n, size=12, n_classes=2)
    torchscript_binary_model(root / "models" / "tiny", 12)
    return root
