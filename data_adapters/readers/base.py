"""The interface every image reader shares (after MONAI's ``ImageReader``)."""
from __future__ import annotations

import os
from pathlib import Path

from data_adapters.errors import InvalidInputError
from data_adapters.records import Image

__all__ = ["check_size", "ImageReader"]

#: the most values (pixels or voxels × channels) one image may hold, checked from its header before any pixel is
#: decoded, so that a small compressed file cannot expand into gigabytes (``$GLASSBOX_MAX_PIXELS`` overrides;
#: the default takes a 512×512×600 CT series and refuses a 13000² radiograph)
DEFAULT_MAX_PIXELS = 160_000_000


def max_pixels() -> int:
    try:
        return int(os.environ.get("GLASSBOX_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def check_size(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse an image whose header promises more values than :func:`max_pixels`, naming the file and its shape."""
    total = 1
    for n in shape:
        total *= max(int(n), 0)
    limit = max_pixels()
    if total > limit:
        raise InvalidInputError(f"{path.name}: image is {'×'.join(map(str, shape))} ({total:,} values), over the "
                                f"limit of {limit:,} (GLASSBOX_MAX_PIXELS); refused before decoding")


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

    @classmethod
    def header_shape(cls, path: Path, data: bytes) -> tuple[int, ...] | None:
        """The shape ``(C, *spatial)`` the file will read as, from its header and integrity checks that decode no
        pixel (``data``: the file's bytes); None when this reader cannot tell without decoding (the caller then
        reads the image). Raises :class:`InvalidInputError` naming the file for what the header shows is wrong."""
        return None
