"""The catalogue of bad inputs: every kind ends in a clear message naming the file, row, field or argument, never
a traceback and never a silent success; where one row is bad, the good rows still load.

Three tables: command-line calls (arguments, models, settings), manifest rows (checked through ``glassbox check``,
each with its row and field), and image files. ``test_the_catalogue_is_large`` counts them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from tests.helpers import TinyCNN, random_png_cohort, torchscript_binary_model, write_png
from workspace.cli import main

SIZE = 12


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace with a good TorchScript model (12² inputs) and a good 6-case PNG cohort."""
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    root = tmp_path / "ws"
    random_png_cohort(root / "cohorts" / "good", 6, size=SIZE, n_classes=2)
    torchscript_binary_model(root / "models" / "good", SIZE)
    return root


def _model(root: Path, name: str, spec: dict, weights: bytes | None = None) -> str:
    folder = root / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        (folder / "weights.pt").write_bytes(weights)
    (folder / "model.json").write_text(json.dumps(spec) if not isinstance(spec, str) else spec)
    return str(folder)


def _state_dict_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(TinyCNN(2, 1, 1).state_dict(), buffer)
    return buffer.getvalue()


DENSE = {"name": "DenseNet", "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "init_features": 4,
                                      "growth_rate": 4, "block_config": [1], "bn_size": 2}}
BASE = {"name": "m", "format": "state_dict", "weights": "weights.pt", "network": DENSE, "task": "binary",
        "class_names": ["normal", "abnormal"], "preprocessing": {"in_channels": 1, "spatial_size": [SIZE, SIZE]}}


def _dense_weights() -> bytes:
    import io

    from data_adapters.models.state_dict import monai_network

    buffer = io.BytesIO()
    torch.save(monai_network("DenseNet")(**DENSE["args"]).state_dict(), buffer)
    return buffer.getvalue()


def _spec(**change) -> dict:
    return {**BASE, **change}


# -- command-line calls: (id, argv builder (root, cohort, model) -> list, exit code, message pattern) ------------------
def _pickled_model(root):
    import io

    buffer = io.BytesIO()
    torch.save(TinyCNN(2, 1, 1), buffer)  # a whole pickled module, not a state dict
    return _model(root, "pickled", _spec(), buffer.getvalue())


