"""Region perturbations: what a model does when one region of the image is taken away.

A region is a box ``(x0, y0, x1, y1)`` in the image's pixel columns and rows as read (end exclusive), given by
hand or by name (:data:`NAMED_REGIONS`). Perturbations (registry :data:`PERTURBATIONS`), each deterministic per
case: ``mean`` fills the box with the mean of the rest of the image; ``blur`` smooths it (Gaussian, sigma 3 px);
``noise`` replaces it with noise of the image's mean and spread, seeded by the case's content; ``mirror`` in-paints
it from the box mirrored across the image's vertical midline (the other side of the body, as the demo's own
marker erasure does).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from data_adapters.demo.synthesis import MARKER_BOX
from data_adapters.errors import InvalidInputError
from data_adapters.preprocessing import fit_image
from data_adapters.records import Image
from data_adapters.registry import Registry
from explainers.inference import probabilities_of
from explainers.seeding import case_seed

__all__ = ["PERTURBATIONS", "NAMED_REGIONS", "perturb", "parse_region"]

Perturbation = Callable[[np.ndarray, tuple[slice, slice], int], None]
PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")

#: regions known by name: the demo's marker token (top-left corner)
NAMED_REGIONS = {"demo-marker": (MARKER_BOX[1].start, MARKER_BOX[0].start, MARKER_BOX[1].stop, MARKER_BOX[0].stop)}


def _register(name: str):
    def add(fn: Perturbation) -> Perturbation:
        return PERTURBATIONS.register(fn, name)
    return add


def _outside(image: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    keep = np.ones(image.shape[-2:], bool)
    keep[rows, cols] = False
    return image[..., keep]


@_register("mean")
def mean_fill(image: np.ndarray, box: tuple[slice, slice], seed: int) -> None:
    rows, cols = box
    image[..., rows, cols] = _outside(image, rows, cols).mean(axis=-1)[..., None, None]


@_register("blur")
def blur(image: np.ndarray, box: tuple[slice, slice], seed: int) -> None:
    rows, cols = box
    smooth = gaussian_filter(image, sigma=[0] * (image.ndim - 2) + [3, 3], mode="nearest")
    image[..., rows, cols] = smooth[..., rows, cols]


@_register("noise")
def noise(image: np.ndarray, box: tuple[slice, slice], seed: int) -> None:
    rows, cols = box
    rest = _outside(image, rows, cols)
    rng = np.random.default_rng(seed)
    shape = image[..., rows, cols].shape
    image[..., rows, cols] = (rest.mean(axis=-1)[..., None, None]
                              + rest.std(axis=-1)[..., None, None] * rng.standard_normal(shape)).astype(image.dtype)


@_register("mirror")
def mirror(image: np.ndarray, box: tuple[slice, slice], seed: int) -> None:
    rows, cols = box
    width = image.shape[-1]
    mirrored = slice(width - cols.stop, width - cols.start)
    if mirrored.start < 0 or (mirrored.start < cols.stop and cols.start < mirrored.stop):
        raise InvalidInputError("mirror: the region overlaps its mirror image across the midline; use mean or blur")
    image[..., rows, cols] = image[..., rows, mirrored][..., ::-1]


def parse_region(text: str, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """A region by name or as ``x0,y0,x1,y1`` (pixels as read, end exclusive) → (rows, cols), checked against the
    image ``shape`` ``(C, H, W)``."""
    text = text.strip()
    if text in NAMED_REGIONS:
        x0, y0, x1, y1 = NAMED_REGIONS[text]
    else:
        try:
            x0, y0, x1, y1 = (int(v) for v in text.split(","))
        except ValueError:
            raise InvalidInputError(f"region {text!r}: expected x0,y0,x1,y1 in pixels or a name "
                                    f"({', '.join(NAMED_REGIONS)})") from None
    if len(shape) != 3:
        raise InvalidInputError("the region test takes 2D images (C, H, W)")
    h, w = shape[-2:]
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InvalidInputError(f"region ({x0},{y0})–({x1},{y1}) does not lie inside the {w}×{h} image")
    return slice(y0, y1), slice(x0, x1)


def perturb(images: np.ndarray, box: tuple[slice, slice], how: str) -> np.ndarray:
    """A copy of ``images`` ``(N, C, H, W)`` with ``box`` perturbed by ``how`` in each."""
    fn = PERTURBATIONS.get(how)
    out = np.array(images, dtype=np.float32, copy=True)
    for i in range(len(out)):
        fn(out[i], box, case_seed(out[i], 0))
    return out


def region_shifts(versions, read, region: str, how: str, class_index: int | None) -> dict[str, np.ndarray]:
    """Per version (``ModelHandle`` records), each case's probability shift when ``region`` is perturbed by
    ``how`` in the images as read (``read``: ``data_adapters.records.Image``, one per case): the probability of
    ``class_index`` after minus before, each image fitted to the version's own grid; ``class_index`` None: each case's
    top class under the first version, the same class for every version."""
    images = np.stack([r.array for r in read])
    box = parse_region(region, images.shape[1:])
    altered = perturb(images, box, how)
    shifts, column = {}, None
    rows = np.arange(len(read))
    for handle in versions:
        def on_grid(arrays: np.ndarray, pre=handle.preprocessing) -> np.ndarray:
            return np.stack([fit_image(pre, Image(array=a, spacing=r.spacing, source=r.source))
                             for a, r in zip(arrays, read)])

        before = probabilities_of(handle, on_grid(images))
        after = probabilities_of(handle, on_grid(altered))
        if column is None:
            column = before.argmax(axis=1) if class_index is None else np.full(len(read), class_index)
        shifts[handle.version] = after[rows, column] - before[rows, column]
    return shifts


__all__ += ["region_shifts"]
