"""Synthetic chest CT volumes with known nodules, written as NIfTI in Hounsfield units.

- A torso (soft tissue, ~40 HU) with two lungs (~-820 HU, textured) tapering towards the apex, in air
  (-1000 HU); volumes are ``(D, H, W)`` = inferior → superior, anterior → posterior, right → left, the layout the
  NIfTI reader returns, so the written files read back into exactly the arrays generated here.
- Label 1 volumes carry a nodule: a soft spherical blob (+~650 HU) inside a lung; its ball (radius in mm, so
  spacing-aware) is the ground-truth mask, written as a NIfTI label volume.
- Two sites: site B's scanner is noisier and reads ~30 HU high (a calibration drift).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from data_adapters.demo.synthesis import write_manifest

__all__ = ["SHAPE", "SPACING", "N_VOLUMES", "LUNG_HU", "generate_ct_cohort"]

SHAPE = (32, 48, 48)
#: voxel spacing in mm along (D, H, W)
SPACING = (3.0, 2.0, 2.0)
N_VOLUMES = 240
TEST_FRACTION = 0.3
NODULE_HU = 900.0
#: the lungs' mean density
LUNG_HU = -820.0


@dataclass(frozen=True)
class CTSite:
    scanner: str
    offset_hu: float
    noise_hu: float
    prevalence: float


CT_SITES = {
    "A": CTSite("Acme CT-64", offset_hu=0.0, noise_hu=18.0, prevalence=0.45),
    "B": CTSite("Borealis Helix", offset_hu=30.0, noise_hu=40.0, prevalence=0.45),
}


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.mgrid[0:SHAPE[0], 0:SHAPE[1], 0:SHAPE[2]].astype(np.float32)


def chest(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A chest volume in HU ``(D, H, W)`` and its lung mask."""
    zz, yy, xx = _grid()
    d, h, w = SHAPE
    jitter = rng.normal(0, 1.0, size=3)
    taper = np.clip(1.0 - ((zz - 0.45 * d) / (0.75 * d)) ** 2, 0.35, 1.0)  # narrower towards the apex
    body = ((yy - h / 2 - jitter[0]) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.46 * w)) ** 2 <= 1.0
    lungs = np.zeros(SHAPE, bool)
    for side, j in ((-1, jitter[1]), (1, jitter[2])):
        cx = w / 2 + side * 0.22 * w
        lungs |= (((yy - h / 2 + 1 + j) / (0.28 * h * taper)) ** 2 + ((xx - cx) / (0.15 * w * taper)) ** 2
                  + ((zz - 0.5 * d) / (0.42 * d)) ** 2) <= 1.0
    lungs &= body
    volume = np.full(SHAPE, -1000.0, np.float32)
    volume[body] = 40.0
    texture = gaussian_filter(rng.normal(0, 1, SHAPE), 1.5).astype(np.float32)
    texture /= np.abs(texture).max() + 1e-6
    volume[lungs] = LUNG_HU + 60.0 * texture[lungs]
    return gaussian_filter(volume, 0.7).astype(np.float32), lungs


def add_nodule(volume: np.ndarray, lungs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a nodule well inside the lungs, in place; returns its ground-truth ball (bool ``(D, H, W)``)."""
    zz, yy, xx = _grid()
    radius = rng.uniform(6.0, 10.0)  # mm
    inner = lungs.copy()
    for _ in range(3):  # stay a few voxels from the lung edge
        inner &= np.roll(inner, 1, 1) & np.roll(inner, -1, 1) & np.roll(inner, 1, 2) & np.roll(inner, -1, 2)
    zs, ys, xs = np.nonzero(inner)
    k = rng.integers(len(zs))
    d2 = ((zz - zs[k]) * SPACING[0]) ** 2 + ((yy - ys[k]) * SPACING[1]) ** 2 + ((xx - xs[k]) * SPACING[2]) ** 2
    volume += (NODULE_HU * np.exp(-d2 / (2 * (radius / 1.5) ** 2))).astype(np.float32)
    return d2 <= radius ** 2


def scan(volume: np.ndarray, site: CTSite, rng: np.random.Generator) -> np.ndarray:
    """The site's calibration offset and noise, clipped to the CT range."""
    out = volume + site.offset_hu + rng.normal(0, site.noise_hu, volume.shape)
    return np.clip(np.round(out), -1024, 3071).astype(np.int16)


def affine() -> np.ndarray:
    """Voxel → RAS mm for arrays stored as (x, y, z) = our (W, H, D) axes reversed: W runs right → left
    (−x), H anterior → posterior (−y), D inferior → superior (+z)."""
    return np.diag([-SPACING[2], -SPACING[1], SPACING[0], 1.0])


#: the display range written into each volume's header (cal_min, cal_max): a lung window, -600 ± 750 HU
LUNG_WINDOW = (-1350.0, 150.0)


def save_nifti(path: Path, volume: np.ndarray, display: tuple[float, float] | None = None) -> None:
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nibabel.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine())
    img.header.set_xyzt_units("mm")
    if display is not None:
        img.header["cal_min"], img.header["cal_max"] = display
    nibabel.save(img, path)


def generate_ct_cohort(folder: Path, *, n_volumes: int = N_VOLUMES, seed: int = 3031,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Write volumes/, masks/ (NIfTI) and manifest.csv under ``folder``; returns the manifest path."""
    rng = np.random.default_rng(seed)
    rows = []
    names = sorted(CT_SITES)
    for i in range(n_volumes):
        site_name = names[i % len(names)]
        site = CT_SITES[site_name]
        sex = "F" if rng.random() < 0.5 else "M"
        age = int(rng.integers(35, 86))
        label = int(rng.random() < site.prevalence)
        volume, lungs = chest(rng)
        mask = add_nodule(volume, lungs, rng) if label else None
        case_id = f"ct-{i + 1:04d}"
        save_nifti(folder / "volumes" / f"{case_id}.nii.gz", scan(volume, site, rng), LUNG_WINDOW)
        mask_ref = ""
        if mask is not None:
            mask_ref = f"masks/{case_id}.nii.gz"
            save_nifti(folder / mask_ref, mask.astype(np.uint8))
        rows.append({"case_id": case_id, "image": f"volumes/{case_id}.nii.gz", "label": label, "mask": mask_ref,
                     "sex": sex, "age": age, "site": site_name, "scanner": site.scanner,
                     "split": "test" if rng.random() < TEST_FRACTION else "train"})
        if progress:
            progress(i + 1, n_volumes)
    return write_manifest(folder, rows)
