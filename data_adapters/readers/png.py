"""PNG and JPEG, 8 or 16 bit, grey or colour, through Pillow.

Intensities are scaled once by the file's bit depth to float32 in [0, 1]; colour images become 3 channels.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile
from PIL import UnidentifiedImageError

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader, check_size
from data_adapters.records import Image

__all__ = ["PngReader"]

MSG_UNREADABLE = "{path}: not a readable PNG/JPEG image ({why})"
MSG_TRUNCATED = "{path}: image data is truncated or corrupt ({why})"
MSG_MODE = "{path}: unsupported pixel mode {mode!r} (grey 8/16-bit, RGB or RGBA are supported)"
MSG_ANIMATED = ("{path}: an animated image ({frames} frames); a still image is expected (only the first frame would "
                "be seen, so it is refused)")

#: channels each supported mode reads as (palette becomes RGB; alpha is dropped)
_CHANNELS = {"1": 1, "L": 1, "LA": 1, "P": 3, "RGB": 3, "RGBA": 3, "I;16": 1, "I;16B": 1, "I;16L": 1, "I": 1}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_SCALE = {"1": 1.0, "L": 255.0, "LA": 255.0, "P": 255.0, "RGB": 255.0, "RGBA": 255.0,
          "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0}


class PngReader(ImageReader):
    suffixes = (".png", ".jpg", ".jpeg")

    def read(self, path: Path) -> Image:
        try:
            with PILImage.open(path) as img:
                check_size(path, (*img.size[::-1], len(img.getbands())))  # from the header, before decoding
                _still(path, img)
                # WeasyPrint (the PDF report) sets Pillow's process-wide LOAD_TRUNCATED_IMAGES on import, which
                # would let a truncated image load with grey filling: turned off again before every decode (the
                # report embeds only images Glassbox drew, which are never truncated)
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                img.load()
                mode = img.mode
                if mode not in _SCALE:
                    raise InvalidInputError(MSG_MODE.format(path=path, mode=mode))
                if mode == "P":
                    img = img.convert("RGB")
                    mode = "RGB"
                data = np.asarray(img)
        except UnidentifiedImageError as e:
            raise InvalidInputError(MSG_UNREADABLE.format(path=path, why="unknown format")) from e
        except PILImage.DecompressionBombError as e:
            raise InvalidInputError(f"{path.name}: image is too large to decode safely ({e})") from e
        except (OSError, SyntaxError, ValueError) as e:
            if isinstance(e, InvalidInputError):
                raise
            raise InvalidInputError(MSG_TRUNCATED.format(path=path, why=str(e) or type(e).__name__)) from e
        array = data.astype(np.float32) / _SCALE[mode]
        if mode == "I" and data.max(initial=0) > 65535:
            raise InvalidInputError(f"{path}: 32-bit integer pixels above 65535 are not supported")
        if array.ndim == 2:
            array = array[None]
        else:  # H, W, C -> C, H, W; alpha is not image content
            array = np.moveaxis(array[..., :3] if mode in ("RGBA",) else array[..., :1] if mode == "LA" else array, -1, 0)
        return Image(array=np.ascontiguousarray(array, dtype=np.float32), spacing=(1.0, 1.0), source=str(path))

    @classmethod
    def header_shape(cls, path: Path, data: bytes) -> tuple[int, ...] | None:
        """Size and mode from the header; a PNG's every chunk length and CRC checked and its ``IEND`` found, a
        JPEG's start and end markers: a truncated or corrupted file is found without decoding a pixel."""
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                size, mode, kind = img.size, img.mode, img.format
                frames = int(getattr(img, "n_frames", 1) or 1)  # from acTL, without decoding a frame
        except UnidentifiedImageError as e:
            raise InvalidInputError(MSG_UNREADABLE.format(path=path, why="unknown format")) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise InvalidInputError(MSG_TRUNCATED.format(path=path, why=str(e) or type(e).__name__)) from e
        if mode not in _CHANNELS:
            raise InvalidInputError(MSG_MODE.format(path=path, mode=mode))
        if frames > 1:
            raise InvalidInputError(MSG_ANIMATED.format(path=path, frames=frames))
        shape = (_CHANNELS[mode], size[1], size[0])
        check_size(path, (size[1], size[0], len(mode)))
        why = _png_damage(data) if kind == "PNG" else _jpeg_damage(data) if kind == "JPEG" else "not PNG or JPEG"
        if why:
            raise InvalidInputError(MSG_TRUNCATED.format(path=path, why=why))
        return shape


def _still(path: Path, img) -> None:
    """Refuse an animated PNG (APNG) or multi-frame image: reading it would silently keep its first frame."""
    frames = int(getattr(img, "n_frames", 1) or 1)
    if frames > 1:
        raise InvalidInputError(MSG_ANIMATED.format(path=path, frames=frames))


def _png_damage(data: bytes) -> str | None:
    """Why a PNG's chunk structure is broken (a length past the end, a CRC that does not match, no ``IEND``), or
    None. ``zlib.crc32`` runs in C: checking every chunk costs far less than inflating the pixels."""
    if not data.startswith(_PNG_SIGNATURE):
        return "no PNG signature"
    at, end = len(_PNG_SIGNATURE), len(data)
    while at + 12 <= end:
        length, = struct.unpack(">I", data[at:at + 4])
        kind = data[at + 4:at + 8]
        stop = at + 12 + length
        if stop > end:
            return f"chunk {kind.decode('latin-1')!r} runs past the end of the file"
        crc, = struct.unpack(">I", data[stop - 4:stop])
        if zlib.crc32(data[at + 4:stop - 4]) != crc:
            return f"chunk {kind.decode('latin-1')!r} fails its CRC"
        if kind == b"IEND":
            return None
        at = stop
    return "the file ends before its IEND chunk"


def _jpeg_damage(data: bytes) -> str | None:
    if not data.startswith(b"\xff\xd8"):
        return "no JPEG start marker"
    if b"\xff\xd9" not in data[-4096:]:
        return "no JPEG end marker: the file is cut short"
    return None
