"""Cohorts as they come (issue 11): a 7-class colour set and a greyscale-as-RGB binary set with repeated patients go
through every command and page with multi-class outcomes judged by the top class, colour shown in colour, and
intervals that resample patients. The models have seeded random weights, so every assertion is one that holds for
any weights: outcomes and metrics are checked against an independent argmax and scikit-learn."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

from data_adapters.cohort import load_image_batch
from data_adapters.preprocessing import prepare_batch
from tests.real_cohorts import (
    CHEST_IMAGES_PER_PATIENT,
    DERM_CLASSES,
    DERM_COUNTS,
    make_chest,
    make_derm,
    write_model,
)
from workspace.cli import main
from workspace.store import Workspace


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    make_derm(root)
    make_chest(root)
    return root


def _run(args, capsys, root):
    code = main([*args, "--workspace", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _plain_probabilities(root, model: str, cohort: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A plain forward pass, independent of Glassbox's prediction path: (probabilities, labels, case ids)."""
    ws = Workspace(root)
    handle = ws.load_model(ws.resolve_model(model))
    loaded = ws.cohort_for(handle, ws.resolve_cohort(cohort))
    x = prepare_batch(handle.preprocessing, load_image_batch(loaded.cases, handle.preprocessing))
    with torch.no_grad():
        logits = handle.module(x)
    probs = torch.sigmoid(logits).numpy() if handle.task == "binary" else torch.softmax(logits, 1).numpy()
    if handle.task == "binary":
        probs = np.hstack([1 - probs, probs])
    return probs, np.array([c.label for c in loaded.cases]), [c.case_id for c in loaded.cases]


def test_check_maps_class_names_reads_grey_saved_as_rgb_and_backslash_paths(real, capsys):
    code, text = _run(["check", "--cohort", "derm7", "--model", "derm-v1"], capsys, real)
    assert code == 0 and f"{sum(DERM_COUNTS)} of {sum(DERM_COUNTS)} rows loaded, 0 rejected" in text
    ws = Workspace(real)
    handle = ws.load_model(ws.resolve_model("derm-v1"))
    cohort = ws.cohort_for(handle, ws.resolve_cohort("derm7"))
    labels = np.bincount([c.label for c in cohort.cases], minlength=7)
    assert labels.tolist() == DERM_COUNTS, "class names map to the model's own order"
    code, text = _run(["check", "--cohort", "chest", "--model", "chest-v1"], capsys, real)
    n = sum(CHEST_IMAGES_PER_PATIENT)
    assert code == 0 and f"{n} of {n} rows loaded, 0 rejected" in text, text
    assert f"patients: {len(CHEST_IMAGES_PER_PATIENT)} for {n} images" in text
    assert "greyscale saved as colour read as one channel" in text


def test_without_a_channel_declaration_identical_reasons_are_one_line(real, tmp_path, capsys):
    spec = (real / "models" / "chest-v1" / "model.json").read_text().replace(', "channels": "grey"', "")
    spec = spec.replace('"channels": "grey"', "").replace('"intensity": "none",\n', '"intensity": "none"\n')
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "model.json").write_text(spec)
    (folder / "weights.pt").write_bytes((real / "models" / "chest-v1" / "weights.pt").read_bytes())
    code, text = _run(["check", "--cohort", "chest", "--model", str(folder)], capsys, real)
    n = sum(CHEST_IMAGES_PER_PATIENT)
    assert code == 1 and f"0 of {n} rows loaded" in text
    rejected = [line for line in text.splitlines() if line.startswith("rejected")]
    assert len(rejected) == 1, rejected
    assert re.match(rf"rejected {n} rows, field 'image': image is 3×32×32 .*\(rows 1, 2, 3, 4, 5, …\)", rejected[0])


def test_colour_is_refused_by_a_grey_model_unless_luminance_is_asked(real, tmp_path, capsys):
    for channels, loaded in (("grey", 0), ("luminance", sum(DERM_COUNTS))):
        folder = write_model(tmp_path / channels, version=channels, task="multiclass", class_names=DERM_CLASSES,
                             in_channels=1, seed=0, preprocessing={"in_channels": 1, "spatial_size": [32, 32],
                                                                    "channels": channels})
        code, text = _run(["check", "--cohort", "derm7", "--model", str(folder)], capsys, real)
        assert f"{loaded} of {sum(DERM_COUNTS)} rows loaded" in text, text
        if not loaded:
            assert "a colour image (its channels differ) for a greyscale model" in text
            assert '"channels": "luminance"' in text


