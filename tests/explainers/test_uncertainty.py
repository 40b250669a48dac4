"""Uncertainty: decomposition known answers, MC dropout / TTA / ensembles, calibration, referral, and the demo."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from data_adapters.errors import ExplainerError, InvalidInputError
from evaluation.calibration import expected_calibration_error, fit_temperature
from evaluation.referral import (
    error_detection,
    referral,
    risk_coverage,
    uncertainty_by_group,
)
from evaluation.subgroups import choose_threshold, labelled_frame
from explainers.uncertainty import ensemble, mc_dropout, summarise, tta
from tests.helpers import TinyCNN, all_hooks, handle_for, random_png_cohort
from workspace.store import Workspace
from workspace.uncertainty import case_uncertainty, uncertainty


class DropoutCNN(TinyCNN):
    def __init__(self):
        super().__init__(2, 1, 3)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.head(self.drop(self.features(x).flatten(2).mean(dim=2)))


@pytest.fixture
def cases(tmp_path):
    return random_png_cohort(tmp_path, 10)


def test_decomposition_known_answers():
    agree = np.tile(np.array([[[0.5, 0.5]]]), (4, 1, 1))
    s = summarise(agree, "binary")
    assert s["entropy"][0] == pytest.approx(np.log(2)) and s["mutual_information"][0] == pytest.approx(0, abs=1e-9)
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    s = summarise(disagree, "binary")
    assert s["entropy"][0] == pytest.approx(np.log(2), rel=1e-5)
    assert s["mutual_information"][0] == pytest.approx(np.log(2), rel=1e-4)  # all of it epistemic
    assert s["std"][0, 1] == pytest.approx(0.5)
    three = summarise(np.full((3, 1, 3), 1 / 3), "multiclass")
    assert three["entropy"][0] == pytest.approx(np.log(3))


def test_mc_dropout_varies_is_seeded_and_leaves_the_model_as_it_was(cases):
    model = DropoutCNN()
    handle = handle_for(model, n_classes=3, input_shape=(1, 12, 12))
    a = mc_dropout(handle, cases.cases, samples=6, seed=1)
    b = mc_dropout(handle, cases.cases, samples=6, seed=1)
    assert a.shape == (6, 10, 3) and np.allclose(a.sum(axis=2), 1, atol=1e-5)
    np.testing.assert_allclose(a, b)
    assert a.std(axis=0).max() > 1e-3, "dropout must be active"
    assert not model.training and all_hooks(model) == 0
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(model(x), model(x))  # eval mode still deterministic


def test_mc_dropout_refuses_a_model_without_dropout(cases):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    with pytest.raises(ExplainerError, match=r"has no dropout layer, so Monte Carlo dropout does not apply; use tta"):
        mc_dropout(handle, cases.cases)


def test_tta_and_ensemble(cases):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    t1 = tta(handle, cases.cases, samples=4, seed=2)
    np.testing.assert_allclose(t1, tta(handle, cases.cases, samples=4, seed=2))
    assert t1.shape == (4, 10, 3) and t1.std(axis=0).max() > 0
    other = handle_for(TinyCNN(2, 1, 3, seed=5), n_classes=3, input_shape=(1, 12, 12))
    e = ensemble([handle, other], cases.cases)
    assert e.shape == (2, 10, 3)
    with pytest.raises(InvalidInputError, match="an ensemble needs at least two models, got 1"):
        ensemble([handle], cases.cases)
    binary = handle_for(TinyCNN(2, 1, 1), task="binary", input_shape=(1, 12, 12))
    with pytest.raises(InvalidInputError, match="differ in classes, task or input shape"):
        ensemble([handle, binary], cases.cases)


def test_temperature_scaling_recovers_a_known_temperature_and_improves_calibration():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 3))
    truth = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in logits])
    over = np.exp(3 * logits)
    over /= over.sum(axis=1, keepdims=True)  # over-confident by a factor 3
    scaler = fit_temperature(over[:2000], truth[:2000], "multiclass")
    assert scaler.temperature == pytest.approx(3.0, rel=0.1)
    k = 0
    before = expected_calibration_error(truth[2000:] == k, over[2000:, k])
    after = expected_calibration_error(truth[2000:] == k, scaler.apply(over[2000:])[:, k])
    assert after < before / 2
    with pytest.raises(InvalidInputError, match="needs at least 10 held-out cases"):
        fit_temperature(over[:5], truth[:5], "multiclass")


def _patients(rng, patients, images=2, inflate=1.0):
    """Binary held-out cases, ``images`` per patient sharing the patient's truth and a patient effect; the model's
    probability is calibrated (``inflate`` 1) or over-confident (its logit times ``inflate``)."""
    y = np.repeat(rng.random(patients) < 0.4, images)
    s = np.where(y, 1.0, -1.0) + np.repeat(rng.normal(0, 0.8, patients), images) + rng.normal(0, 0.6, len(y))
    p = 1 / (1 + np.exp(-(2 * s + np.log(0.4 / 0.6)) * inflate))
    return np.column_stack([1 - p, p]), y.astype(int), np.repeat(np.arange(patients), images)


def test_recalibration_is_fitted_on_some_patients_checked_on_others_and_applied_when_it_helps():
    from sklearn.metrics import log_loss

    from evaluation.calibration import _log_loss, held_out_split, patient_split, recalibrate

    rng = np.random.default_rng(0)
    probs, labels, clusters = _patients(rng, 600, inflate=3.0)
    fit = patient_split(clusters, seed=0)
    assert not (set(clusters[fit]) & set(clusters[~fit])), "a patient's images stay on one side"
    images = held_out_split(clusters)
    assert set(clusters[images]) & set(clusters[~images]), "the old image split put patients on both sides"
    assert _log_loss(labels.astype(float), probs[:, 1]).mean() == pytest.approx(log_loss(labels, probs[:, 1]))
    result = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1)
    assert result.applied and result.ece_after < result.ece_before and "applied" in result.message
    assert result.scaler.temperature == pytest.approx(3.0, rel=0.25)  # the inflation it undoes
    assert result.fit_patients == result.check_patients == 300 and result.check.sum() == result.check_cases
    np.testing.assert_allclose(result.apply(probs), result.scaler.apply(probs))


def test_recalibration_that_makes_calibration_worse_on_other_patients_is_refused_with_its_figures():
    from evaluation.calibration import patient_split, recalibrate

    rng = np.random.default_rng(1)
    probs, labels, clusters = _patients(rng, 400)
    fit = patient_split(clusters, seed=0)
    # the fitting patients look under-confident (their labels follow a sharper model), the others are calibrated:
    # the fitted temperature sharpens everyone and the check patients lose
    sharp, sharp_labels, _ = _patients(np.random.default_rng(2), 400, inflate=0.3)
    probs[fit] = sharp[fit]
    labels[fit] = sharp_labels[fit]
    result = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1)
    assert not result.applied and result.ece_after > result.ece_before
    assert re.fullmatch(r"recalibration made calibration worse on held-out patients: ECE 0\.\d{3} → 0\.\d{3}; "
                        r"not applied", result.message), result.message
    np.testing.assert_allclose(result.apply(probs), probs)
    forced = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1, always=True)
    assert forced.applied and "without its check" in forced.message


def test_recalibration_of_a_calibrated_model_is_rarely_applied_and_needs_enough_patients():
    from evaluation.calibration import recalibrate

    rng = np.random.default_rng(3)
    applied = 0
    for s in range(20):
        probs, labels, clusters = _patients(rng, 150)
        applied += recalibrate(probs, labels, "binary", clusters=clusters, class_index=1, seed=s).applied
    assert applied <= 3, "a calibrated model keeps its probabilities"
    probs, labels, clusters = _patients(rng, 12)
    few = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1)
    assert few.scaler is None and not few.applied and "12 held-out patients, at least 20" in few.message


def test_risk_coverage_and_referral_known_answers():
    u = np.array([0.1, 0.2, 0.3, 0.9])
    correct = np.array([True, True, True, False])
    curve = risk_coverage(u, correct)
    assert list(curve["accuracy"]) == [1.0, 1.0, 1.0, 0.75]
    assert error_detection(u, ~correct, n_boot=200)["auroc"] == 1.0
    where = referral(u, 0.9, refer_fraction=0.25)
    assert where["refer"] is True and where["percentile"] == 75.0  # the top quarter is the one at 0.9
    assert referral(u, 0.3, 0.25)["refer"] is False
    frame = pd.DataFrame({"g": ["a", "a", "b", "b"], "u": u})
    by = uncertainty_by_group(frame, "g", "u", n_boot=100).set_index("group")
    assert by.loc["a", "mean"] == pytest.approx(0.15) and by.loc["b", "n"] == 2


def test_uncertainty_is_cached(tmp_path, cases, monkeypatch):
    import explainers.uncertainty as U

    handle = handle_for(DropoutCNN(), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    first = uncertainty(ws, [handle], cases, "mc_dropout", samples=4).frame
    assert list(first.columns[:4]) == ["case_id", "mean_0", "mean_1", "mean_2"]
    monkeypatch.setattr(U, "mc_dropout", lambda *a, **k: pytest.fail("recomputed cached uncertainty"))
    again = uncertainty(Workspace(tmp_path / "ws"), [handle], cases, "mc_dropout", samples=4).frame
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(InvalidInputError, match=r"unknown uncertainty method 'mc-dropout' \(did you mean 'mc_dropout'"):
        uncertainty(ws, [handle], cases, "mc-dropout")


def test_demo_uncertainty_is_higher_on_errors(demo_ws, demo_cohort, demo_models):
    unc = uncertainty(demo_ws, [demo_models["v2"]], demo_cohort, "mc_dropout")
    frame = labelled_frame(demo_cohort.frame(), unc.predictions(), 1).merge(unc.frame, on="case_id")
    frame = frame[frame["split"] == "test"]
    t = choose_threshold(frame["y"].to_numpy(), frame["p"].to_numpy())
    error = ((frame["p"] >= t) != frame["y"]).to_numpy()
    assert 0 < error.sum() < len(error) / 4
    assert frame.loc[error, "entropy"].mean() > frame.loc[~error, "entropy"].mean()
    detect = error_detection(frame["entropy"].to_numpy(), error)
    assert detect["lo"] > 0.5, detect


def test_one_cases_uncertainty_alone_equals_its_row_of_the_cohorts(demo_ws, demo_cohort, demo_models):
    """Case review shows the case in view without running the cohort; the numbers must be the cohort's."""
    import numpy as np

    handle = demo_models["v2"]
    table = uncertainty(demo_ws, [handle], demo_cohort, "mc_dropout").frame.set_index("case_id")
    for case in demo_cohort.cases[:3]:
        alone = case_uncertainty(demo_ws, handle, case, "mc_dropout").frame.set_index("case_id").loc[case.case_id]
        row = table.loc[case.case_id]
        np.testing.assert_allclose(alone[table.columns].to_numpy(float), row.to_numpy(float), atol=1e-6)


def test_the_uncertainty_command_says_whether_recalibration_helps_on_held_out_patients(demo_root, tmp_path, capsys):
    from tests.workspace.test_cli import _demo_args
    from workspace.cli import main

    assert main(["uncertainty", *_demo_args(demo_root, "v1"), "--model", str(demo_root / "models" / "v2"),
                 "--method", "ensemble", "--out", str(tmp_path / "u.csv")]) == 0
    out = capsys.readouterr().out
    (line,) = [t for t in out.splitlines() if t.startswith("recalibration")]
    assert ("held-out patients" in line and ("; applied" in line or "; not applied" in line)) \
        or "not judged" in line, line
