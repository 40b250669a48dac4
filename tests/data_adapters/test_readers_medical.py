"""DICOM and NIfTI readers on the real files pydicom and nibabel ship, plus files written here."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from data_adapters.cohort import load_manifest
from data_adapters.errors import InvalidInputError
from data_adapters.readers import READERS, read_image

NIFTI_DATA = Path(nibabel.__file__).parent / "tests" / "data"


def test_ct_is_rescaled_to_hounsfield_units_with_spacing():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.shape == (1, 128, 128) and image.spacing == pytest.approx((0.661468, 0.661468))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(image.array[0], expected)
    assert image.array.min() < -800  # air in HU, not raw stored values


def test_voi_window_comes_from_the_file():
    assert read_image(get_testdata_file("MR_small.dcm")).window == (600.0, 1600.0)


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    plain = read_image(get_testdata_file("MR_small.dcm")).array
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inv.dcm")
    inverted = read_image(tmp_path / "inv.dcm").array
    np.testing.assert_allclose(inverted, plain.max() + plain.min() - plain)


def test_multi_frame_file_is_a_volume(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    frames = np.stack([ds.pixel_array + k for k in range(3)]).astype(ds.pixel_array.dtype)
    ds.NumberOfFrames = 3
    ds.SliceThickness = 2.5
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "multi.dcm")
    image = read_image(tmp_path / "multi.dcm")
    assert image.shape == (1, 3, 64, 64) and image.spacing == (2.5, 0.3125, 0.3125)
    np.testing.assert_allclose(image.array[0, 2] - image.array[0, 0], 2.0)


def test_bad_dicoms_name_the_file_and_the_problem(tmp_path):
    (tmp_path / "notes.dcm").write_text("this is not DICOM")
    with pytest.raises(InvalidInputError, match=r"notes\.dcm: not a DICOM file"):
        read_image(tmp_path / "notes.dcm")
    with pytest.raises(InvalidInputError, match=r"MR_truncated\.dcm: pixel data is truncated or corrupt"):
        read_image(get_testdata_file("MR_truncated.dcm"))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(InvalidInputError, match=r"nopixels\.dcm: DICOM file has no pixel data"):
        read_image(tmp_path / "nopixels.dcm")
    with pytest.raises(InvalidInputError, match=r"compressed transfer syntax 'JPEG-LS Lossy \(Near-Lossless\) "
                                                r"Image Compression' .* install pylibjpeg"):
        read_image(get_testdata_file("JPEGLSNearLossless_08.dcm"))


def test_nifti_keeps_spacing_and_refuses_nans(tmp_path):
    image = read_image(NIFTI_DATA / "anatomical.nii")
    assert image.shape == (1, 25, 41, 33) and image.spacing == (2.0, 2.0, 2.0)
    four = read_image(NIFTI_DATA / "example4d.nii.gz")
    assert four.shape[0] == 2 and four.shape[1:] == (24, 96, 128)
    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = np.nan
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidInputError, match=r"nan\.nii\.gz: volume contains 1 NaN or infinite voxel\(s\)"):
        read_image(tmp_path / "nan.nii.gz")
    data[1, 2, 3], data[0, 0, 0] = np.inf, -np.inf
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), tmp_path / "inf.nii.gz")
    with pytest.raises(InvalidInputError, match=r"inf\.nii\.gz: volume contains 2 NaN or infinite voxel\(s\)"):
        read_image(tmp_path / "inf.nii.gz")
    (tmp_path / "fake.nii").write_bytes(b"\x00" * 40)
    with pytest.raises(InvalidInputError, match=r"fake\.nii: not a readable NIfTI file"):
        read_image(tmp_path / "fake.nii")


def test_a_manifest_mixes_formats_and_rejects_per_row(tmp_path):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "a.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "b.dcm")
    (tmp_path / "c.dcm").write_text("garbage")
    (tmp_path / "manifest.csv").write_text("case_id,image,label\na,a.dcm,0\nb,b.dcm,1\nc,c.dcm,0\n")
    cohort = load_manifest(tmp_path / "manifest.csv")
    assert [c.case_id for c in cohort.cases] == ["a", "b"] and cohort.cases[0].shape == (1, 64, 64)
    assert str(cohort.report.rejections[0]).startswith("row 3 (case c), field 'image': c.dcm: not a DICOM file")
    assert READERS.names() == ["png", "dicom", "dicom_series", "nifti"]


def test_display_windows_offer_ct_presets_only_for_hounsfield_images():
    from explainers.figures import display_windows

    ct = read_image(get_testdata_file("CT_small.dcm"))
    assert {"full range", "lung", "soft tissue", "bone"} <= set(display_windows(ct.array, ct.window))
    mr = read_image(get_testdata_file("MR_small.dcm"))
    assert list(display_windows(mr.array, mr.window)) == ["from file", "full range"]


def test_predict_and_explain_work_unchanged_on_a_dicom_cohort(tmp_path, capsys):
    from tests.helpers import torchscript_binary_model
    from workspace.cli import main

    for i in range(3):
        shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / f"s{i}.dcm")
    (tmp_path / "manifest.csv").write_text("case_id,image,label\n" + "".join(f"s{i},s{i}.dcm,{i % 2}\n" for i in range(3)))
    model = torchscript_binary_model(tmp_path / "model", 64)
    args = ["--model", str(model), "--cohort", str(tmp_path / "manifest.csv"), "--workspace", str(tmp_path / "ws")]
    assert main(["check", "--cohort", str(tmp_path / "manifest.csv"), "--model", str(model)]) == 0
    assert main(["predict", *args, "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["explain", *args, "--case", "s1", "--method", "integrated_gradients",
                 "--out", str(tmp_path / "m.npy")]) == 0
    assert np.load(tmp_path / "m.npy").shape == (1, 64, 64)
    assert "3 of 3 rows loaded" in capsys.readouterr().out


def test_bits_stored_is_checked_against_the_raw_values(tmp_path):
    """Issue 24: pydicom masks the bits above BitsStored away, so a file whose BitsStored lies read as silently cut
    values. A signed image whose negative values carry their sign in the high bits still reads."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))  # values 127 to 2145: 12 bits unsigned
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    ds.save_as(tmp_path / "honest.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "honest.dcm").array, read_image(
        get_testdata_file("MR_small.dcm")).array)
    ds.BitsStored, ds.HighBit = 11, 10
    ds.save_as(tmp_path / "lying.dcm")
    with pytest.raises(InvalidInputError, match=r"lying\.dcm: \d+ pixel value\(s\) need more than BitsStored = 11 "
                                                r"bits \(largest raw value 2145, limit 2047\)"):
        read_image(tmp_path / "lying.dcm")
    signed = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    values = (signed.pixel_array.astype(np.int16) - 1000)  # negatives, sign-extended in 16 bits
    signed.PixelRepresentation, signed.BitsStored, signed.HighBit = 1, 12, 11
    signed.PixelData = values.tobytes()
    signed.save_as(tmp_path / "signed.dcm")
    assert read_image(tmp_path / "signed.dcm").array.min() == values.min() < 0


def test_a_nifti_with_only_a_qform_reads_and_one_with_neither_is_refused(tmp_path):
    img = nibabel.Nifti1Image(np.ones((3, 4, 5), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_sform(None, code=0)
    img.header.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    nibabel.save(img, tmp_path / "qform.nii.gz")
    assert read_image(tmp_path / "qform.nii.gz").shape == (1, 5, 4, 3)
    img = nibabel.Nifti1Image(np.ones((3, 4, 5), np.float32), None)  # no affine: nibabel then writes codes 0
    img.header.set_sform(None, code=0)
    img.header.set_qform(None, code=0)
    nibabel.save(img, tmp_path / "neither.nii.gz")
    with pytest.raises(InvalidInputError, match=r"neither\.nii\.gz: the NIfTI header sets neither an sform nor a "
                                                r"qform"):
        read_image(tmp_path / "neither.nii.gz")