def test_predict_names_columns_by_class_and_matches_a_plain_forward_pass(real, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert _run(["predict", "--model", "derm-v1", "--cohort", "derm7", "--out", str(out)], capsys, real)[0] == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["case_id", *(f"p_{c}" for c in DERM_CLASSES)]
    probs, _, ids = _plain_probabilities(real, "derm-v1", "derm7")
    assert frame["case_id"].tolist() == ids
    np.testing.assert_allclose(frame[[f"p_{c}" for c in DERM_CLASSES]].to_numpy(), probs, atol=1e-6)


def test_explain_defaults_to_the_cases_top_class(real, tmp_path, capsys):
    probs, _, ids = _plain_probabilities(real, "derm-v1", "derm7")
    out = tmp_path / "m.npy"
    code, text = _run(["explain", "--model", "derm-v1", "--cohort", "derm7", "--case", ids[3], "--method",
                       "grad_cam", "--out", str(out)], capsys, real)
    assert code == 0, text
    assert f"class {DERM_CLASSES[int(probs[3].argmax())]!r}" in text
    assert np.load(out).shape == (1, 32, 32)


def test_subgroups_judges_a_multiclass_model_by_its_top_class(real, tmp_path, capsys):
    out = tmp_path / "t.csv"
    code, text = _run(["subgroups", "--model", "derm-v1", "--cohort", "derm7", "--by", "localization",
                       "--n-boot", "200", "--out", str(out)], capsys, real)
    assert code == 0, text
    assert "all 7 classes (each case's top class against its label)" in text
    # metrics checked against scikit-learn on Glassbox's own predictions (the predict command's CSV); predictions
    # against a plain forward pass are checked above
    predictions = tmp_path / "p.csv"
    assert main(["predict", "--model", "derm-v1", "--cohort", "derm7", "--out", str(predictions),
                 "--workspace", str(real)]) == 0
    probs = pd.read_csv(predictions)[[f"p_{c}" for c in DERM_CLASSES]].to_numpy()
    _, labels, _ = _plain_probabilities(real, "derm-v1", "derm7")
    table = pd.read_csv(out).set_index("group")
    overall = table.loc["overall"]
    assert overall["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)), abs=1e-12)
    assert overall["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, probs.argmax(1)), abs=1e-12)
    assert overall["macro_auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"), abs=1e-12)
    assert overall["accuracy_lo"] < overall["accuracy"] < overall["accuracy_hi"]
    matrix = confusion_matrix(labels, probs.argmax(1), labels=range(7))
    assert f"true mel {' '.join(str(v) for v in matrix[4])}" in re.sub(r"\s+", " ", text)
    # one class versus the rest is a choice, at its own threshold
    code, text = _run(["subgroups", "--model", "derm-v1", "--cohort", "derm7", "--by", "sex", "--target", "mel",
                       "--n-boot", "100"], capsys, real)
    assert code == 0 and "class 'mel' versus the rest" in text


def test_subgroups_resamples_patients_and_bands_ages(real, capsys):
    code, text = _run(["subgroups", "--model", "chest-v1", "--cohort", "chest", "--by", "age", "--n-boot", "200"],
                      capsys, real)
    assert code in (0, 3), text
    assert "note: age is numeric: grouped as age in bands <40, 40-59, 60-74, 75+" in text
    assert f"cluster bootstrap: {len(CHEST_IMAGES_PER_PATIENT)} patients resampled" in text
    assert "MRN" not in text, "the patient key is never shown"


def test_where_with_a_typo_names_the_values(real, capsys):
    code, text = _run(["subgroups", "--model", "derm-v1", "--cohort", "derm7", "--by", "sex", "--where",
                       "split=tset"], capsys, real)
    assert code == 2 and "no labelled case has split 'tset'; its values are test, validation (did you mean 'test'?)" in text


def test_uncertainty_counts_top_class_errors(real, tmp_path, capsys):
    out = tmp_path / "u.csv"
    code, text = _run(["uncertainty", "--model", "derm-v1", "--cohort", "derm7", "--method", "mc_dropout",
                       "--samples", "4", "--out", str(out)], capsys, real)
    assert code == 0, text
    frame = pd.read_csv(out)
    assert {f"p_{c}" for c in DERM_CLASSES} | {f"std_{c}" for c in DERM_CLASSES} <= set(frame.columns)
    # the errors are the model's own (as every page counts them): its top class against the label, not last-class
    # versus rest at 0.5, and not the top class of the dropout mean
    probs, labels, ids = _plain_probabilities(real, "derm-v1", "derm7")
    test = np.array([int(c.split("_")[1]) % 3 != 0 for c in ids])
    errors = int((probs[test].argmax(1) != labels[test]).sum())
    assert f"errors (top class against the label): {errors} of {test.sum()} labelled cases (split 'test')" in text


def test_tcav_defaults_to_the_largest_class_of_a_multiclass_model(real, capsys):
    code, text = _run(["tcav", "--model", "derm-v1", "--cohort", "derm7", "--concept", "red", "--random", "4"],
                      capsys, real)
    assert code == 0, text
    largest = DERM_CLASSES[int(np.argmax(DERM_COUNTS))]
    assert f"testing {largest!r}, the class with the most labelled cases" in text
    assert f"class {largest!r}" in text


def test_pages_on_a_seven_class_colour_cohort(real):
    from tests.pages.test_pages import page  # streamlit only where pages are tested

    at = page("pages/case_review.py", real, model="derm-v1", cohort="derm7")
    assert not at.exception and not at.error
    assert at.selectbox(key="review_class").value is None, "the top-class view is the default"
    probs, labels, ids = _plain_probabilities(real, "derm-v1", "derm7")
    wrong = ids[int(np.nonzero(probs.argmax(1) != labels)[0][0])]
    at.selectbox(key="review_case").set_value(wrong).run()
    text = " ".join(m.value for m in at.markdown)
    k = ids.index(wrong)
    assert f"**Top class:** {DERM_CLASSES[probs[k].argmax()]}" in text and "**Outcome:** misclassified" in text
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any('"type":"image"' in f.replace(" ", "") for f in figures), "a colour image is shown in colour"
    at = page("pages/subgroups.py", real, model="derm-v1", cohort="derm7")
    assert not at.exception and not at.error
    table = at.dataframe[0].value.set_index("group")
    test_rows = [i for i, c in enumerate(ids) if int(c.split("_")[1]) % 3]  # the page opens on split 'test'
    assert table.loc["overall", "n"] == len(test_rows)
    assert table.loc["overall", "accuracy"] == pytest.approx(
        accuracy_score(labels[test_rows], probs[test_rows].argmax(1)), abs=1e-12)
    assert table.loc["overall", "macro_auroc"] == pytest.approx(
        roc_auc_score(labels[test_rows], probs[test_rows], multi_class="ovr"), abs=1e-12)
    at = page("pages/uncertainty.py", real, model="derm-v1", cohort="derm7")
    assert not at.exception and not at.error
    assert at.selectbox(key="unc_class").value is None
    errors = next(m for m in at.metric if m.label == "Errors").value
    assert errors == f"{int((probs[test_rows].argmax(1) != labels[test_rows]).sum())} of {len(test_rows)}"
    for name in ("pages/home.py", "pages/concepts.py"):
        at = page(name, real, model="derm-v1", cohort="derm7")
        assert not at.exception and not at.error, name


def test_pages_on_a_grey_as_rgb_cohort_with_repeated_patients(real):
    from tests.pages.test_pages import page  # streamlit only where pages are tested

    at = page("pages/subgroups.py", real, model="chest-v1", cohort="chest")
    assert not at.exception and not at.error
    text = " ".join(m.value for m in at.markdown)
    assert f"cluster bootstrap: {len(CHEST_IMAGES_PER_PATIENT)} patients resampled" in text
    assert "patients" in at.dataframe[0].value.columns
    assert "age_band" in at.multiselect(key="sub_by").options and "age" not in at.multiselect(key="sub_by").options
    at = page("pages/case_review.py", real, model="chest-v1", cohort="chest")
    assert not at.exception and not at.error
    assert at.selectbox(key="review_class").value == 1, "a binary model: its positive class at its threshold"
    for name in ("pages/uncertainty.py", "pages/home.py", "pages/concepts.py"):
        at = page(name, real, model="chest-v1", cohort="chest")
        assert not at.exception and not at.error, name
    assert "MRN" not in str([e.proto for e in at.get("markdown")])


def test_the_app_opens_a_model_on_a_cohort_it_fits(real):
    from tests.pages.test_pages import page  # streamlit only where pages are tested

    at = page("app.py", real)
    assert at.sidebar.selectbox(key="model").value == "derm-v1"
    assert at.sidebar.selectbox(key="cohort").value == "derm7", "not the alphabetically first (chest, grey)"
    at.sidebar.selectbox(key="model").set_value("chest-v1").run()
    assert not at.exception and at.session_state["cohort"] == "chest"
    assert next(m for m in at.metric if m.label == "Cases loaded").value == str(sum(CHEST_IMAGES_PER_PATIENT))
