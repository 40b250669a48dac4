"""The catalogue of issue 24's attacks on identifiers and its faults: every input is an entry with the message it
must end in (a refusal, a detection or a named message), none a traceback, a hang or a silent acceptance.

Each entry: ``(category, name, run, expected)``. ``run(env)`` builds the bad input under ``env`` (a workspace with a
good TorchScript model and a good six-case PNG cohort) and returns the text Glassbox answered with (a CLI's output,
a load report, a raised error's message, an exported CSV); ``expected`` must be in it. Every run has a deadline (a
hang fails instead of blocking the suite). Other helpers keep the catalogue's other categories (codes, records,
people) in their own tests; ``test_the_catalogue_is_counted`` counts the entries here by category.
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import traceback
from collections import Counter
from pathlib import Path

import nibabel
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from data_adapters.cohort import load_manifest
from data_adapters.errors import GlassboxError
from data_adapters.identifiers import check_note
from data_adapters.readers import read_image
from tests.helpers import random_png_cohort, torchscript_binary_model, write_png
from workspace.cli import main
from workspace.review import record_path, spreadsheet_safe

SIZE = 12
DEADLINE_S = 60
CATEGORIES = ("codes", "records", "people", "identifiers", "faults")


class Env:
    """Where entries build their inputs: ``root`` (a workspace), its good ``cohort`` manifest and ``model`` folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        random_png_cohort(root / "cohorts" / "good", 6, size=SIZE, n_classes=2)
        self.cohort = str(root / "cohorts" / "good" / "manifest.csv")
        self.model = str(torchscript_binary_model(root / "models" / "good", SIZE))
        self._n = 0

    def folder(self) -> Path:
        self._n += 1
        path = self.root / "bad" / f"b{self._n}"
        path.mkdir(parents=True)
        write_png(path / "ok.png", np.full((SIZE, SIZE), 30000, np.uint16))
        return path


def _cli(*argv: str):
    def run(env: Env) -> str:
        args = [a.format(cohort=env.cohort, model=env.model, root=env.root) for a in argv]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*args, "--workspace", str(env.root)])
            except SystemExit as e:  # argparse's own usage errors
                code = e.code
        text = out.getvalue() + err.getvalue()
        assert code not in (0, None), f"accepted silently (exit {code}): {text[-400:]}"
        return text
    return run


def _rows(rows: str, make=None, *, loads: int = 1, extra_columns: str = ""):
    """A manifest ``case_id,image,mask[,extra]`` with the good row ``ok`` first; ``make(folder)`` writes the bad
    files. The good row must still load, in both checking modes (decoded pixels and headers); the load report's
    rejections and notes are the answer (the same in both modes)."""
    def run(env: Env) -> str:
        folder = env.folder()
        if make:
            make(folder)
        header = "case_id,image,mask" + ("," + extra_columns if extra_columns else "")
        (folder / "manifest.csv").write_text(header + "\n" + rows, encoding="utf-8")
        reports = []
        for check in ("pixels", "header"):
            cohort = load_manifest(folder / "manifest.csv", check=check)
            assert len(cohort) == loads, (check, [str(r) for r in cohort.report.rejections])
            reports.append(cohort.report)
        assert reports[0].rejections == reports[1].rejections, reports
        return "\n".join([*map(str, reports[0].rejections), *reports[0].notes])
    return run


def _raises(fn):
    def run(env: Env) -> str:
        try:
            fn(env)
        except GlassboxError as e:
            return str(e)
        raise AssertionError("accepted silently")
    return run


# -- builders of bad files --------------------------------------------------------------------------------------------
def _nifti_without_orientation(folder: Path) -> None:
    img = nibabel.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    img.header.set_sform(None, code=0)
    img.header.set_qform(None, code=0)
    nibabel.save(img, folder / "bad.nii.gz")


def _nifti_singular(folder: Path) -> None:
    img = nibabel.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.header.set_qform(None, code=0)
    nibabel.save(img, folder / "bad.nii")
    data = bytearray((folder / "bad.nii").read_bytes())
    data[312:328] = bytes(16)  # srow_z = 0: the sform (code 2) cannot be inverted, which nibabel would not write
    (folder / "bad.nii").write_bytes(bytes(data))


def _dicom_with(folder: Path, placeholder: str, raw: bytes, **tags) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(folder / "bad.dcm")
    data = (folder / "bad.dcm").read_bytes()
    assert data.count(placeholder.encode()) == 1
    (folder / "bad.dcm").write_bytes(data.replace(placeholder.encode(), raw))  # what pydicom refuses to write


