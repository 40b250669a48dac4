"""A model's declared preprocessing, as MONAI transforms, applied the same way for prediction and attribution."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from monai.transforms import Compose, NormalizeIntensity, ScaleIntensity

from data_adapters.errors import InvalidInputError
from data_adapters.records import Preprocessing

MSG_SHAPE = "image {i} is {got}; the model expects {want} (channels, *spatial)"


@lru_cache(maxsize=32)
def transform(pre: Preprocessing) -> Compose:
    steps = []
    if pre.intensity == "minmax":
        steps.append(ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True))
    elif pre.intensity == "zscore":
        steps.append(NormalizeIntensity(channel_wise=True))
    return Compose(steps)


def prepare_batch(pre: Preprocessing, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, C, *spatial)`` float32 images as read → the model's input tensor on ``device``."""
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
