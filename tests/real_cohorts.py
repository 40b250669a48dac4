"""Cohorts as real public sets come, generated: a 7-class colour dermoscopy-like set whose labels are class names,
and a chest-radiograph-like binary set saved as 3-channel greyscale PNGs with several images per patient (one
patient with many), Windows-style paths and a numeric age. Models are MONAI DenseNets with seeded random weights:
every test on them asserts what must hold for *any* weights (outcomes against an independent argmax, metrics
against scikit-learn), never what a trained model learnt.
"""
from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import DenseNet

from tests.helpers import write_png

SIZE = 32
DERM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
#: cases per class: unbalanced, as dermoscopy sets are (nv dominates)
DERM_COUNTS = [12, 14, 16, 10, 18, 40, 10]
CHEST_CLASSES = ["normal", "pneumonia"]
#: images per patient: one patient has 24 of the 90 images (as one had 40 of 200 in the real set)
CHEST_IMAGES_PER_PATIENT = [24] + [3] * 10 + [2] * 18


def _network(in_channels: int, out_channels: int) -> dict:
    return {"name": "DenseNet", "args": {"spatial_dims": 2, "in_channels": in_channels, "out_channels": out_channels,
                                         "init_features": 8, "growth_rate": 4, "block_config": [2, 2],
                                         "bn_size": 2, "dropout_prob": 0.2}}


def write_model(folder: Path, *, version: str, task: str, class_names: list[str], in_channels: int,
                preprocessing: dict, seed: int) -> Path:
    """A state-dict model folder with seeded random DenseNet weights."""
    folder.mkdir(parents=True, exist_ok=True)
    network = _network(in_channels, 1 if task == "binary" else len(class_names))
    torch.manual_seed(seed)
    torch.save(DenseNet(**network["args"]).state_dict(), folder / "weights.pt")
    spec = {"name": f"{task}-{len(class_names)}", "version": version, "format": "state_dict",
            "weights": "weights.pt", "network": network, "task": task, "class_names": class_names,
            "preprocessing": preprocessing, "explain_layer": "features.denseblock2",
            "card": {"intended_use": "tests only", "training_data": "none: seeded random weights"}}
    (folder / "model.json").write_text(json.dumps(spec, indent=2))
    return folder


def _skin(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A colour 'lesion' of one hue on skin tone, 8-bit RGB (H, W, 3)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    skin = np.array([0.85, 0.67, 0.55]) + rng.normal(0, 0.03, 3)
    image = np.ones((SIZE, SIZE, 3)) * skin
    cy, cx = rng.uniform(10, 22, 2)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(3, 6) ** 2))
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.7, 0.55))
    image = image * (1 - blob[..., None]) + colour * blob[..., None] + rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_derm(root: Path, seed: int = 0) -> Path:
    """``root/cohorts/derm7`` (manifest with class-name labels, colour PNGs, sex/age/site/split, a ``red``
    concept folder) and ``root/models/derm-v1`` (3-channel, 7 classes). Returns the manifest."""
    rng = np.random.default_rng(seed)
    folder = root / "cohorts" / "derm7"
    rows = ["case_id,image,label,sex,age,localization,split"]
    i = 0
    for k, (name, n) in enumerate(zip(DERM_CLASSES, DERM_COUNTS)):
        for _ in range(n):
            i += 1
            write_png(folder / "images" / f"isic_{i:04d}.png", _skin(rng, k / len(DERM_CLASSES)))
            rows.append(f"isic_{i:04d},images/isic_{i:04d}.png,{name},{'FM'[i % 2]},{int(rng.integers(18, 86))},"
                        f"{['back', 'trunk', 'face'][i % 3]},{'test' if i % 3 else 'validation'}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    for j in range(12):  # a named concept: strongly red lesions
        write_png(folder / "concepts" / "red" / f"red_{j:02d}.png", _skin(rng, 0.0))
    write_model(root / "models" / "derm-v1", version="derm-v1", task="multiclass", class_names=DERM_CLASSES,
                in_channels=3, preprocessing={"in_channels": 3, "spatial_size": [SIZE, SIZE], "intensity": "none"},
                seed=seed)
    return folder / "manifest.csv"


def make_chest(root: Path, seed: int = 1) -> Path:
    """``root/cohorts/chest`` (greyscale radiographs saved as 3-channel PNG, ``patient_id`` with repeats, labels as
    names, backslash paths in some rows, numeric age) and ``root/models/chest-v1`` (1 channel, ``"channels":
    "grey"``). Returns the manifest."""
    rng = np.random.default_rng(seed)
    folder = root / "cohorts" / "chest"
    rows = ["case_id,image,label,patient_id,sex,age,view,split"]
    i = 0
    for p, count in enumerate(CHEST_IMAGES_PER_PATIENT):
        sick = p % 3 == 0  # a patient's images share their label, as repeated studies mostly do
        sex, age = "FM"[p % 2], int(rng.integers(20, 90))
        for _ in range(count):
            i += 1
            grey = rng.normal(0.45, 0.08, (SIZE, SIZE)) + (0.25 if sick else 0.0) * (rng.random() < 0.8)
            grey8 = (np.clip(grey, 0, 1) * 255).astype(np.uint8)
            write_png(folder / "images" / f"cxr_{i:04d}.png", np.repeat(grey8[..., None], 3, axis=2))
            path = f"images\\cxr_{i:04d}.png" if i % 4 == 0 else f"images/cxr_{i:04d}.png"
            rows.append(f"cxr_{i:04d},{path},{CHEST_CLASSES[int(sick)]},MRN-{p:05d},{sex},{age},"
                        f"{['PA', 'AP'][i % 2]},test")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    for j in range(12):  # a named concept: bright (opaque) lungs
        bright = (np.clip(rng.normal(0.75, 0.08, (SIZE, SIZE)), 0, 1) * 255).astype(np.uint8)
        write_png(folder / "concepts" / "opaque" / f"opaque_{j:02d}.png", np.repeat(bright[..., None], 3, axis=2))
    write_model(root / "models" / "chest-v1", version="chest-v1", task="binary", class_names=CHEST_CLASSES,
                in_channels=1, preprocessing={"in_channels": 1, "spatial_size": [SIZE, SIZE], "intensity": "none",
                                              "channels": "grey"}, seed=seed)
    return folder / "manifest.csv"
