"""NIfTI (.nii, .nii.gz) through nibabel: a 3D volume ``(1, X, Y, Z)`` (a 4D file's last axis becomes the
channels) in the file's voxel order, with voxel spacing from the header. NaN voxels are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader
from data_adapters.records import Image

try:
    import nibabel
    from nibabel.filebasedimages import ImageFileError
except ImportError:
    nibabel = None


class NiftiReader(ImageReader):
    suffixes = (".nii", ".nii.gz")

    @classmethod
    def available(cls) -> bool:
        return nibabel is not None

    def read(self, path: Path) -> Image:
        try:
            img = nibabel.load(str(path))
            data = np.asarray(img.get_fdata(dtype=np.float32))
        except (ImageFileError, OSError, EOFError, ValueError) as e:
            raise InvalidInputError(f"{path}: not a readable NIfTI file ({e})") from e
        if data.ndim == 3:
            data = data[None]
        elif data.ndim == 4:
            data = np.moveaxis(data, -1, 0)
        else:
            raise InvalidInputError(f"{path}: NIfTI volume must be 3D or 4D, got shape {data.shape}")
        nans = int(np.isnan(data).sum())
        if nans:
            raise InvalidInputError(f"{path}: volume contains {nans} NaN voxel(s)")
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
        return Image(array=np.ascontiguousarray(data, np.float32), spacing=spacing, source=str(path))
