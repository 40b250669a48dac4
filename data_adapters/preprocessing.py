"""A model's declared preprocessing, as MONAI transforms, applied the same way for prediction and attribution.

Two steps: ``fit_image`` brings an image as read onto the model's grid (spacing and/or size, when the model
declares them; run when images are decoded), and ``prepare_batch`` normalises intensities into the input tensor.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    NormalizeIntensity,
    Resize,
    ResizeWithPadOrCrop,
    ScaleIntensity,
    ScaleIntensityRange,
    Spacing,
)

from data_adapters.errors import InvalidInputError
from data_adapters.records import Image, Preprocessing

MSG_SHAPE = "image {i} is {got}; the model expects {want} (channels, *spatial)"


@lru_cache(maxsize=32)
def transform(pre: Preprocessing) -> Compose:
    steps = []
    if pre.intensity == "minmax":
        steps.append(ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True))
    elif pre.intensity == "zscore":
        steps.append(NormalizeIntensity(channel_wise=True))
    elif pre.intensity == "range":
        a_min, a_max, b_min, b_max = pre.intensity_range
        steps.append(ScaleIntensityRange(a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max, clip=True))
    return Compose(steps)


def fits(shape: tuple[int, ...], accepts: tuple[int | None, ...]) -> bool:
    """Whether an image of ``shape`` (channels first) is one a model accepting ``accepts`` can take."""
    return len(shape) == len(accepts) and all(a is None or a == s for s, a in zip(shape, accepts))


#: ITU-R BT.601 luma weights (what Pillow's ``convert("L")`` uses)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: largest difference between channels (in the image's units, relative to its range) still read as grey
GREY_TOLERANCE = 1e-3


def is_grey(array: np.ndarray) -> bool:
    """Whether a 3-channel image is greyscale saved as colour (its channels agree)."""
    if array.shape[0] == 1:
        return True
    span = float(array.max() - array.min()) or 1.0
    return bool(np.abs(array[1:] - array[:1]).max() <= GREY_TOLERANCE * span)


def convert_channels(channels: str | None, array: np.ndarray, source: str = "image") -> np.ndarray:
    """``array`` ``(C, *spatial)`` converted as the model's ``preprocessing.channels`` declares (see
    :data:`data_adapters.records.CHANNELS`); unchanged when it declares none. Real colour given to a ``grey`` model
    is refused, naming the remedy."""
    if channels is None:
        return array
    c = array.shape[0]
    if channels == "rgb":
        if c == 3:
            return array
        if c == 1:
            return np.repeat(array, 3, axis=0)
    elif c == 1:
        return array
    elif c == 3:
        if channels == "luminance":
            return np.tensordot(LUMA, array, axes=1)[None].astype(np.float32)
        if is_grey(array):
            return np.ascontiguousarray(array[:1])
        raise InvalidInputError(f"{source}: a colour image (its channels differ) for a greyscale model; converting "
                                "colour to grey loses what may be diagnostic, so it is done only when the model "
                                "declares \"channels\": \"luminance\" in its preprocessing")
    raise InvalidInputError(f"{source}: {c} channels; preprocessing.channels {channels!r} takes 1 or 3")


def fit_image(pre: Preprocessing, image: Image, *, label: bool = False) -> np.ndarray:
    """``image`` on the model's grid ``(C, *spatial_size)``: channels converted as declared, then resampled to the
    declared spacing (then padded or cropped) or resized, when declared; otherwise the array as read.
    ``label``: a mask (nearest-neighbour, channels untouched)."""
    if not label and pre.channels:
        image = Image(array=convert_channels(pre.channels, image.array, image.source), spacing=image.spacing,
                      source=image.source, window=image.window)
    if not pre.resamples:
        return image.array
    if image.array.ndim - 1 != len(pre.spatial_size):
        raise InvalidInputError(f"{image.source}: a {image.array.ndim - 1}D image; the model expects "
                                f"{len(pre.spatial_size)}D ({pre.describe()})")
    data = torch.as_tensor(image.array)
    if pre.spacing is not None:
        affine = torch.diag(torch.tensor([*image.spacing, 1.0], dtype=torch.float64))
        data = Spacing(pixdim=pre.spacing, mode="nearest" if label else "bilinear")(MetaTensor(data, affine=affine))
        data = ResizeWithPadOrCrop(pre.spatial_size, mode="edge")(data)
    else:
        data = Resize(pre.spatial_size, mode="nearest" if label else "area")(data)
    return np.ascontiguousarray(np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data),
                                dtype=np.float32)


def on_model_grid(pre: Preprocessing, image: Image, *, label: bool = False) -> Image:
    """``image`` as the model sees it geometrically (for display beside attributions, which live on this grid),
    with the spacing of that grid; unchanged when the model declares no geometry step."""
    if not pre.resamples:
        return image
    array = fit_image(pre, image, label=label)
    if pre.spacing is not None:
        spacing = tuple(float(s) for s in pre.spacing)
    else:
        spacing = tuple(sp * n / m for sp, n, m in zip(image.spacing, image.shape[1:], array.shape[1:]))
    return Image(array=array, spacing=spacing, source=image.source, window=image.window)


def mask_on_model_grid(pre: Preprocessing, mask: Image) -> np.ndarray:
    """A ground-truth mask on the grid :func:`on_model_grid` shows the image on, as booleans ``(*spatial)``: resampled
    as a label (nearest neighbour), a voxel inside where its first channel is above 0.5."""
    return on_model_grid(pre, mask, label=True).array[0] > 0.5


def prepare_batch(pre: Preprocessing, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, C, *spatial)`` float32 images on the model's grid → the model's input tensor on ``device``."""
    if images.ndim != 2 + len(pre.spatial_size):
        raise InvalidInputError(f"a batch of images must be (N, {', '.join(['C'] + ['*'] * len(pre.spatial_size))}), "
                                f"got shape {images.shape}")
    t = transform(pre)
    out = []
    for i, image in enumerate(images):
        if tuple(image.shape) != pre.input_shape:
            raise InvalidInputError(MSG_SHAPE.format(i=i, got=tuple(image.shape), want=pre.input_shape))
        out.append(torch.as_tensor(np.asarray(t(image)), dtype=torch.float32))
    return torch.stack(out).to(device)
