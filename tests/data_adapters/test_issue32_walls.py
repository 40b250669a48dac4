"""Issue 32's walls, each on a small look-alike of the cohort that showed it (nothing downloaded): a cohort folder
given as ``--cohort``, colour described as grey, ``lesion_id`` clusters, a TorchScript version listed first, the
randomisation check on TorchScript, and two wordings."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pytest
import torch

from data_adapters.cohort import cluster_column_of, cohort_source, load_manifest
from data_adapters.errors import InvalidInputError
from data_adapters.identifiers import screen_columns
from data_adapters.preprocessing import convert_channels
from data_adapters.records import Preprocessing, default_version
from explainers.saliency import explain
from explainers.trust import TRUST_CHECKS, UNDEFINED, CheckInputs, band, randomised
from tests.helpers import TinyCNN, handle_for, random_png_cohort, torchscript_binary_model, write_png
from workspace.cli import main
from workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[2]


# -- 1. a cohort folder is its manifest; a folder with no DICOM names what it holds --------------------------------
def test_a_folder_holding_a_manifest_is_that_manifest(tmp_path, capsys):
    folder = tmp_path / "derm"
    random_png_cohort(folder, 8, size=12, n_classes=2)
    assert cohort_source(folder) == folder / "manifest.csv"
    assert main(["check", "--cohort", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "8 of 8 rows loaded, 0 rejected" in out
    assert "not a DICOM file" not in out


def test_a_folder_with_no_dicom_and_no_manifest_is_an_error_naming_what_it_holds(tmp_path, capsys):
    folder = tmp_path / "export"
    for i in range(5):
        write_png(folder / "images" / f"i{i}.png", np.zeros((8, 8), np.uint8))
    (folder / "labels.csv").write_text("case_id,image\n")
    assert main(["check", "--cohort", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "no DICOM file in this folder" in err and "5 .png, 1 .csv" in err and "labels.csv" in err
    with pytest.raises(InvalidInputError, match=r"it holds 6 file\(s\): 5 \.png, 1 \.csv"):
        Workspace(tmp_path / "ws").load_cohort(folder)


def test_a_folder_with_two_manifests_asks_which(tmp_path):
    random_png_cohort(tmp_path / "c", 3)
    (tmp_path / "c" / "manifest.parquet").write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"both manifest\.csv and manifest\.parquet"):
        cohort_source(tmp_path / "c")


# -- 2. colour is described as what is done to it ----------------------------------------------------------------
def test_rgb_models_say_colour_passes_through_unchanged():
    pre = Preprocessing(in_channels=3, spatial_size=(8, 8), channels="rgb")
    text = pre.describe()
    assert "colour images passed through unchanged" in text and "greyscale ones repeated into three channels" in text
    colour = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    assert np.array_equal(convert_channels("rgb", colour), colour)  # what the words say is what is done
    grey = colour[:1]
    assert np.array_equal(convert_channels("rgb", grey), np.repeat(grey, 3, axis=0))


# -- 3. lesion clusters and id-like codes ------------------------------------------------------------------------
def _lesion_manifest(folder: Path, *, with_patient: bool = False) -> Path:
    """30 images of 12 lesions (HAM10000-style ``HAM_0000118`` ids), optionally with a patient column."""
    rows = ["case_id,image,label,lesion_id,site" + (",patient_id" if with_patient else "")]
    rng = np.random.default_rng(1)
    for i in range(30):
        write_png(folder / f"ISIC_{i:07d}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
        lesion = f"HAM_{(i * 7) % 12:07d}"
        rows.append(f"ISIC_{i:07d},ISIC_{i:07d}.png,{i % 2},{lesion},{'AB'[i % 2]}"
                    + (f",P{i % 5}" if with_patient else ""))
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


@pytest.mark.parametrize("digits", [5, 7])
def test_lesion_id_is_screened_as_an_id_like_code(digits):
    # HAM10000's ids are HAM_ and 7 digits; with 5 (under the record-number length) today's code let them through
    frame = pd.DataFrame({"lesion_id": [f"HAM_{(i * 7) % 12:0{digits}d}" for i in range(30)],
                          "site": ["AB"[i % 2] for i in range(30)]})
    held = screen_columns(frame, ["lesion_id", "site"])
    assert set(held) == {"lesion_id"} and "id-like codes" in held["lesion_id"]


def test_lesion_id_is_the_cluster_key_without_a_patient_column_and_the_report_names_it(tmp_path):
    cohort = load_manifest(_lesion_manifest(tmp_path), salt="k" * 32)
    patients = [c.patient for c in cohort.cases]
    assert None not in patients and len(set(patients)) == 12  # one key per lesion, not per image
    assert "lesion_id" not in cohort.attribute_schema
    assert any(n.startswith("cluster column 'lesion_id'") for n in cohort.report.notes)


def test_a_patient_column_wins_and_the_operator_may_choose_the_lesion(tmp_path):
    manifest = _lesion_manifest(tmp_path, with_patient=True)
    default = load_manifest(manifest, salt="k" * 32)
    assert len({c.patient for c in default.cases}) == 5
    assert any("cluster column 'patient_id'" in n for n in default.report.notes)
    # lesion_id is then an attribute candidate, held back as an id-like code
    assert any("'lesion_id' was not loaded" in n and "id-like codes" in n for n in default.report.notes)
    chosen = load_manifest(manifest, salt="k" * 32, cluster_column="lesion_id")
    assert len({c.patient for c in chosen.cases}) == 12
    assert any("cluster column 'lesion_id' (chosen by the operator)" in n for n in chosen.report.notes)
    with pytest.raises(InvalidInputError, match=r"cluster column 'lesion' .* is not in the manifest; it has"):
        load_manifest(manifest, cluster_column="lesion")


def test_settings_cluster_column_reaches_the_load_and_check_names_it(tmp_path, capsys):
    manifest = _lesion_manifest(tmp_path / "cohort", with_patient=True)
    root = tmp_path / "ws"
    root.mkdir()
    (root / "settings.json").write_text(json.dumps({"cluster_column": "lesion_id"}))
    cohort = Workspace(root).load_cohort(manifest)
    assert len({c.patient for c in cohort.cases}) == 12
    assert main(["check", "--cohort", str(manifest), "--workspace", str(root)]) == 0
    assert "cluster column 'lesion_id' (chosen by the operator)" in capsys.readouterr().out


def test_a_cohort_with_no_cluster_column_says_so():
    assert cluster_column_of(["case_id", "image", "site"]) is None
    assert cluster_column_of(["case_id", "Lesion_ID", "subject"]) == "subject"


# -- 4. the app opens on a version the default methods run on -----------------------------------------------------
def test_default_version_skips_a_torchscript_archive_listed_first():
    scripted = handle_for(torch.jit.script(TinyCNN(2, 1, 2)), n_classes=2)
    python = handle_for(TinyCNN(2, 1, 2), n_classes=2)
    assert not scripted.hookable and python.hookable
    assert default_version({"a-ts": scripted, "b": python}) == "b"
    assert default_version({"a-ts": scripted, "b": None}) == "a-ts"  # nothing hookable: the first that loads
    assert default_version({"x": None}) == "x" and default_version({}) is None


def test_the_sidebar_default_is_not_the_torchscript_version(tmp_path):
    from pages._selection import default_model
    from tests.real_cohorts import write_model

    torchscript_binary_model(tmp_path / "models" / "a-ts", 12)
    write_model(tmp_path / "models" / "b-dense", version="b", task="binary", class_names=["normal", "abnormal"],
                in_channels=1, preprocessing={"in_channels": 1, "spatial_size": [12, 12]}, seed=0)
    torchscript_binary_model(tmp_path / "models" / "c-ts", 12)
    models = Workspace(tmp_path).model_paths()
    assert list(models) == ["a-ts", "b-dense", "c-ts"]
    assert default_model(models) == "b-dense"
    assert default_model(models, latest=True) == "b-dense"  # the app prefers the latest version, still hookable


def test_the_default_methods_run_on_a_torchscript_model():
    from explainers.saliency import default_methods

    scripted = handle_for(torch.jit.script(TinyCNN(2, 1, 2)), n_classes=2, input_shape=(1, 12, 12))
    python = handle_for(TinyCNN(2, 1, 2), n_classes=2, input_shape=(1, 12, 12))
    assert default_methods(python) == ["grad_cam", "saliency"]
    assert default_methods(scripted) == ["saliency", "integrated_gradients"]
    # versions side by side (Compare, two-version Case review) open on what every one of them can take
    assert default_methods(python, scripted) == default_methods(scripted) != default_methods(python, python)
    images = np.random.default_rng(0).random((1, 1, 12, 12)).astype(np.float32)
    for method in default_methods(scripted):  # each runs (Grad-CAM would raise ExplainerError here)
        assert explain(scripted, images, ["a"], method, 1)[0].array.shape[-2:] == (12, 12)


# -- 5. the randomisation check re-initialises a TorchScript model ------------------------------------------------
def _saliency(handle, images):
    return np.stack([a.array for a in explain(handle, images, [str(i) for i in range(len(images))], "saliency", 1)])


def test_a_torchscript_model_is_re_initialised_like_its_python_twin():
    module = TinyCNN(2, 1, 2, seed=4)
    scripted = handle_for(torch.jit.script(module), n_classes=2, input_shape=(1, 12, 12))
    before = {n: p.detach().clone() for n, p in scripted.module.named_parameters()}
    other = randomised(scripted, seed=3)
    after = dict(other.module.named_parameters())
    assert set(after) == set(before) and all(not torch.equal(after[n], before[n]) for n in before)
    assert all(torch.equal(p, before[n]) for n, p in scripted.module.named_parameters()), "original untouched"
    for n, p in after.items():  # PyTorch's own initialisation: Kaiming-uniform(a=sqrt 5), bound 1/sqrt(fan_in)
        fan_in = (after[n.replace("bias", "weight")][0].numel())
        assert p.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6, n
    again = dict(randomised(scripted, seed=3).module.named_parameters())
    assert all(torch.equal(again[n], after[n]) for n in after), "seeded"


def test_the_archive_gets_the_very_weights_pytorchs_own_reset_gives_its_twin():
    """Known answer from PyTorch itself: ``reset_parameters``/``reset_running_stats`` on the Python twin (conv,
    batch norm, linear) give the same tensors, draw for draw, as the archive's re-initialisation."""
    torch.manual_seed(5)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 2))
    module(torch.randn(8, 1, 12, 12))  # running statistics away from their initial values
    module.eval()
    python = handle_for(module, n_classes=2, input_shape=(1, 12, 12))
    script = handle_for(torch.jit.script(module), n_classes=2, input_shape=(1, 12, 12))
    a, b = randomised(python, seed=7).module.state_dict(), randomised(script, seed=7).module.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(b["1.running_mean"], module.state_dict()["1.running_mean"])