CLI = [
    ("param without =", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                         "saliency", "--param", "bogus"], 2, r"--param 'bogus': expected NAME=VALUE"),
    ("param unknown", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                       "integrated_gradients", "--param", "n_step=5"], 2,
     r"has no parameter 'n_step' \(did you mean 'n_steps'\?\)"),
    ("param negative", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                        "integrated_gradients", "--param", "n_steps=-5"], 2,
     r"parameter 'n_steps' must be an integer from 0 to 1000, got '-5'"),
    ("param not a number", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                            "smoothgrad", "--param", "noise=lots"], 2,
     r"parameter 'noise' must be float, got 'lots'"),
    ("param infinite", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                        "smoothgrad", "--param", "noise=inf"], 2,
     r"parameter 'noise' must be a finite number ≥ 0"),
    ("occlusion window too big", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0",
                                                  "--method", "occlusion", "--param", "window=1000"], 2,
     r"occlusion window 1000 and stride 500 must fit the input, whose smallest spatial side is 12"),
    ("unknown method", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                        "gradcam"], 2, r"unknown saliency method 'gradcam' \(did you mean"),
    ("unknown case", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "nope", "--method",
                                      "saliency"], 2, r"nope"),
    ("unknown target", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0", "--method",
                                        "saliency", "--target", "tumour"], 2, r"tumour"),
    ("out into a missing folder", lambda r, c, m: ["predict", "--model", m, "--cohort", c, "--out",
                                                   str(r / "nowhere" / "p.csv")], 2,
     r"--out .*p\.csv: folder .*nowhere does not exist"),
    ("out is a folder", lambda r, c, m: ["predict", "--model", m, "--cohort", c, "--out", str(r)], 2,
     r"is a folder; give a file name"),
    ("samples negative", lambda r, c, m: ["uncertainty", "--model", m, "--cohort", c, "--method", "tta",
                                          "--samples", "-1"], 2, r"--samples: -1 must be at least 1"),
    ("samples zero", lambda r, c, m: ["uncertainty", "--model", m, "--cohort", c, "--method", "tta",
                                      "--samples", "0"], 2, r"--samples: 0 must be at least 1"),
    ("samples not a number", lambda r, c, m: ["uncertainty", "--model", m, "--cohort", c, "--method", "tta",
                                              "--samples", "many"], 2, r"--samples: 'many' is not a whole number"),
    ("uncertainty method unknown", lambda r, c, m: ["uncertainty", "--model", m, "--cohort", c, "--method",
                                                    "dropout"], 2, r"invalid choice: 'dropout'"),
    ("mc dropout on a TorchScript model", lambda r, c, m: ["uncertainty", "--model", m, "--cohort", c, "--method",
                                                           "mc_dropout"], 2, r"mc_dropout needs layer hooks"),
    ("ensemble of one", lambda r, c, m: ["uncertainty", "--model", m, "--cohort", c, "--method", "ensemble"], 2,
     r"an ensemble needs at least two models, got 1"),
    ("threshold above 1", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site",
                                           "--threshold", "7"], 2,
     r"--threshold 7: a threshold is a probability, between 0 and 1"),
    ("min-n negative", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site", "--min-n", "-5"],
     2, r"--min-n: -5 must be at least 1"),
    ("n-boot zero", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site", "--n-boot", "0"], 2,
     r"--n-boot: 0 must be at least 1"),
    ("unknown attribute", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "sitte"], 2,
     r"--by 'sitte' is not an attribute of the cohort \(site\); did you mean 'site'"),
    ("bad --where", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site", "--where", "split"],
     2, r"--where 'split': expected ATTRIBUTE=VALUE"),
    ("bad --max-gap", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site", "--max-gap",
                                       "brier"], 2, r"--max-gap 'brier': expected METRIC=NUMBER"),
    ("unknown --max-gap metric", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site",
                                                  "--max-gap", "accuracy=0.1"], 2, r"metric must be one of auroc"),
    ("bad threshold rule", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site", "--rule",
                                            "sensitivity=high"], 2, r"threshold rule 'sensitivity=high' is not"),
    ("ship without retrain", lambda r, c, m: ["demo", "--workspace", str(r / "demo"), "--ship"], 2,
     r"--ship .* needs --retrain"),
    ("missing manifest", lambda r, c, m: ["check", "--cohort", str(r / "cohorts" / "none.csv")], 2,
     r"none\.csv: manifest not found"),
    ("manifest of another format", lambda r, c, m: ["check", "--cohort", str(Path(c).with_suffix(".txt"))], 2,
     r"manifest must be \.csv or \.parquet|manifest not found"),
    ("nothing loads: predict refuses", lambda r, c, m: ["predict", "--model", m, "--cohort", _empty(r)], 2,
     r"no case of .* loaded .* nothing to predict"),
    ("nothing loads: check fails", lambda r, c, m: ["check", "--cohort", _empty(r)], 1, r"0 of 1 rows loaded"),
    ("model folder without model.json", lambda r, c, m: ["predict", "--model", str(r), "--cohort", c], 2,
     r"no model\.json here"),
    ("model.json not JSON", lambda r, c, m: ["predict", "--model", _model(r, "notjson", "{oops"), "--cohort", c], 2,
     r"model\.json: not valid JSON"),
    ("unknown format", lambda r, c, m: ["predict", "--model", _model(r, "fmt", _spec(format="onnx")), "--cohort", c],
     2, r"onnx"),
    ("unknown network", lambda r, c, m: ["predict", "--model", _model(r, "net", _spec(
        network={"name": "DenseNet12", "args": {}}), _dense_weights()), "--cohort", c], 2,
     r"network 'DenseNet12' is not a class of monai\.networks\.nets \(did you mean"),
    ("network args of the wrong type", lambda r, c, m: ["predict", "--model", _model(r, "args", _spec(
        network={"name": "DenseNet", "args": {**DENSE["args"], "block_config": "big"}}), _dense_weights()),
        "--cohort", c], 2, r"network DenseNet rejects its args"),
    ("spatial_size of the wrong type", lambda r, c, m: ["predict", "--model", _model(r, "size", _spec(
        preprocessing={"in_channels": 1, "spatial_size": ["twelve", 12]}), _dense_weights()), "--cohort", c], 2,
     r"model\.json: .*twelve"),
    ("class_names a string", lambda r, c, m: ["predict", "--model", _model(r, "names", _spec(class_names="ab"),
                                                                            _dense_weights()), "--cohort", c], 2,
     r"class_names must be a list of non-empty strings.* got \"ab\""),
    ("class_names empty", lambda r, c, m: ["predict", "--model", _model(r, "names0", _spec(class_names=[]),
                                                                         _dense_weights()), "--cohort", c], 2,
     r"class_names must be a list of non-empty strings"),
    ("unknown preprocessing field", lambda r, c, m: ["predict", "--model", _model(r, "pre", _spec(
        preprocessing={"in_channels": 1, "spatial_size": [SIZE, SIZE], "normalise": True}), _dense_weights()),
        "--cohort", c], 2, r"preprocessing has unknown field\(s\) 'normalise'"),
    ("misspelt model.json key", lambda r, c, m: ["predict", "--model", _model(r, "layr", _spec(
        explain_layr="features.denseblock2"), _dense_weights()), "--cohort", c], 2,
     r"model\.json: model\.json has unknown field\(s\) 'explain_layr' \(did you mean 'explain_layer'\?\)"),
    ("misspelt preprocessing key", lambda r, c, m: ["predict", "--model", _model(r, "prepro", {
        **{k: v for k, v in _spec().items() if k != "preprocessing"}, "preprocesing": BASE["preprocessing"]},
        _dense_weights()), "--cohort", c], 2, r"'preprocesing' \(did you mean 'preprocessing'\?\)"),
    ("resize given as text", lambda r, c, m: ["predict", "--model", _model(r, "resize", _spec(
        preprocessing={"in_channels": 1, "spatial_size": [SIZE, SIZE], "resize": "false"}), _dense_weights()),
        "--cohort", c], 2, r"preprocessing\.resize must be true or false \(JSON booleans, no quotes\), got \"false\""),
    ("unknown channels", lambda r, c, m: ["predict", "--model", _model(r, "chan", _spec(
        preprocessing={"in_channels": 1, "spatial_size": [SIZE, SIZE], "channels": "gray"}), _dense_weights()),
        "--cohort", c], 2, r"preprocessing\.channels 'gray' is not one of \('grey', 'luminance', 'rgb'\)"),
    ("Grad-CAM on a TorchScript model", lambda r, c, m: ["explain", "--model", m, "--cohort", c, "--case", "k0",
                                                         "--method", "grad_cam"], 2,
     r"is TorchScript: layer methods \(Grad-CAM, Guided Grad-CAM\) hook a layer"),
    ("unknown model name", lambda r, c, m: ["predict", "--model", "goood", "--cohort", c], 2,
     r"model 'goood' is neither a path nor a model of workspace .* \(it has good\); did you mean 'good'\?"),
    ("cohort by name", lambda r, c, m: ["check", "--cohort", "good", "--model", "good"], 0, r"6 of 6 rows loaded"),
    ("--where value typo", lambda r, c, m: ["subgroups", "--model", m, "--cohort", c, "--by", "site", "--where",
                                            "site=Z"], 2, r"no labelled case has site 'Z'; its values are A, B"),
    ("pickled whole model", lambda r, c, m: ["predict", "--model", _pickled_model(r), "--cohort", c], 2,
     r"weights\.pt"),
    ("weights missing", lambda r, c, m: ["predict", "--model", _model(r, "noweights", _spec()), "--cohort", c], 2,
     r"weights\.pt"),
    ("weights outside the model folder", lambda r, c, m: ["predict", "--model", _model(
        r, "escape", _spec(weights="../good/model.ts")), "--cohort", c], 2, r"outside the model folder"),
    ("weights that do not fit the network", lambda r, c, m: ["predict", "--model", _model(
        r, "misfit", _spec(), _state_dict_bytes()), "--cohort", c], 2, r"weights"),
    ("operating point out of range", lambda r, c, m: _settings(r, {"operating_point": {"threshold": 7}}) or [
        "subgroups", "--model", m, "--cohort", c, "--by", "site", "--workspace", str(r)], 2,
     r"operating_point\.threshold must be a number in \[0, 1\], got 7"),
    ("operating point on a missing split", lambda r, c, m: _settings(r, {"operating_point": {"split": "val"}}) or [
        "subgroups", "--model", m, "--cohort", c, "--by", "site", "--workspace", str(r)], 2,
     r"operating_point\.split 'val': no labelled case has that split"),
]


