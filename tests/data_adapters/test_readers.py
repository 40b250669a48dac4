"""PNG/JPEG reader: bit depths, channels, and the messages for files it cannot read."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from data_adapters.errors import InvalidInputError, UnknownNameError
from data_adapters.readers import READERS, read_image
from tests.helpers import write_png


def test_16_bit_png_is_scaled_by_its_bit_depth(tmp_path):
    raw = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    image = read_image(write_png(tmp_path / "a.png", raw))
    assert image.array.dtype == np.float32 and image.shape == (1, 2, 2) and image.spacing == (1.0, 1.0)
    np.testing.assert_allclose(image.array[0], raw / 65535.0, rtol=1e-6)


def test_8_bit_grey_and_colour(tmp_path):
    grey = read_image(write_png(tmp_path / "g.png", np.array([[0, 255], [51, 102]], dtype=np.uint8)))
    np.testing.assert_allclose(grey.array[0], [[0, 1], [0.2, 0.4]], rtol=1e-6)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = 255
    colour = read_image(write_png(tmp_path / "c.png", rgb))
    assert colour.shape == (3, 3, 4)
    np.testing.assert_allclose(colour.array[1], 1.0)
    np.testing.assert_allclose(colour.array[0], 0.0)


def test_jpeg(tmp_path):
    PILImage.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (1, 8, 8)
    assert abs(float(image.array.mean()) - 128 / 255) < 0.01


def test_truncated_png_names_the_file(tmp_path):
    path = write_png(tmp_path / "t.png", np.random.default_rng(0).integers(0, 65535, (64, 64), dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InvalidInputError, match=r"t\.png: image data is truncated or corrupt"):
        read_image(path)


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(InvalidInputError, match=r"x\.png: not a readable PNG/JPEG image \(unknown format\)"):
        read_image(tmp_path / "x.png")


def test_unknown_suffix_lists_what_is_supported(tmp_path):
    (tmp_path / "x.bmpx").write_bytes(b"00")
    with pytest.raises(InvalidInputError, match=r"no image reader takes files named like this, and the content is "
                                                r"not DICOM either; supported suffixes: "
                                                r"\.dcm, \.dicom, \.jpeg, \.jpg, \.nii, \.nii\.gz, \.png"):
        read_image(tmp_path / "x.bmpx")


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")


def test_registry_key_is_the_module_name_and_suggests():
    assert READERS.names() == ["png", "dicom", "dicom_series", "nifti"]
    with pytest.raises(UnknownNameError, match=r"unknown image reader 'pgn' \(did you mean 'png'\?\); known: dicom, "
                                               r"dicom_series, nifti, png"):
        READERS.get("pgn")


def test_a_truncated_png_is_refused_even_after_weasyprint_loosened_pillow(tmp_path):
    """WeasyPrint sets Pillow's process-wide LOAD_TRUNCATED_IMAGES on import (the report imports it): a server that
    made a PDF must still refuse a truncated image rather than decode it with grey filling."""
    pytest.importorskip("weasyprint")
    import weasyprint  # noqa: F401
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as WeasyPrint leaves it
    path = write_png(tmp_path / "t.png", np.random.default_rng(0).integers(0, 65535, (64, 64), dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InvalidInputError, match=r"truncated or corrupt"):
        read_image(path)


def test_a_fifo_is_never_opened_by_the_readers(tmp_path):
    """Issue 24: a FIFO in a cohort hung the check forever (the first read blocks until a writer comes)."""
    import os
    import threading

    from data_adapters.errors import InvalidInputError
    from data_adapters.readers import is_image_file, read_image

    fifo = tmp_path / "IM0001"
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "a.png")
    answers = {}

    def work():
        answers["sniffed"] = is_image_file(fifo)
        try:
            read_image(tmp_path / "a.png")
        except InvalidInputError as e:
            answers["read"] = str(e)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(20)
    for path in (fifo, tmp_path / "a.png"):  # release a reader blocked on a FIFO, should one be
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert not thread.is_alive(), "a reader blocked on a FIFO"
    assert answers == {"sniffed": False,
                       "read": "a.png: not a regular file (a FIFO, socket or device); refused without opening"}
