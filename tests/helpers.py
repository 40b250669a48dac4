"""Tiny models with known answers, and builders for model handles and image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from data_adapters.records import ModelCard, ModelHandle, Preprocessing


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


def write_dicom_series(folder: Path, volume: np.ndarray, *, spacing=(2.5, 0.8, 0.7), z0: float = -40.0,
                       series_uid: str = "1.2.826.0.1.3680043.8.498.77", names=None, slope: float = 1.0,
                       intercept: float = -1024.0, **tags) -> list[Path]:
    """Write ``volume`` ``(D, H, W)`` (stored values, uint16) as an axial CT series, one file per slice, named
    in shuffled order so that only the positions can sort them. ``tags`` set on every slice."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    depth = volume.shape[0]
    names = names or [f"IM{(7 * k + 3) % depth:04d}.dcm" for k in range(depth)]
    paths = []
    for k in range(depth):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = CTImageStorage, ExplicitVRLittleEndian
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = series_uid, series_uid + ".1", "CT"
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, z0 + k * spacing[0]]
        ds.InstanceNumber = depth - k  # deliberately not the spatial order
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(volume[k], np.uint16).tobytes()
        for key, value in tags.items():
            setattr(ds, key, value)
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
