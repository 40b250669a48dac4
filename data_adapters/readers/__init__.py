"""Image readers: one registry, picked by file suffix.

Adding a format is adding one module here with an :class:`ImageReader` subclass registered in ``READERS``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader
from data_adapters.readers.dicom import DicomReader
from data_adapters.readers.dicom_series import DicomSeriesReader, parse_series_ref
from data_adapters.readers.nifti import NiftiReader
from data_adapters.readers.png import PngReader
from data_adapters.records import Image
from data_adapters.registry import Registry

__all__ = ["READERS", "ImageReader", "is_image_file", "read_image", "reader_for"]

READERS: Registry[type[ImageReader]] = Registry("image reader")
READERS.register(PngReader)
READERS.register(DicomReader)
READERS.register(DicomSeriesReader)
READERS.register(NiftiReader)

MSG_NO_READER = ("{path}: no image reader takes files named like this, and the content is not DICOM either; "
                 "supported suffixes: {suffixes}")


def reader_for(path: Path) -> ImageReader:
    if path.is_dir() or parse_series_ref(path):
        folder_readers = [r for _, r in READERS.items() if r.folders and r.available()]
        if folder_readers:
            return folder_readers[0]()
        raise InvalidInputError(f"{path}: is a folder, and no available reader takes folders (install pydicom)")
    for _, reader in READERS.items():
        if reader.available() and reader.verify_suffix(path):
            return reader()
    if not any(r.verify_suffix(path) for _, r in READERS.items()):  # a name that says nothing: look inside
        for _, reader in READERS.items():
            if reader.available() and reader.sniff(path):
                return reader()
    suffixes = sorted(s for _, r in READERS.items() if r.available() for s in r.suffixes)
    raise InvalidInputError(MSG_NO_READER.format(path=path, suffixes=", ".join(suffixes)))


def is_image_file(path: Path) -> bool:
    """Whether an available reader takes ``path``, by its name or, for names without a known suffix, its content.
    Never opens what is not a regular file (a FIFO would block the sniffing read forever)."""
    if not path.is_file():
        return False
    if any(r.available() and r.verify_suffix(path) for _, r in READERS.items()):
        return True
    return any(r.available() and r.sniff(path) for _, r in READERS.items())


def read_image(path: str | Path) -> Image:
    """Read any supported image file, DICOM series folder or series reference (``FOLDER/@SeriesInstanceUID``)
    into a float32 channel-first :class:`Image`."""
    path = Path(path)
    if not path.exists() and not parse_series_ref(path):
        raise InvalidInputError(f"{path}: file not found")
    if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO would block the first read forever
        raise InvalidInputError(f"{path.name}: not a regular file (a FIFO, socket or device); refused without opening")
    image = reader_for(path).read(path)
    bad = int(image.array.size - np.isfinite(image.array).sum())
    if bad:  # one bad case is a per-row rejection, never NaN flowing into a batch of predictions
        raise InvalidInputError(f"{path}: image contains {bad} NaN or infinite value(s)")
    return image
