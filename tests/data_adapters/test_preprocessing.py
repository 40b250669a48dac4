"""Declared preprocessing: images of other sizes or spacings brought onto the model's grid the same way for
prediction, attribution and display; cases that cannot fit rejected with what the model expects."""
from __future__ import annotations

import nibabel
import numpy as np
import pytest
import torch

from data_adapters.cohort import load_image_batch, load_manifest
from data_adapters.errors import InvalidInputError, ModelError
from data_adapters.models import load_model, write_spec
from data_adapters.preprocessing import fit_image, on_model_grid, prepare_batch
from data_adapters.readers import read_image
from data_adapters.records import Image, Preprocessing
from explainers.inference import predict_cases
from explainers.saliency import explain
from tests.helpers import write_png


def test_declarations_are_validated():
    with pytest.raises(InvalidInputError, match=r"intensity 'range' needs intensity_range"):
        Preprocessing(in_channels=1, spatial_size=(8, 8), intensity="range")
    with pytest.raises(InvalidInputError, match=r"spacing \(1\.0,\) must give one positive size \(mm\) per axis"):
        Preprocessing(in_channels=1, spatial_size=(8, 8), spacing=(1.0,))
    fixed = Preprocessing(in_channels=1, spatial_size=(8, 8))
    assert fixed.accepts == (1, 8, 8) and not fixed.resamples
    assert Preprocessing(in_channels=3, spatial_size=(4, 8, 8), resize=True).accepts == (3, None, None, None)


def test_resize_keeps_content_and_masks_stay_binary():
    yy, xx = np.mgrid[0:40, 0:60].astype(np.float32)
    image = Image(array=(xx / 59.0)[None], spacing=(0.5, 0.5), source="ramp")
    pre = Preprocessing(in_channels=1, spatial_size=(20, 30), resize=True)
    out = fit_image(pre, image)
    assert out.shape == (1, 20, 30)
    assert abs(out.mean() - image.array.mean()) < 1e-3 and np.all(np.diff(out[0, 5]) > 0), "a ramp stays a ramp"
    mask = Image(array=((yy - 20) ** 2 + (xx - 30) ** 2 < 100).astype(np.float32)[None], spacing=(0.5, 0.5),
                 source="disk")
    small = on_model_grid(pre, mask, label=True)
    assert set(np.unique(small.array)) == {0.0, 1.0} and small.spacing == (1.0, 1.0)


def test_spacing_resamples_in_millimetres_then_pads_or_crops():
    volume = np.zeros((1, 20, 20, 20), np.float32)
    volume[0, 8:12, 8:12, 8:12] = 1.0  # a 4 mm cube at the centre of a 1 mm grid
    pre = Preprocessing(in_channels=1, spatial_size=(16, 16, 16), spacing=(2.0, 2.0, 2.0))
    out = on_model_grid(pre, Image(array=volume, spacing=(1.0, 1.0, 1.0), source="cube"))
    assert out.shape == (1, 16, 16, 16) and out.spacing == (2.0, 2.0, 2.0)
    centre = np.argwhere(out.array[0] > 0.5).mean(axis=0)
    np.testing.assert_allclose(centre, [7.5, 7.5, 7.5], atol=1.0)
    assert 4 <= (out.array[0] > 0.5).sum() <= 27, "a 4 mm cube is about 2 voxels of 2 mm across"


def test_range_intensity_is_a_clipped_window():
    pre = Preprocessing(in_channels=1, spatial_size=(2, 2), intensity="range",
                        intensity_range=(-1000.0, 400.0, 0.0, 1.0))
    x = prepare_batch(pre, np.array([[[[-2000, -1000], [-300, 1000]]]], np.float32))
    np.testing.assert_allclose(x[0, 0].numpy(), [[0.0, 0.0], [0.5, 1.0]], atol=1e-6)


class Mean2D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))[:, :1]


def test_a_resizing_model_takes_mixed_sizes_and_rejects_what_cannot_fit(tmp_path):
    folder = tmp_path / "model"
    torch.jit.script(Mean2D()).save(str(tmp_path / "m.ts"))
    folder.mkdir()
    (tmp_path / "m.ts").rename(folder / "model.ts")
    spec = {"name": "resizer", "version": "1", "format": "torchscript", "weights": "model.ts", "task": "binary",
            "class_names": ["no", "yes"],
            "preprocessing": {"in_channels": 1, "spatial_size": [32, 32], "intensity": "minmax", "resize": True}}
    write_spec(folder, spec)
    handle = load_model(folder)
    assert handle.preprocessing.resamples
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    write_png(data / "a.png", rng.integers(0, 255, (48, 64), dtype=np.uint8))
    write_png(data / "b.png", rng.integers(0, 255, (20, 20), dtype=np.uint8))
    write_png(data / "rgb.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), data / "vol.nii.gz")
    (data / "manifest.csv").write_text("case_id,image,label\na,a.png,0\nb,b.png,1\nc,rgb.png,0\nd,vol.nii.gz,1\n")
    cohort = load_manifest(data / "manifest.csv", class_names=handle.class_names,
                           input_shape=handle.preprocessing.accepts)
    assert [c.case_id for c in cohort.cases] == ["a", "b"]
    reasons = [r.reason for r in cohort.report.rejections]
    assert reasons == ["image is 3×32×32 (C×H×W); the model expects 1×any×any (C×H×W)",
                       "image is 1×8×8×8 (C×D×H×W); the model expects 1×any×any (C×H×W)"]
    assert load_image_batch(cohort.cases, handle.preprocessing).shape == (2, 1, 32, 32)
    assert len(predict_cases(handle, cohort.cases)) == 2
    maps = explain(handle, load_image_batch(cohort.cases, handle.preprocessing), ["a", "b"], "saliency", 1)
    assert maps[0].array.shape == (1, 32, 32)
    spec["preprocessing"]["spacnig"] = [1, 1]
    write_spec(folder, spec)
    with pytest.raises(ModelError, match=r"preprocessing has unknown field\(s\) 'spacnig' \(did you mean 'spacing'\?\)"):
        load_model(folder)
    assert read_image(data / "a.png").shape == (1, 48, 64), "reading stays as-is; only the model's view resamples"
