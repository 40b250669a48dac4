"""Cohort manifests: every rejection kind with its message, good rows still loading, whole-file errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_adapters.cohort import load_manifest
from data_adapters.errors import InvalidInputError
from tests.helpers import write_png

GOOD = np.full((16, 16), 30000, np.uint16)


@pytest.fixture
def cohort_dir(tmp_path):
    return bad_cohort(tmp_path)


def bad_cohort(tmp_path):
    """Good images, and one of each kind of bad file (too small, colour, truncated, a flipped byte, not an image)."""
    d = tmp_path / "cohort"
    for i in range(4):
        write_png(d / "images" / f"ok{i}.png", GOOD + i)
    write_png(d / "masks" / "m0.png", np.zeros((16, 16), np.uint8))
    write_png(d / "masks" / "small.png", np.zeros((8, 8), np.uint8))
    write_png(d / "images" / "small.png", np.zeros((8, 8), np.uint16))
    write_png(d / "images" / "rgb.png", np.zeros((16, 16, 3), np.uint8))
    trunc = write_png(d / "images" / "trunc.png", np.random.default_rng(0).integers(0, 65535, (16, 16), dtype=np.uint16))
    trunc.write_bytes(trunc.read_bytes()[:120])
    crc = write_png(d / "images" / "crc.png", GOOD)
    data = bytearray(crc.read_bytes())
    data[60] ^= 0xFF  # one flipped byte inside the image data: the chunk's CRC no longer matches
    crc.write_bytes(bytes(data))
    (d / "images" / "text.png").write_text("not an image")
    write_png(tmp_path / "outside.png", GOOD)
    return d


ROWS = [
    # case_id, image, label, mask, site
    ("c1", "images/ok0.png", "1", "masks/m0.png", "A"),
    ("c2", "images/ok1.png", "0", "", "B"),
    ("c3", "images/ok2.png", "", "", ""),
    ("c1", "images/ok3.png", "0", "", "A"),            # 4 duplicate id
    ("c5", "images/missing.png", "0", "", "A"),        # 5 missing file
    ("c6", "images/trunc.png", "0", "", "A"),          # 6 truncated
    ("c7", "images/text.png", "0", "", "A"),           # 7 not an image
    ("c8", "images/ok3.png", "2", "", "A"),            # 8 label outside classes
    ("c9", "images/ok3.png", "yes", "", "A"),          # 9 label not an integer
    ("c10", "images/small.png", "0", "", "A"),         # 10 wrong size
    ("c11", "images/rgb.png", "0", "", "A"),           # 11 wrong channels
    ("c12", "../outside.png", "0", "", "A"),           # 12 outside the data root
    ("c13", "images/ok3.png", "1", "masks/gone.png", "A"),   # 13 mask missing
    ("c14", "images/ok3.png", "1", "masks/small.png", "A"),  # 14 mask wrong size
    ("", "images/ok3.png", "0", "", "A"),              # 15 empty id
    ("c16", "", "0", "", "A"),                         # 16 empty image
]

EXPECTED = {
    4: ("case_id", "duplicate case_id 'c1' (first at row 1)"),
    5: ("image", "file not found: images/missing.png"),
    6: ("image", "images/trunc.png: image data is truncated or corrupt"),
    7: ("image", "images/text.png: not a readable PNG/JPEG image (unknown format)"),
    8: ("label", "label 2 is outside the classes: expected 0..1 (no lesion, lesion)"),
    9: ("label", "label 'yes' is not one of the model's classes"),
    10: ("image", "image is 1×8×8 (C×H×W); the model expects 1×16×16 (C×H×W)"),
    11: ("image", "image is 3×16×16 (C×H×W); the model expects 1×16×16 (C×H×W)"),
    12: ("image", "path '../outside.png' points outside the data root(s)"),
    13: ("mask", "file not found: masks/gone.png"),
    14: ("mask", "mask is 8×8, image is 16×16"),
    15: ("case_id", "empty case_id"),
    16: ("image", "empty image path"),
}


def write_manifest(d, rows, extra=None):
    frame = pd.DataFrame(rows, columns=["case_id", "image", "label", "mask", "site"])
    for k, v in (extra or {}).items():
        frame[k] = v
    frame.to_csv(d / "manifest.csv", index=False)
    return d / "manifest.csv"


def test_every_bad_row_is_rejected_with_row_field_and_reason(cohort_dir):
    cohort = load_manifest(write_manifest(cohort_dir, ROWS), class_names=("no lesion", "lesion"), input_shape=(1, 16, 16))
    assert [c.case_id for c in cohort.cases] == ["c1", "c2", "c3"]
    report = cohort.report
    assert (report.n_rows, report.n_loaded, report.n_rejected) == (16, 3, 13)
    got = {r.row: (r.field, r.reason) for r in report.rejections}
    assert set(got) == set(EXPECTED)
    for row, (field, reason) in EXPECTED.items():
        assert got[row][0] == field, row
        assert got[row][1].startswith(reason), (row, got[row][1])
    assert "row 4 (case c1), field 'case_id': duplicate" in str(report.rejections[0])
    assert report.frame().shape == (13, 4)


def test_good_rows_carry_labels_attributes_masks_and_hashes(cohort_dir):
    cohort = load_manifest(write_manifest(cohort_dir, ROWS[:3]))
    c1, c2, c3 = cohort.cases
    assert (c1.label, c2.label, c3.label) == (1, 0, None)
    assert c1.mask is not None and c2.mask is None
    assert c1.attributes == {"site": "A"} and c3.attributes == {"site": None}
    assert c1.image_hash != c2.image_hash and c1.shape == (1, 16, 16)
    assert cohort.attribute_schema == {"site": "categorical"}
    again = load_manifest(write_manifest(cohort_dir, ROWS[:3]))
    assert again.content_hash == cohort.content_hash
    write_png(cohort_dir / "images" / "ok0.png", GOOD + 7)
    assert load_manifest(cohort_dir / "manifest.csv").content_hash != cohort.content_hash


def test_without_a_model_the_common_shape_wins(cohort_dir):
    rows = ROWS[:3] + [("c10", "images/small.png", "0", "", "A")]
    report = load_manifest(write_manifest(cohort_dir, rows)).report
    assert [str(r) for r in report.rejections] == [
        "row 4 (case c10), field 'image': image is 1×8×8 (C×H×W); most images in this cohort are 1×16×16 (C×H×W)"]


def test_identifier_columns_are_never_loaded(cohort_dir):
    manifest = write_manifest(cohort_dir, ROWS[:2], extra={"PatientName": ["Doe^Jane", "Roe^Rick"], "age": [40, 71]})
    cohort = load_manifest(manifest)
    assert "PatientName" not in cohort.attribute_schema and cohort.attribute_schema["age"] == "numeric"
    assert "Doe^Jane" not in cohort.frame().to_csv()
    assert cohort.report.notes[0] == ("column 'PatientName' was not loaded: its name marks a direct identifier; the "
                                      "operator can allow it by name (settings.json allow_columns)")


def test_parquet_manifest(cohort_dir):
    frame = pd.DataFrame(ROWS[:2], columns=["case_id", "image", "label", "mask", "site"])
    frame.to_parquet(cohort_dir / "manifest.parquet")
    assert len(load_manifest(cohort_dir / "manifest.parquet")) == 2


def test_whole_file_errors(tmp_path):
    with pytest.raises(InvalidInputError, match=r"manifest\.csv: manifest not found"):
        load_manifest(tmp_path / "manifest.csv")
    (tmp_path / "m.csv").write_text("id,path\n1,a.png\n")
    with pytest.raises(InvalidInputError, match=r"lacks required column\(s\) \['case_id', 'image'\]; it has \['id', 'path'\]"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "latin.csv").write_bytes("case_id,image,site\n1,a.png,Zürich\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"latin\.csv: manifest is not UTF-8 text \(byte 28: invalid"):
        load_manifest(tmp_path / "latin.csv")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=r"manifest must be \.csv or \.parquet, got '\.txt'"):
        load_manifest(tmp_path / "m.txt")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InvalidInputError, match=r"empty\.csv: manifest has no rows"):
        load_manifest(tmp_path / "empty.csv")


def test_a_symlink_out_of_the_data_root_is_rejected(cohort_dir, tmp_path):
    (cohort_dir / "images" / "link.png").symlink_to(tmp_path / "outside.png")
    cohort = load_manifest(write_manifest(cohort_dir, [("c1", "images/ok0.png", "1", "", "A"),
                                                       ("c2", "images/link.png", "0", "", "A")]))
    assert [c.case_id for c in cohort.cases] == ["c1"]
    assert "points outside the data root(s)" in cohort.report.rejections[0].reason


def test_unknown_columns_become_attributes_and_near_misses_are_named(cohort_dir):
    (cohort_dir / "manifest.csv").write_text("case_id,image,lable,scanner_model,empty\n"
                                             "c1,images/ok0.png,1,Acme,\nc2,images/ok1.png,0,Borealis,\n")
    cohort = load_manifest(cohort_dir / "manifest.csv")
    assert len(cohort) == 2 and all(c.label is None for c in cohort.cases)
    assert cohort.attribute_schema == {"lable": "numeric", "scanner_model": "categorical", "empty": "categorical"}
    notes = " | ".join(cohort.report.notes)
    assert "column 'lable' is not a Glassbox column: did you mean 'label'?" in notes
    assert "column(s) ['empty'] are empty" in notes
    assert "loaded as attributes: lable (numeric), scanner_model (categorical), empty (categorical)" in notes


def test_configured_data_roots_admit_images_elsewhere_and_nothing_else(cohort_dir, tmp_path):
    import json

    from workspace.store import Workspace

    archive = tmp_path / "archive"
    write_png(archive / "far.png", GOOD)
    (cohort_dir / "manifest.csv").write_text(
        f"case_id,image\nc1,images/ok0.png\nc2,{archive / 'far.png'}\nc3,{tmp_path / 'outside.png'}\n")
    ws = Workspace(tmp_path / "ws")
    cohort = ws.load_cohort(cohort_dir / "manifest.csv")
    assert [c.case_id for c in cohort.cases] == ["c1"], "without configuration, only the manifest's folder"
    ws.root.mkdir(exist_ok=True)  # the first load wrote its cohort table there
    (ws.root / "settings.json").write_text(json.dumps({"data_roots": [str(archive)]}))
    cohort = ws.load_cohort(cohort_dir / "manifest.csv")
    assert [c.case_id for c in cohort.cases] == ["c1", "c2"]
    (rejected,) = cohort.report.rejections
    assert rejected.case_id == "c3" and "points outside the data root(s)" in rejected.reason
    assert str(archive) in rejected.reason
