"""NIfTI (.nii, .nii.gz) through nibabel: a 3D volume ``(1, D, H, W)`` (a 4D file's last axis becomes the
channels) with voxel spacing from the header and, where the header sets ``cal_min``/``cal_max``, that display range
as the default window. NaN and infinite voxels are refused.

Volumes are reoriented from the file's voxel order into the layout a DICOM axial series reads into, so a model
and the three-plane viewer see the same anatomy either way: axis 0 inferior → superior, axis 1 anterior →
posterior, axis 2 patient right → left (the radiological display: the patient's right on the viewer's left)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader, check_size
from data_adapters.records import Image

try:
    import nibabel
    from nibabel.filebasedimages import ImageFileError
    from nibabel.orientations import OrientationError
except ImportError:
    nibabel = None

__all__ = ["NiftiReader"]


MSG_NO_ORIENTATION = ("{path}: the NIfTI header sets neither an sform nor a qform (both codes 0), so which way is "
                      "left, anterior or up is unknown; refused rather than guessed (save it with its affine)")
MSG_BAD_AFFINE = "{path}: the NIfTI {which} is not a usable orientation ({why}); refused rather than guessed"


def _check_orientation(path: Path, img) -> None:
    """A volume is reoriented by its affine: with no sform and no qform, or a singular or non-finite one, the
    anatomy's directions are unknown (nibabel would fall back to voxel sizes alone, silently)."""
    header = img.header
    if not hasattr(header, "get_sform"):  # not a NIfTI-1/2 header (Analyze): nothing to check
        return
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code == 0 and qform_code == 0:
        raise InvalidInputError(MSG_NO_ORIENTATION.format(path=path))
    which = "sform" if sform_code else "qform"
    affine = np.asarray(header.get_sform() if sform_code else header.get_qform(), dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InvalidInputError(MSG_BAD_AFFINE.format(path=path, which=which, why="non-finite entries"))
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InvalidInputError(MSG_BAD_AFFINE.format(path=path, which=which, why="a singular matrix"))


class NiftiReader(ImageReader):
    suffixes = (".nii", ".nii.gz")

    @classmethod
    def available(cls) -> bool:
        return nibabel is not None

    def read(self, path: Path) -> Image:
        try:
            header_only = nibabel.load(str(path))
            check_size(path, tuple(header_only.shape))  # from the header, before decoding
            _check_orientation(path, header_only)
            img = nibabel.as_closest_canonical(header_only)  # RAS+: x → right, y → anterior, z → up
            data = np.asarray(img.get_fdata(dtype=np.float32))
        except InvalidInputError:
            raise
        except (ImageFileError, OSError, EOFError, ValueError, np.linalg.LinAlgError, OrientationError) as e:
            raise InvalidInputError(f"{path}: not a readable NIfTI file ({e})") from e
        if data.ndim == 3:
            data = data[..., None]
        elif data.ndim != 4:
            raise InvalidInputError(f"{path}: NIfTI volume must be 3D or 4D, got shape {data.shape}")
        # (x R, y A, z S, c) -> (c, z S, y P, x L)
        data = np.transpose(data, (3, 2, 1, 0))[:, :, ::-1, ::-1]
        bad = int((~np.isfinite(data)).sum())
        if bad:
            raise InvalidInputError(f"{path}: volume contains {bad} NaN or infinite voxel(s)")
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3][::-1])
        low, high = float(img.header["cal_min"]), float(img.header["cal_max"])  # the file's display range
        window = ((low + high) / 2, high - low) if high > low else None
        return Image(array=np.ascontiguousarray(data, np.float32), spacing=spacing, source=str(path), window=window)