def _slope_ab(folder: Path) -> None:
    _dicom_with(folder, "7.77", b"ab  ", RescaleSlope="7.77")


def _slope_zero(folder: Path) -> None:
    _dicom_with(folder, "7.77", b"0   ", RescaleSlope="7.77")


def _spacing_ab(folder: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelSpacing = ["7.77", "7.77"]
    ds.save_as(folder / "bad.dcm")
    data = (folder / "bad.dcm").read_bytes()
    (folder / "bad.dcm").write_bytes(data.replace(b"7.77\\7.77", b"ab\\-1.000", 1))


def _series_position_ab(folder: Path) -> None:
    from data_adapters.demo.dicom_export import write_series

    files = write_series(folder / "series", np.full((4, 6, 6), 1000, np.uint16), spacing=(2.5, 1.0, 1.0))
    ds = pydicom.dcmread(files[1])
    ds.ImagePositionPatient = ["7.77", "7.77", "7.77"]
    ds.save_as(files[1])
    data = files[1].read_bytes()
    files[1].write_bytes(data.replace(b"7.77\\7.77\\7.77", b"ab\\ab\\ab".ljust(14), 1))


def _lying_bits(folder: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))  # values up to 2145: 12 bits
    ds.BitsStored, ds.HighBit = 8, 7
    ds.save_as(folder / "bad.dcm")


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "bad.png")


def _animated(folder: Path) -> None:
    frames = [PILImage.fromarray(np.full((SIZE, SIZE), v, np.uint8)) for v in (10, 200)]
    frames[0].save(folder / "bad.png", save_all=True, append_images=frames[1:])


def _rgb_mask(folder: Path) -> None:
    write_png(folder / "mask.png", np.zeros((SIZE, SIZE, 3), np.uint8))


def _garbage_record(env: Env) -> None:
    path = record_path(env.root)  # where this workspace's record lives ($GLASSBOX_RECORD_DIR in tests)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _names_column(column: str, values: list[str]):
    cells = "".join(f"c{i},ok.png,,\"{values[i % len(values)]}\"\n" for i in range(12))
    return _rows(cells, loads=12, extra_columns=column)


def _csv(frame: pd.DataFrame) -> str:
    return spreadsheet_safe(frame).to_csv(index=False)


def _guard_keeps_plain_ids(env: Env) -> str:
    text = _csv(pd.DataFrame({"case_id": ["-0042", "+1.5"], "note": ["=HYPERLINK(\"http://x\")", "ok"]}))
    assert "'-0042" not in text and "'+1.5" not in text, text
    return text


