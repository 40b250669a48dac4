"""PNG and JPEG, 8 or 16 bit, grey or colour, through Pillow.

Intensities are scaled once by the file's bit depth to float32 in [0, 1]; colour images become 3 channels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader, check_size
from data_adapters.records import Image

MSG_UNREADABLE = "{path}: not a readable PNG/JPEG image ({why})"
MSG_TRUNCATED = "{path}: image data is truncated or corrupt ({why})"
MSG_MODE = "{path}: unsupported pixel mode {mode!r} (grey 8/16-bit, RGB or RGBA are supported)"

_SCALE = {"1": 1.0, "L": 255.0, "LA": 255.0, "P": 255.0, "RGB": 255.0, "RGBA": 255.0,
          "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0}


class PngReader(ImageReader):
    suffixes = (".png", ".jpg", ".jpeg")

    def read(self, path: Path) -> Image:
        try:
            with PILImage.open(path) as img:
                check_size(path, (*img.size[::-1], len(img.getbands())))  # from the header, before decoding
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
