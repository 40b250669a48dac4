"""DICOM through pydicom: modality rescale (slope/intercept, so CT is in HU), MONOCHROME1 inversion,
multi-frame files as volumes, pixel spacing and the file's default VOI window.

Only pixel data and geometry leave this module: no patient or study identifier is read into the record.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader, check_size
from data_adapters.records import Image

try:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_rescale
except ImportError:  # a missing optional package makes the reader unavailable, not the import fail
    pydicom = None

__all__ = ["DicomReader", "open_dicom", "pixels_of", "in_plane_spacing", "voi_window"]

#: transfer syntaxes pydicom cannot decode alone, and the package that adds them
DECODERS = {
    "JPEG": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
}

def _package_for(syntax_name: str) -> str:
    for key in ("JPEG 2000", "JPEG-LS", "JPEG"):
        if key.replace(" ", "").lower() in syntax_name.replace(" ", "").lower():
            return DECODERS[key]
    return "pylibjpeg with its plugins, or python-gdcm"


def _first(value) -> float | None:
    """A VOI tag may hold one value or several (one per window); the first is the default."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


class DicomReader(ImageReader):
    suffixes = (".dcm", ".dicom")

    @classmethod
    def available(cls) -> bool:
        return pydicom is not None

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A DICOM Part 10 file: 128-byte preamble, then ``DICM``. Only a regular file is opened (never a FIFO)."""
        if not path.is_file():
            return False
        try:
            with open(path, "rb") as f:
                head = f.read(132)
        except OSError:
            return False
        return head[128:132] == b"DICM"

    def read(self, path: Path) -> Image:
        return decode(open_dicom(path), path)


def open_dicom(path: Path, *, pixels: bool = True):
    """``pydicom.dcmread`` with its failures turned into messages that name the file."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError as e:
        raise InvalidInputError(f"{path}: not a DICOM file ({e})") from e
    except (OSError, EOFError, ValueError) as e:
        raise InvalidInputError(f"{path}: DICOM file is truncated or unreadable ({e})") from e


def pixels_of(ds, path: Path) -> np.ndarray:
    """Modality values (rescaled; MONOCHROME1 inverted), channel-first: ``(C, H, W)`` or ``(C, F, H, W)``."""
    if "PixelData" not in ds:
        raise InvalidInputError(f"{path}: DICOM file has no pixel data (a report or structured object?)")
    check_size(path, (int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows", 0) or 0),
                      int(ds.get("Columns", 0) or 0), int(ds.get("SamplesPerPixel", 1) or 1)))
    try:
        pixels = ds.pixel_array
    except (RuntimeError, NotImplementedError) as e:
        syntax = ds.file_meta.TransferSyntaxUID
        raise InvalidInputError(
            f"{path}: pixel data uses the compressed transfer syntax '{syntax.name}' ({syntax}), which "
            f"pydicom cannot decode without extra packages; install {_package_for(syntax.name)}") from e
    except (ValueError, EOFError, OSError) as e:
        raise InvalidInputError(f"{path}: pixel data is truncated or corrupt ({e})") from e
    _check_bits(ds, pixels, path)
    _check_rescale(ds, path)
    values = apply_rescale(pixels, ds).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        values = values.max() + values.min() - values  # bright means dense, as in MONOCHROME2
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:  # colour: (..., H, W, 3) -> channels first
        return np.moveaxis(values, -1, 0)
    return values[None]


def _tag_number(ds, keyword: str, path: Path) -> float | None:
    """A numeric tag as a finite float, None when absent; a value that is not a number is named (never guessed)."""
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise InvalidInputError(f"{path.name}: {keyword} {str(value)[:32]!r} is not a finite number, so the pixel "
                                "values cannot be rescaled to modality units")
    return number


def _check_rescale(ds, path: Path) -> None:
    """RescaleSlope and RescaleIntercept must be numbers (a slope of 0 would make every pixel one value)."""
    slope = _tag_number(ds, "RescaleSlope", path)
    _tag_number(ds, "RescaleIntercept", path)
    if slope == 0:
        raise InvalidInputError(f"{path.name}: RescaleSlope is 0, which would make every pixel the same value")


def _check_bits(ds, pixels: np.ndarray, path: Path) -> None:
    """Stored values must fit in BitsStored: pydicom masks the bits above it away, so a file whose BitsStored is
    lower than its data needs would read as silently wrapped values. Checked on the raw (uncompressed) pixel data
    before masking; a signed image may carry its sign in the high bits."""
    try:
        stored, allocated = int(ds.BitsStored), int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as e:
        raise InvalidInputError(f"{path.name}: BitsStored/BitsAllocated missing or not whole numbers") from e
    if not 1 <= stored <= allocated:
        raise InvalidInputError(f"{path.name}: BitsStored {stored} must be from 1 to BitsAllocated ({allocated})")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if stored == allocated or allocated not in (8, 16, 32) or (syntax is not None and (
            syntax.is_compressed or not syntax.is_little_endian)):
        return
    raw = np.frombuffer(ds.PixelData, dtype=f"<u{allocated // 8}", count=int(pixels.size)) \
        if len(ds.PixelData) >= pixels.size * allocated // 8 else None
    if raw is None:
        return
    high = raw >> stored
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    bad = (high != 0) & ~(signed & (high == (1 << (allocated - stored)) - 1))
    if bad.any():
        top = int(raw.max())
        raise InvalidInputError(f"{path.name}: {int(bad.sum())} pixel value(s) need more than BitsStored = {stored} "
                                f"bits (largest raw value {top}, limit {2 ** stored - 1}); BitsStored is wrong, "
                                "and reading would silently cut the values")


def in_plane_spacing(ds, path: Path | None = None) -> tuple[float, float]:
    """(row spacing, column spacing) in mm from PixelSpacing, else 1.0; values that are not two positive finite
    numbers are named (a resampling by zero or ``ab`` mm would fail later, far from the file)."""
    rows = ds.get("PixelSpacing", [1.0, 1.0]) or [1.0, 1.0]
    try:
        spacing = (float(rows[0]), float(rows[1]))
    except (TypeError, ValueError, IndexError):
        spacing = (float("nan"), float("nan"))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        name = path.name if path is not None else "DICOM file"
        shown = "\\".join(str(v) for v in rows) if isinstance(rows, (list, tuple)) or type(
            rows).__name__ == "MultiValue" else str(rows)
        raise InvalidInputError(f"{name}: PixelSpacing '{shown[:40]}' is not two positive numbers (mm)")
    return spacing


def voi_window(ds) -> tuple[float, float] | None:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    return (center, width) if center is not None and width else None


def decode(ds, path: Path) -> Image:
    values = pixels_of(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    in_plane = in_plane_spacing(ds, path)
    thickness = _tag_number(ds, "SliceThickness", path) if frames > 1 else None
    if thickness is not None and thickness <= 0:
        raise InvalidInputError(f"{path.name}: SliceThickness {thickness:g} must be positive (mm)")
    spacing = in_plane if frames == 1 else (thickness or 1.0, *in_plane)
    return Image(array=np.ascontiguousarray(values, np.float32), spacing=spacing, source=str(path),
                 window=voi_window(ds))