CATALOGUE = [
    # -- identifiers ------------------------------------------------------------------------------------------------
    ("identifiers", "personal names in a column", _names_column(
        "who", ["Jane Doe", "John Smith", "Maria Garcia", "Wei Chen"]),
     "column 'who' was not loaded: its values look like personal names"),
    ("identifiers", "DICOM person names in a column", _names_column("pn", ["DOE^JANE", "SMITH^JOHN"]),
     "column 'pn' was not loaded: its values look like DICOM person names (FAMILY^GIVEN)"),
    ("identifiers", "7-digit MRNs repeated per patient", _names_column("ref", [str(4821337 + i) for i in range(6)]),
     "column 'ref' was not loaded: its values look like record numbers (6–10 digit ids; repeated per patient"),
    ("identifiers", "dates like 12 Mar 1961 in a column", _names_column(
        "when", ["12 Mar 1961", "1961-03-12", "03/12/1961", "March 12, 1961"]),
     "column 'when' was not loaded: its values look like calendar dates"),
    ("identifiers", "names inside free text of a column", _names_column("obs", ["stable", "larger, Eric called"]),
     "column 'obs' was not loaded: its values look like personal names"),
    ("identifiers", "a note holding a plain name", _raises(lambda env: check_note("discussed with Jane Doe")),
     "note: it seems to hold a personal name"),
    ("identifiers", "a note holding a date in words", _raises(lambda env: check_note("born 12 Mar 1961")),
     "note: it seems to hold a calendar date"),
    ("identifiers", "a note holding a title and name", _raises(lambda env: check_note("per Dr Okafor")),
     "note: it seems to hold a personal name"),
    ("identifiers", "the formula guard keeps -0042 and quotes =HYPERLINK", _guard_keeps_plain_ids,
     "-0042,\"'=HYPERLINK"),
    ("identifiers", "a formula in a CSV header", lambda env: _csv(pd.DataFrame({"=cmd|' /C calc'!A0": [1]})),
     "'=cmd|"),
    ("identifiers", "an RTL override in a case id", _rows("ok,ok.png,\nevil\u202egnp,ok.png,\n"),
     "row 2, field 'case_id': case_id holds a bidirectional control character (U+202E RIGHT-TO-LEFT OVERRIDE)"),
    ("identifiers", "an RTL override in an image path", _rows("ok,ok.png,\nb,ok\u202egnp.png,\n"),
     "row 2, field 'image': image holds a bidirectional control character (U+202E"),
    ("identifiers", "an RTL override in an attribute value", _rows("ok,ok.png,,A\nb,ok.png,,A\u202eB\n",
                                                                   extra_columns="site"),
     "row 2 (case b), field 'site': attribute 'site' holds a bidirectional control character (U+202E"),
    ("identifiers", "a zero-width space in a case id", _rows("ok,ok.png,\nk\u200b1,ok.png,\n"),
     "case_id holds an invisible formatting character (U+200B ZERO WIDTH SPACE)"),
    # -- faults -----------------------------------------------------------------------------------------------------
    ("faults", "a NUL byte in a manifest path rejects that row only", _rows("ok,ok.png,\nb,ok\x00.png,\n"),
     "row 2, field 'image': image holds a NUL byte"),
    ("faults", "NIfTI without sform or qform", _rows("ok,ok.png,\nb,bad.nii.gz,\n", _nifti_without_orientation),
     "bad.nii.gz: the NIfTI header sets neither an sform nor a qform"),
    ("faults", "NIfTI with a singular affine", _rows("ok,ok.png,\nb,bad.nii,\n", _nifti_singular),
     "bad.nii: the NIfTI sform is not a usable orientation (a singular matrix)"),
    ("faults", "DICOM RescaleSlope 'ab'", _rows("ok,ok.png,\nb,bad.dcm,\n", _slope_ab),
     "bad.dcm: RescaleSlope 'ab' is not a finite number"),
    ("faults", "DICOM RescaleSlope 0", _rows("ok,ok.png,\nb,bad.dcm,\n", _slope_zero),
     "bad.dcm: RescaleSlope is 0"),
    ("faults", "DICOM PixelSpacing 'ab'", _rows("ok,ok.png,\nb,bad.dcm,\n", _spacing_ab),
     "bad.dcm: PixelSpacing 'ab\\-1.000' is not two positive numbers (mm)"),
    ("faults", "a series slice at ImagePositionPatient 'ab'", _rows("ok,ok.png,\nb,series,\n", _series_position_ab),
     "series: a slice's geometry tags (ImageOrientationPatient, ImagePositionPatient) are not numbers"),
    ("faults", "DICOM pixel values above 2**BitsStored", _rows("ok,ok.png,\nb,bad.dcm,\n", _lying_bits),
     "pixel value(s) need more than BitsStored = 8 bits"),
    ("faults", "a FIFO in the cohort", _rows("ok,ok.png,\nb,bad.png,\n", _fifo),
     "bad.png: not a regular file (a FIFO, socket or device); refused without opening"),
    ("faults", "a FIFO read directly", _raises(lambda env: (_fifo(env.folder()), read_image(
        env.root / "bad" / f"b{env._n}" / "bad.png"))), "not a regular file (a FIFO"),
    ("faults", "a FIFO given as the manifest", _raises(lambda env: (os.mkfifo(env.folder() / "m.csv"), load_manifest(
        env.root / "bad" / f"b{env._n}" / "m.csv"))), "m.csv: manifest is not a regular file"),
    ("faults", "an animated PNG", _rows("ok,ok.png,\nb,bad.png,\n", _animated),
     "bad.png: an animated image (2 frames); a still image is expected"),
    ("faults", "an RGB mask", _rows("ok,ok.png,\nb,ok.png,mask.png\n", _rgb_mask),
     "row 2 (case b), field 'mask': mask has 3 channels"),
    ("faults", "--seed -1", _cli("subgroups", "--model", "{model}", "--cohort", "{cohort}", "--by", "site",
                                 "--seed", "-1"), "argument --seed: -1 must be a whole number from 0 to 4294967295"),
    ("faults", "--seed 2**32", _cli("uncertainty", "--model", "{model}", "--cohort", "{cohort}", "--method", "tta",
                                    "--seed", str(2 ** 32)), "must be a whole number from 0 to 4294967295"),
    ("faults", "--param n_steps=100000", _cli(
        "explain", "--model", "{model}", "--cohort", "{cohort}", "--case", "k0", "--method", "integrated_gradients",
        "--param", "n_steps=100000"), "parameter 'n_steps' must be an integer from 0 to 1000, got '100000' (the "
                                      "Gauss-Legendre rule for n steps needs n² × 8 bytes"),
    ("faults", "--param samples=100000 for SmoothGrad", _cli(
        "explain", "--model", "{model}", "--cohort", "{cohort}", "--case", "k0", "--method", "smoothgrad",
        "--param", "samples=100000"), "parameter 'samples' must be an integer from 1 to 1000"),
    ("faults", "uncertainty --samples 1000000", _cli(
        "uncertainty", "--model", "{model}", "--cohort", "{cohort}", "--method", "tta", "--samples", "1000000"),
     "--samples 1000000: draws per case must be a whole number from 1 to 1000"),
    ("faults", "subgroups --n-boot 10000000", _cli(
        "subgroups", "--model", "{model}", "--cohort", "{cohort}", "--by", "site", "--n-boot", "10000000"),
     "argument --n-boot: 10000000 is over the limit of 100000 (each resample recomputes every metric"),
    ("faults", "tcav --random 1000000", _cli(
        "tcav", "--model", "{model}", "--cohort", "{cohort}", "--concept", "marker", "--random", "1000000"),
     "argument --random: 1000000 is over the limit of 1000"),
    ("faults", "a garbage SQLite file as the workspace record", lambda env: (_garbage_record(env), _cli(
        "audit", "verify")(env))[1], "not a readable SQLite review record"),
    ("faults", "report --by site,site", _cli("report", "--model", "{model}", "--cohort", "{cohort}", "--by",
                                             "site,site", "--out", "{root}/r.html"),
     "argument --by: 'site' named more than once in 'site,site'"),
    ("faults", "subgroups --by site,site", _cli("subgroups", "--model", "{model}", "--cohort", "{cohort}", "--by",
                                                "site, site"), "'site' named more than once"),
]

