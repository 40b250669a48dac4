"""DICOM series → volume: slices sorted by position, spacing from positions, irregular series refused with the
reason; and the same volume written as a series and as NIfTI reads into the same array."""
from __future__ import annotations

import nibabel
import numpy as np
import pydicom
import pytest

from data_adapters.cohort import load_manifest
from data_adapters.demo.dicom_export import write_series as write_dicom_series
from data_adapters.dicom_folder import load_dicom_folder
from data_adapters.errors import InvalidInputError
from data_adapters.readers import read_image


def _volume(depth=6, h=10, w=12, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.integers(900, 1200, (depth, h, w)).astype(np.uint16)
    v[np.arange(depth), np.arange(depth) % h, np.arange(depth) % w] = 3000  # each slice marked where it belongs
    return v


def test_series_is_sorted_by_position_with_spacing_from_positions(tmp_path):
    v = _volume()
    files = write_dicom_series(tmp_path / "s", v, spacing=(2.5, 0.8, 0.7))
    assert sorted(f.name for f in files) != [f.name for f in files], "file names must not give the order"
    (tmp_path / "s" / "notes.txt").write_text("a note beside the slices is skipped")
    image = read_image(tmp_path / "s")
    assert image.shape == (1, 6, 10, 12)
    assert image.spacing == (2.5, 0.8, 0.7)
    np.testing.assert_array_equal(image.array[0], v.astype(np.float32) - 1024.0)  # rescaled to HU, in order
    assert image.window == (40.0, 400.0)


def test_series_and_nifti_of_one_volume_read_alike(tmp_path):
    v = _volume(depth=5, h=7, w=9)
    write_dicom_series(tmp_path / "s", v, spacing=(3.0, 1.0, 1.5), intercept=0.0)
    # the same voxels in NIfTI's RAS world: DICOM's LPS (x → left, y → posterior) has x and y negated
    nibabel.save(nibabel.Nifti1Image(v.transpose(2, 1, 0).astype(np.float32), np.diag([-1.5, -1.0, 3.0, 1.0])),
                 tmp_path / "v.nii.gz")
    series, nifti = read_image(tmp_path / "s"), read_image(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(series.array, nifti.array)
    assert series.spacing == nifti.spacing == (3.0, 1.0, 1.5)


def _move(path, **tags):
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path)


@pytest.mark.parametrize(("damage", "message"), [
    ("gap", r"gap of 5\.00 mm where the spacing is 2\.50 mm \(about 1 slice\(s\) missing\) between IM"),
    ("orientation", r"mixed slice orientations \(5 slice\(s\) at .*, 1 slice\(s\) at .*\)"),
    ("duplicate", r"lie at the same position"),
    ("uneven", r"uneven spacing \(1\.50 mm where the rest is 2\.50 mm\)"),
    ("two_series", r"holds 2 series; put each series in its own folder"),
    ("truncated", r"IM\d+\.dcm: .*truncated"),
])
def test_irregular_series_are_refused_with_the_reason(tmp_path, damage, message):
    files = write_dicom_series(tmp_path / "s", _volume(), spacing=(2.5, 0.8, 0.7))
    by_z = sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    if damage == "gap":
        by_z[3].unlink()
    elif damage == "orientation":
        _move(by_z[2], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    elif damage == "duplicate":
        _move(by_z[2], ImagePositionPatient=by_z[1] and pydicom.dcmread(by_z[1]).ImagePositionPatient)
    elif damage == "uneven":
        _move(by_z[5], ImagePositionPatient=[-100.0, -120.0, -40.0 + 4 * 2.5 + 1.5])
    elif damage == "two_series":
        _move(by_z[0], SeriesInstanceUID="1.2.3.4")
    elif damage == "truncated":
        by_z[4].write_bytes(by_z[4].read_bytes()[:-50])  # a copy cut short inside the pixel data
    with pytest.raises(InvalidInputError, match=message):
        read_image(tmp_path / "s")


def test_series_folders_in_a_manifest_and_in_a_dicom_folder_cohort(tmp_path):
    root = tmp_path / "data"
    write_dicom_series(root / "good", _volume(seed=1), series_uid="1.2.826.0.1.3680043.8.498.1")
    files = write_dicom_series(root / "gapped", _volume(seed=2), series_uid="1.2.826.0.1.3680043.8.498.2")
    files[2].unlink()
    write_dicom_series(root / "other", _volume(seed=3), series_uid="1.2.826.0.1.3680043.8.498.3",
                       PatientSex="F", InstitutionName="North")
    (root / "empty").mkdir()
    (root / "manifest.csv").write_text("case_id,image,label\na,good,1\nb,gapped,0\nc,other,0\nd,empty,1\n")
    cohort = load_manifest(root / "manifest.csv")
    assert [c.case_id for c in cohort.cases] == ["a", "c"] and cohort.cases[0].shape == (1, 6, 10, 12)
    reasons = [str(r) for r in cohort.report.rejections]
    assert reasons[0].startswith("row 2 (case b), field 'image': gapped: gap of")
    assert reasons[1].startswith("row 4 (case d), field 'image': empty: folder holds no DICOM files")

    (root / "manifest.csv").unlink()
    folder_cohort = load_dicom_folder(root, salt="s")
    assert len(folder_cohort) == 2, "one case per series folder, not per slice"
    assert {c.shape for c in folder_cohort.cases} == {(1, 6, 10, 12)}
    assert set(folder_cohort.frame()["site"].dropna()) == {"North"}
    assert [r.reason.split(":")[0] for r in folder_cohort.report.rejections] == ["gapped"]


def test_every_bad_input_in_one_dicom_folder_is_rejected_and_the_rest_loads(tmp_path):
    from pathlib import Path
    from shutil import copy

    from pydicom.data import get_testdata_file

    root = tmp_path / "studies"
    write_dicom_series(root / "p1" / "good", _volume(seed=4), series_uid="1.2.826.0.1.3680043.8.498.10")
    files = write_dicom_series(root / "p2" / "tilted", _volume(seed=5), series_uid="1.2.826.0.1.3680043.8.498.11")
    _move(files[1], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    (root / "p3").mkdir()
    copy(get_testdata_file("CT_small.dcm"), root / "p3" / "slice.dcm")
    copy(get_testdata_file("MR_truncated.dcm"), root / "p3" / "cut.dcm")
    (root / "p3" / "fake.dcm").write_text("not a DICOM at all")
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PixelData
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.12"  # a report is a series of its own
    ds.save_as(root / "p3" / "report.dcm")
    cohort = load_dicom_folder(root, salt="s")
    assert sorted(c.shape for c in cohort.cases) == [(1, 6, 10, 12), (1, 128, 128)]
    reasons = sorted(r.reason for r in cohort.report.rejections)
    assert reasons[0].startswith("p2/tilted: mixed slice orientations (5 slice(s) at (1, 0, 0, 0, 1, 0), "
                                 "1 slice(s) at (0, 1, 0, 0, 0, -1)")
    assert reasons[1].startswith("p3/cut.dcm: pixel data is truncated or corrupt")
    assert reasons[2] == "p3/fake.dcm: not a DICOM file"
    assert reasons[3].startswith("p3/report.dcm: DICOM file has no pixel data")
    assert all(str(root) not in r for r in reasons), "messages name files relative to the cohort"
    assert Path(cohort.report.source) == root.resolve()


def test_a_flat_export_with_several_series_splits_into_one_case_per_series(tmp_path):
    """PACS exports often put every series of a study in one folder: each stack becomes a case, addressed
    as FOLDER/@SeriesInstanceUID, and a manifest can pick one series that way."""
    from shutil import copy

    from pydicom.data import get_testdata_file

    flat = tmp_path / "study"
    axial, scout = _volume(seed=6), _volume(depth=4, seed=7)
    write_dicom_series(flat, axial, series_uid="1.2.826.0.1.3680043.8.498.21",
                       names=[f"A{k:03d}.dcm" for k in range(6)])
    files = write_dicom_series(flat, scout, series_uid="1.2.826.0.1.3680043.8.498.22", spacing=(5.0, 0.8, 0.7),
                               names=[f"B{k:03d}.dcm" for k in range(4)])
    copy(get_testdata_file("CT_small.dcm"), flat / "C000.dcm")
    cohort = load_dicom_folder(tmp_path, salt="s")
    assert sorted(c.shape for c in cohort.cases) == [(1, 4, 10, 12), (1, 6, 10, 12), (1, 128, 128)]
    assert cohort.report.summary().endswith("3 case(s) from 11 files; 0 rejected (a rejected series counts once)")
    volume = next(c for c in cohort.cases if c.shape == (1, 6, 10, 12))
    np.testing.assert_array_equal(read_image(volume.image).array[0], axial.astype(np.float32) - 1024.0)

    (tmp_path / "manifest.csv").write_text("case_id,image\nscout,study/@1.2.826.0.1.3680043.8.498.22\n"
                                           "nothing,study/@1.2.3.999\n")
    picked = load_manifest(tmp_path / "manifest.csv")
    assert [c.case_id for c in picked.cases] == ["scout"] and picked.cases[0].shape == (1, 4, 10, 12)
    assert read_image(picked.cases[0].image).spacing == (5.0, 0.8, 0.7)
    assert "folder holds no slices of series 1.2.3.999" in picked.report.rejections[0].reason

    files[1].unlink()  # a gap in the scout is that series' problem alone
    again = load_dicom_folder(flat, salt="s")
    (gap,) = again.report.rejections
    assert len(again) == 2 and "gap of 10.00 mm" in gap.reason
    assert gap.reason.startswith(". (series ") and "1.2.826" not in gap.reason, "no raw UIDs in messages"


def test_pydicoms_real_mr_study_export_loads_what_is_a_volume_or_an_image_and_says_why_not(tmp_path):
    """pydicom ships a real MR study as a PACS writes it (``dicomdirtests/98892003``: suffix-less file names,
    three series folders). Its single images load (recognised by content, not name); its 3-plane localisers
    and its radial series are not one volume each and are refused as mixed orientations."""
    from pathlib import Path

    from pydicom.data import get_testdata_files

    study = Path(get_testdata_files("dicomdirtests/98892003/MR1/*")[0]).parent.parent
    cohort = load_dicom_folder(study, salt="s")
    assert cohort.report.n_rows == 17 and len(cohort) == 4
    assert {c.shape for c in cohort.cases} == {(1, 16, 16)}
    assert set(cohort.frame()["modality"]) == {"MR"} and cohort.n_patients == 1
    reasons = sorted(r.reason for r in cohort.report.rejections)
    assert len(reasons) == 3 and all("mixed slice orientations" in r for r in reasons)
    assert reasons[-1].startswith("MR700: mixed slice orientations (1 slice(s) at (0.654, 0.7565")
    assert "-0," not in " ".join(reasons)
    assert read_image(study / "MR1" / "4919").shape == (1, 16, 16), "a DICOM file named without a suffix"


def test_slices_without_a_position_are_images_on_their_own_and_reports_without_pixels_say_so(tmp_path):
    from pathlib import Path

    from pydicom.data import get_testdata_files

    files = write_dicom_series(tmp_path / "captures", _volume(depth=3, seed=8))
    for f in files:  # secondary captures: same series, no geometry
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.save_as(f)
    cohort = load_dicom_folder(tmp_path / "captures", salt="s")
    assert [c.shape for c in cohort.cases] == [(1, 10, 12)] * 3
    with pytest.raises(InvalidInputError, match=r"slice lacks ImageOrientationPatient/ImagePositionPatient"):
        read_image(tmp_path / "captures")  # but asked for as a volume, it cannot be one

    tiny = Path(get_testdata_files("dicomdirtests/TINY_ALPHA/DICOMDIR")[0]).parent
    real = load_dicom_folder(tiny, salt="s")  # pydicom's DICOMDIR test set: records without pixel data
    reasons = [r.reason for r in real.report.rejections]
    assert len(real) == 0 and len(reasons) == 51 and reasons[-1] == "README: not a DICOM file"
    assert all(r.endswith("DICOM file has no pixel data (a report or structured object?)") for r in reasons[:-1])