def test_the_randomisation_check_judges_a_torchscript_model_as_its_state_dict_twin():
    images = np.random.default_rng(0).random((6, 1, 12, 12)).astype(np.float32)
    check = TRUST_CHECKS.get("randomisation")
    values = {}
    for kind in ("python", "script"):
        module = TinyCNN(2, 1, 2, seed=4)
        handle = handle_for(torch.jit.script(module) if kind == "script" else module, n_classes=2,
                            input_shape=(1, 12, 12))
        maps = _saliency(handle, images)
        values[kind] = check.compute(CheckInputs(handle, images, maps, 1, [None] * 6, _saliency, 0))
    # today's code left the archive's weights as they were: the same maps, rank correlation 1.0, "fails"
    assert np.all(np.isfinite(values["script"])) and float(np.mean(values["script"])) < 0.9
    np.testing.assert_array_equal(values["script"], values["python"])  # the same weights as its twin's reset


class _NoWeights(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.flatten(1).mean(1), -x.flatten(1).mean(1)], dim=1)


def test_a_model_with_nothing_to_re_initialise_could_not_be_judged():
    handle = handle_for(torch.jit.script(_NoWeights()), n_classes=2, input_shape=(1, 8, 8))
    assert randomised(handle) is None
    images = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    check = TRUST_CHECKS.get("randomisation")
    values = check.compute(CheckInputs(handle, images, images.copy(), 1, [None] * 3, lambda h, x: x.copy(), 0))
    assert np.isnan(values).all() and band(check, float(values[0])) == UNDEFINED
    assert "no weights to re-initialise" in check.undefined