def _empty(root: Path) -> str:
    folder = root / "cohorts" / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.csv").write_text("case_id,image,label\nx,missing.png,0\n")
    return str(folder / "manifest.csv")


def _settings(root: Path, settings: dict) -> None:
    (root / "settings.json").write_text(json.dumps(settings))


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("name,argv,code,pattern", CLI, ids=[c[0] for c in CLI])
def test_a_bad_command_line_gets_a_named_message(ws, capsys, name, argv, code, pattern):
    cohort = str(ws / "cohorts" / "good" / "manifest.csv")
    model = str(ws / "models" / "good")
    args = argv(ws, cohort, model)
    if "--workspace" not in args and args[0] != "demo":
        args = [*args, "--workspace", str(ws)]
    got, text = _run(args, capsys)
    assert "Traceback" not in text, text
    assert got == code, (got, text[-600:])
    assert re.search(pattern, text), text[-600:]


def test_help_of_every_command_prints(capsys):
    for command in ([], ["demo"], ["check"], ["predict"], ["explain"], ["subgroups"], ["uncertainty"], ["tcav"],
                    ["serve"]):
        code, text = _run([*command, "--help"], capsys)
        assert code == 0 and "usage: glassbox" in text and "Traceback" not in text, command


# -- manifest rows: each bad row rejected with its row and field, the good rows still load --------------------------
def _write_images(folder: Path) -> None:
    good = np.full((SIZE, SIZE), 30000, np.uint16)
    for i in range(3):
        write_png(folder / f"ok{i}.png", good + i)
    write_png(folder / "small.png", np.zeros((8, 8), np.uint16))
    write_png(folder / "rgb.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    trunc = write_png(folder / "trunc.png", np.random.default_rng(0).integers(0, 65535, (SIZE, SIZE), dtype=np.uint16))
    trunc.write_bytes(trunc.read_bytes()[:120])
    (folder / "text.png").write_text("not an image")
    write_png(folder / "huge.png", np.zeros((13000, 13000), np.uint8))  # a few hundred KB, 169 M pixels
    write_png(folder / "masks" / "small.png", np.zeros((8, 8), np.uint8))
    write_png(folder.parent / "outside.png", good)
    nibabel.save(nibabel.Nifti1Image(np.full((4, 4, 4), np.inf, np.float32), np.eye(4)), folder / "inf.nii.gz")
    (folder / "link.png").symlink_to(folder.parent / "outside.png")
    write_png(folder / "sub" / "win.png", good)


ROWS = [  # (case_id, image, label, mask, age): expected field and message
    (("dup", "ok0.png", "0", "", "40"), None),
    (("dup", "ok1.png", "0", "", "40"), ("case_id", r"duplicate case_id 'dup' \(first at row 1\)")),
    (("missing", "gone.png", "0", "", "40"), ("image", r"file not found: gone\.png")),
    (("trunc", "trunc.png", "0", "", "40"), ("image", r"trunc\.png: image data is truncated or corrupt")),
    (("text", "text.png", "0", "", "40"), ("image", r"not a readable PNG/JPEG image \(unknown format\)")),
    (("huge", "huge.png", "0", "", "40"), ("image", r"huge\.png: image is 13000×13000×1 \(169,000,000 values\), "
                                                     r"over the limit")),
    (("small", "small.png", "0", "", "40"), ("image", r"image is 1×8×8 \(C×H×W\); the model expects 1×12×12")),
    (("rgb", "rgb.png", "0", "", "40"), ("image", r"image is 3×12×12 \(C×H×W\); the model expects 1×12×12")),
    (("inf", "inf.nii.gz", "0", "", "40"), ("image", r"volume contains 64 NaN or infinite voxel\(s\)")),
    (("outside", "../outside.png", "0", "", "40"), ("image", r"points outside the data root")),
    (("link", "link.png", "0", "", "40"), ("image", r"outside the data root")),
    (("label2", "ok1.png", "2", "", "40"), ("label", r"label 2 is outside the classes: expected 0\.\.1")),
    (("labelx", "ok1.png", "yes", "", "40"), ("label", r"label 'yes' is (not one of the model's classes|a name, not a class index)")),
    (("labelf", "ok1.png", "0.5", "", "40"), ("label", r"label '0\.5' is not an integer class index")),
    (("maskgone", "ok1.png", "1", "masks/gone.png", "40"), ("mask", r"file not found: masks/gone\.png")),
    (("masksmall", "ok1.png", "1", "masks/small.png", "40"), ("mask", r"mask is 8×8, image is 12×12")),
    (("", "ok1.png", "0", "", "40"), ("case_id", r"empty case_id")),
    (("noimage", "", "0", "", "40"), ("image", r"empty image path")),
    (("labelname", "ok1.png", "abnormal", "", "40"), None),  # a class name, mapped through the model's order
    (("labeltypo", "ok1.png", "abnormall", "", "40"), ("label", r"label 'abnormall' is not one of the model's classes "
                                                               r"\['normal', 'abnormal'\] \(did you mean 'abnormal'\?\)")),
    (("windows", "sub\\win.png", "0", "", "40"), None),  # a Windows separator is a folder
    (("drive", "C:\\data\\a.png", "0", "", "40"), ("image", r"is a Windows absolute path \(drive C:\); give images "
                                                             r"relative to the manifest")),
    (("good2", "ok2.png", "1", "", "40"), None),
]


def test_every_bad_manifest_row_is_named_and_the_good_rows_load(tmp_path, capsys):
    folder = tmp_path / "cohort"
    _write_images(folder)
    lines = ["case_id,image,label,mask,age,Patient Name,e-mail,notes"]
    for i, ((cid, image, label, mask, age), _) in enumerate(ROWS):
        lines.append(f"{cid},{image},{label},{mask},{age},Doe^Jane{i},jane{i}@example.org,"
                     f"called 555-010-{1000 + i} about MRN{700000 + i}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    model = torchscript_binary_model(tmp_path / "model", SIZE)
    code, text = _run(["check", "--cohort", str(folder / "manifest.csv"), "--model", str(model),
                       "--workspace", str(tmp_path / "ws"), "--all-rows"], capsys)
    assert code == 0 and "Traceback" not in text
    for row, (_, expected) in enumerate(ROWS, start=1):
        if expected is None:
            continue
        field, pattern = expected
        line = next((ln for ln in text.splitlines() if re.match(rf"rejected row {row}\b", ln)), "")
        assert f"field '{field}'" in line and re.search(pattern, line), (row, line, pattern)
    assert f"{sum(e is None for _, e in ROWS)} of {len(ROWS)} rows loaded" in text
    for column in ("Patient Name", "e-mail", "notes"):
        assert f"column '{column}' was not loaded" in text
    for secret in ("Doe^Jane", "example.org", "MRN7000", "555-010"):
        assert secret not in text, "a held-back column's values are never echoed"


def test_a_formula_in_a_case_id_is_exported_inert(tmp_path, capsys):
    folder = tmp_path / "cohort"
    write_png(folder / "a.png", np.full((SIZE, SIZE), 100, np.uint16))
    (folder / "manifest.csv").write_text('case_id,image,label\n"=HYPERLINK(""http://x"",""y"")",a.png,0\n')
    model = torchscript_binary_model(tmp_path / "model", SIZE)
    out = tmp_path / "p.csv"
    code, text = _run(["predict", "--model", str(model), "--cohort", str(folder / "manifest.csv"), "--out", str(out),
                       "--workspace", str(tmp_path / "ws")], capsys)
    assert code == 0, text
    cell = out.read_text().splitlines()[1]
    assert cell.startswith("\"'=HYPERLINK") or cell.startswith("'=HYPERLINK"), cell


def test_the_catalogue_is_large():
    kinds = len(CLI) + 1 + sum(e is not None for _, e in ROWS) + 3 + 1  # + help, + held-back columns, + formula
    assert kinds >= 60, kinds


def test_implausible_attribute_values_are_kept_as_missing_and_said(tmp_path):
    from data_adapters.cohort import load_manifest

    folder = tmp_path / "cohort"
    for i in range(4):
        write_png(folder / f"{i}.png", np.full((SIZE, SIZE), 100 + i, np.uint16))
    (folder / "manifest.csv").write_text("case_id,image,age,bmi\na,0.png,40,22\nb,1.png,-999,23\nc,2.png,1e308,21\n"
                                         "d,3.png,51,inf\n")
    cohort = load_manifest(folder / "manifest.csv")
    ages = {c.case_id: c.attributes["age"] for c in cohort.cases}
    assert ages == {"a": 40, "b": None, "c": None, "d": 51} and len(cohort) == 4
    note = next(n for n in cohort.report.notes if "implausible" in n)
    assert "row 2: age -999 is outside the plausible range 0–130" in note and "row 3: age 1e+308" in note


def test_a_path_that_may_carry_a_name_is_masked_in_load_reports(tmp_path):
    from data_adapters.cohort import load_manifest

    folder = tmp_path / "cohort"
    write_png(folder / "ok.png", np.full((SIZE, SIZE), 100, np.uint16))
    export = folder / "Smith_John_MRN1234567"
    export.mkdir()
    (export / "IM0001.png").write_text("not an image")
    (folder / "manifest.csv").write_text("case_id,image\na,ok.png\nb,Smith_John_MRN1234567/IM0001.png\n"
                                         "c,Doe^Jane/IM0002.png\n")
    report = load_manifest(folder / "manifest.csv").report
    text = " ".join(str(r) for r in report.rejections)
    assert "[masked]/IM0001.png" in text and "[masked]/IM0002.png" in text
    for secret in ("Smith", "1234567", "Doe", "Jane"):
        assert secret not in text


def test_a_non_finite_image_is_a_per_row_rejection_whatever_its_format(tmp_path, monkeypatch):
    from data_adapters.cohort import load_manifest
    from data_adapters.readers.png import PngReader

    folder = tmp_path / "cohort"
    for name in ("good", "bad"):
        write_png(folder / f"{name}.png", np.full((SIZE, SIZE), 100, np.uint16))
    (folder / "manifest.csv").write_text("case_id,image\na,good.png\nb,bad.png\n")
    real = PngReader.read

    def read(self, path):  # a reader (or a rescale) that yields NaN for one file
        image = real(self, path)
        if path.name == "bad.png":
            image.array[0, 0, 0] = np.nan
        return image

    monkeypatch.setattr(PngReader, "read", read)
    cohort = load_manifest(folder / "manifest.csv")
    assert [c.case_id for c in cohort.cases] == ["a"]
    assert "bad.png: image contains 1 NaN or infinite value(s)" in str(cohort.report.rejections[0])


def test_a_nul_byte_in_a_path_is_named_wherever_paths_are_resolved(tmp_path):
    """Issue 24: a NUL byte in one manifest path killed the whole check (``ValueError: embedded null byte``); now
    that row alone is rejected, and the quick fit check (``peek_fit``) skips it."""
    from data_adapters.cohort import _resolve, load_manifest, peek_fit
    from data_adapters.errors import InvalidInputError

    write_png(tmp_path / "ok.png", np.full((SIZE, SIZE), 100, np.uint16))
    (tmp_path / "manifest.csv").write_text("case_id,image\nbad,ok\x00.png\ngood,ok.png\n")
    with pytest.raises(InvalidInputError, match="path holds a NUL byte"):
        _resolve(tmp_path, "ok\x00.png", [tmp_path])
    assert peek_fit(tmp_path / "manifest.csv", class_names=["a", "b"], input_shape=(1, SIZE, SIZE)) is True
    cohort = load_manifest(tmp_path / "manifest.csv")
    assert [c.case_id for c in cohort.cases] == ["good"]
    assert str(cohort.report.rejections[0]) == ("row 1, field 'image': image holds a NUL byte; refused (retype it "
                                                "in plain characters)")