#: how many entries each category has here (the other helpers' categories live in their own tests)
COUNTS = {"codes": 0, "records": 0, "people": 0, "identifiers": 14, "faults": 23}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    old = os.environ.get("GLASSBOX_SECRET_FILE")
    root = tmp_path_factory.mktemp("catalogue")
    os.environ["GLASSBOX_SECRET_FILE"] = str(root / "secret")
    try:
        yield Env(root / "ws")
    finally:
        if old is None:
            os.environ.pop("GLASSBOX_SECRET_FILE", None)
        else:
            os.environ["GLASSBOX_SECRET_FILE"] = old


_ANSWERS: dict[str, str] = {}


def _answer(entry, env: Env) -> str:
    """Run one entry under a deadline (in a thread: a hang fails the entry instead of the suite); memoised."""
    _, name, run, _ = entry
    if name in _ANSWERS:
        return _ANSWERS[name]
    box: dict[str, str] = {}

    def work() -> None:
        try:
            box["text"] = run(env)
        except AssertionError as e:
            box["text"] = f"FAILED: {e}"
        except BaseException:  # noqa: BLE001 - a traceback is what the catalogue forbids
            box["text"] = "Traceback (most recent call last):\n" + traceback.format_exc()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        box["text"] = f"HANG: no answer within {DEADLINE_S} s"
        fifo = next((p for p in (env.root / "bad").rglob("bad.png") if p.is_fifo()), None)
        if fifo is not None:  # release a reader blocked on a FIFO
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    _ANSWERS[name] = box["text"]
    return box["text"]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e[1] for e in CATALOGUE])
def test_each_bad_input_ends_in_its_named_message(env, entry):
    text = _answer(entry, env)
    assert "Traceback" not in text and not text.startswith(("HANG", "FAILED")), text[-1500:]
    assert entry[3] in text, text[-1500:]


def test_the_catalogue_is_counted(env):
    assert len({e[1] for e in CATALOGUE}) == len(CATALOGUE), "entry names are unique"
    assert all(e[0] in CATEGORIES for e in CATALOGUE)
    counts = Counter(e[0] for e in CATALOGUE)
    assert {c: counts.get(c, 0) for c in CATEGORIES} == COUNTS
    assert sum(COUNTS.values()) == len(CATALOGUE) == 37
    bad = [e[1] for e in CATALOGUE if "Traceback" in _answer(e, env) or _answer(e, env).startswith("HANG")]
    assert not bad, f"ended in a traceback or a hang: {bad}"