# -- 6. words -----------------------------------------------------------------------------------------------------
def test_the_report_says_a_whole_number_of_missed_positives():
    source = (ROOT / "assets" / "report.html.j2").read_text()
    fragment = re.search(r"Among 1000 cases like these.*?</p>", source, re.S).group(0)
    text = jinja2.Environment().from_string(fragment).render(
        c={"prevalence": 0.3, "missed_per_1000": 140.0, "false_alarms_per_1000": 61.6,
           "missed_per_1000_ci": [120.0, 161.5], "false_alarms_per_1000_ci": [50.0, 75.0]})
    assert "about <b>140 positives would be missed</b>" in text and "62 negatives flagged" in text
    assert "140.0 positives" not in text


def test_integrated_gradients_names_its_baseline_as_each_images_own_mean():
    import explainers.saliency.integrated_gradients as ig

    assert "cohort mean" not in ig.__doc__ and "own mean intensity per channel" in ig.__doc__


def test_a_cohort_folder_is_peeked_as_its_manifest(tmp_path):
    from data_adapters.cohort import peek_fit

    random_png_cohort(tmp_path / "c", 4, size=12, n_classes=2)
    assert peek_fit(tmp_path / "c", class_names=["a", "b"], input_shape=(1, 12, 12)) is True
    assert peek_fit(tmp_path / "c", class_names=["a", "b"], input_shape=(1, 16, 16)) is False
