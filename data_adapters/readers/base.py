"""The interface every image reader shares (after MONAI's ``ImageReader``)."""
from __future__ import annotations

from pathlib import Path

from data_adapters.records import Image


class ImageReader:
    """Reads one image file into a float32, channel-first :class:`Image`."""

    #: lower-case suffixes this reader takes, with the dot (``.nii.gz`` style suffixes allowed)
    suffixes: tuple[str, ...] = ()
    #: True for readers that take a folder (a DICOM series) instead of a file
    folders: bool = False

    @classmethod
    def verify_suffix(cls, path: Path) -> bool:
        name = path.name.lower()
        return any(name.endswith(s) for s in cls.suffixes)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """For files whose name says nothing (PACS exports name DICOM files ``IM000123``): whether the content
        is this reader's format. Asked only when no reader takes the suffix."""
        return False

    @classmethod
    def available(cls) -> bool:
        """False when an optional package the reader needs is missing."""
        return True

    def read(self, path: Path) -> Image:
        raise NotImplementedError
