"""Policies that live once in the library (issue 25): whether a model can be hooked, the default uncertainty method,
"refer the most uncertain fraction", the clinical figures per 1000 with their intervals, the recalibration's
reliability on its check patients, where a volume opens, and which cases Case review's box offers. Known answers,
checked against pandas, scikit-learn and statsmodels where one of them computes the same thing."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from data_adapters.errors import InvalidInputError
from evaluation.referral import (
    REFER_FRACTION,
    clinical_rates,
    kept_accuracy,
    referral,
    referral_cutoff,
    referral_outcomes,
    referred,
)
from tests.helpers import TinyCNN, handle_for

ROOT = Path(__file__).resolve().parents[2]


class DropoutCNN(TinyCNN):
    def __init__(self):
        super().__init__(2, 1, 3)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.head(self.drop(self.features(x).flatten(2).mean(dim=2)))


# -- can this model be hooked? the default uncertainty method ---------------------------------------------------------
def test_hookable_and_the_default_uncertainty_method():
    from explainers.uncertainty import default_method

    plain = handle_for(TinyCNN(2, 1, 3), n_classes=2, input_shape=(1, 12, 12))
    dropout = handle_for(DropoutCNN(), n_classes=2, input_shape=(1, 12, 12))
    scripted = handle_for(torch.jit.script(DropoutCNN().eval()), n_classes=2, input_shape=(1, 12, 12))
    assert plain.hookable and dropout.hookable and not scripted.hookable
    assert default_method(dropout) == "mc_dropout"
    assert default_method(plain) == "tta"  # no dropout to sample
    assert default_method(scripted) == "tta"  # dropout it has, but hooks cannot reach it


def test_no_module_outside_the_record_asks_whether_a_model_is_torchscript():
    """One place for the question: ``ModelHandle.hookable``; pages, workspace, evaluation and explainers call it."""
    found = []
    for folder in ("pages", "workspace", "evaluation", "explainers", "data_adapters"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "records.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "ScriptModule":
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_no_page_or_report_picks_the_uncertainty_method_itself():
    found = []
    for path in [*(ROOT / "pages").glob("*.py"), ROOT / "workspace" / "report.py"]:
        text = path.read_text()
        if "if has_dropout(handle) else 1" in text or '"mc_dropout" if' in text:
            found.append(str(path.relative_to(ROOT)))
    assert not found, found


# -- refer the most uncertain ---------------------------------------------------------------------------------------
def test_referral_known_answers():
    u = np.array([0.1, 0.2, 0.3, 0.9])
    assert referral_cutoff(u, 0.25) == 0.3 and referred(u, 0.25).tolist() == [False, False, False, True]
    assert referral_cutoff(u, 0.0) == 0.9 and not referred(u, 0.0).any()
    assert referral_cutoff(u, 1.0) == -np.inf and referred(u, 1.0).all()
    assert referral_cutoff([np.nan, np.inf], 0.5) == np.inf  # nothing finite: nothing referred
    # a case without an uncertainty is never referred, and does not count in the cohort
    assert referred([np.nan, 0.1, 0.5, 0.9], 0.34).tolist() == [False, False, False, True]
    # ties at the cutoff are kept together: fewer referred, never a tie split by case order
    assert referred([0.1, 0.5, 0.5, 0.5], 0.5).tolist() == [False, False, False, False]
    where = referral(u, 0.9, 0.25)
    assert where == {"percentile": 75.0, "cutoff": 0.3, "refer": True}
    assert REFER_FRACTION == 0.1


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "0.1", True])
def test_a_bad_refer_fraction_is_refused(fraction):
    with pytest.raises(InvalidInputError, match=r"refer fraction .*: must be a share of the cohort from 0 to 1"):
        referral_cutoff(np.arange(5.0), fraction)


@pytest.mark.parametrize("n", [7, 24, 25, 35, 101])
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.15, 0.5])
def test_referral_refers_the_nlargest_and_every_site_agrees(n, fraction):
    """The referred cases are pandas' ``nlargest`` of the rounded count (distinct values), and the worklist, the case
    panel, the Uncertainty page's accuracy and the board report's share all count the same cases. Before, n = 25 at
    10% referred 2 on one page (``nlargest(round(2.5))``) and 3 in the worklist (above the 90% quantile)."""
    from evaluation.worklist import worklist

    rng = np.random.default_rng(n)
    u = pd.Series(rng.permutation(n) / n + 0.01, index=[f"c{i}" for i in range(n)])
    m = int(np.floor(fraction * n + 0.5))
    mask = referred(u.to_numpy(), fraction)
    assert set(u.index[mask]) == set(u.nlargest(m).index)
    frame = pd.DataFrame({"case_id": u.index, "label": rng.integers(0, 2, n)}).assign(
        p_1=rng.random(n)).assign(p_0=lambda f: 1 - f["p_1"])
    table = worklist(frame, class_index=1, threshold=0.5, n_classes=2, class_names=["no", "yes"], uncertainty=u,
                     refer_fraction=fraction)
    assert table["refer"].tolist() == mask.tolist()
    assert [referral(u.to_numpy(), v, fraction)["refer"] for v in u] == mask.tolist()
    correct = rng.random(n) < 0.8
    kept, overall = kept_accuracy(u.to_numpy(), correct, fraction)
    from sklearn.metrics import accuracy_score

    assert kept == pytest.approx(accuracy_score(np.ones(n - m, bool), correct[~mask]))
    assert overall == pytest.approx(correct.mean())
    out = referral_outcomes(u.to_numpy(), np.ones(n, int), correct, cutoff=referral_cutoff(u.to_numpy(), fraction))
    assert out["referred"] == pytest.approx(m / n) and out["kept"] == n - m


def test_monitoring_refers_with_the_same_rule_on_its_reference():
    import evaluation.drift as drift
    import evaluation.referral as referral_module

    assert drift.REFER_FRACTION is referral_module.REFER_FRACTION
    assert drift.referral_cutoff is referral_module.referral_cutoff and drift.referred is referral_module.referred


# -- the clinical figures per 1000, with intervals ---------------------------------------------------------------
def test_clinical_rates_are_wilson_intervals_of_shares_of_all_cases():
    from statsmodels.stats.proportion import proportion_confint

    y = np.array([1] * 30 + [0] * 170)
    called = np.r_[np.ones(24, bool), np.zeros(6, bool), np.ones(17, bool), np.zeros(153, bool)]
    rates = clinical_rates(y, called)
    assert rates["missed"] == pytest.approx(6 / 200 * 1000) and rates["false_alarms"] == pytest.approx(17 / 200 * 1000)
    lo, hi = proportion_confint(6, 200, alpha=0.05, method="wilson")
    assert rates["missed_ci"] == pytest.approx((lo * 1000, hi * 1000), abs=1e-6)
    lo, hi = proportion_confint(17, 200, alpha=0.05, method="wilson")
    assert rates["false_alarms_ci"] == pytest.approx((lo * 1000, hi * 1000), abs=1e-6)
    # the same as (1 - sensitivity) x prevalence, the old point figure
    assert rates["missed"] == pytest.approx((1 - 24 / 30) * 30 / 200 * 1000)
    # patients of 4 images that share their outcome: wider (fewer independent observations), same point
    clustered = clinical_rates(y, called, clusters=np.arange(200) // 4)
    assert clustered["missed"] == rates["missed"]
    assert clustered["missed_ci"][1] - clustered["missed_ci"][0] > rates["missed_ci"][1] - rates["missed_ci"][0]


def test_referral_outcomes_known_answers_against_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    u = np.arange(10.0)  # the two most uncertain (8, 9) referred at 20%
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    called = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 1], bool)
    out = referral_outcomes(u, y, called, cutoff=referral_cutoff(u, 0.2))
    assert out["referred"] == pytest.approx(0.2) and out["kept"] == 8 and out["kept_positives"] == 3
    assert out["sensitivity_kept"] == pytest.approx(2 / 3)
    assert out["sensitivity_kept_ci"] == pytest.approx(proportion_confint(2, 3, method="wilson"), abs=1e-9)
    assert out["missed_per_kept"] == pytest.approx(1 / 8 * 1000)
    assert out["referred_ci"] == pytest.approx(proportion_confint(2, 10, method="wilson"), abs=1e-9)
    assert referral_outcomes(u, np.r_[np.zeros(8, int), 1, 1], called, cutoff=7.0) is None  # no kept positive


# -- recalibration: the reliability drawn on the check patients only ---------------------------------------------
def test_check_reliability_uses_the_check_patients_only():
    from evaluation.calibration import calibration_target, check_reliability, recalibrate

    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    logit = (labels - 0.5) * 6 + rng.normal(0, 1, n)  # overconfident
    p1 = 1 / (1 + np.exp(-logit))
    probs = np.c_[1 - p1, p1]
    result = recalibrate(probs, labels, "binary", clusters=np.arange(n) // 2, class_index=1)
    y, before, after = check_reliability(result, probs, labels, 1)
    assert len(y) == int(result.check.sum()) < n
    expect_before, expect_y = calibration_target(probs[result.check], labels[result.check], 1)
    np.testing.assert_array_equal(before, expect_before)
    np.testing.assert_array_equal(y, expect_y)
    np.testing.assert_allclose(after, result.scaler.apply(probs[result.check])[:, 1])
    few = recalibrate(probs[:12], labels[:12], "binary", class_index=1)
    with pytest.raises(InvalidInputError, match="no reliability to draw: recalibration not judged"):
        check_reliability(few, probs[:12], labels[:12], 1)


# -- where a volume opens; which cases the case box offers ---------------------------------------------------------
def test_a_volume_opens_at_the_ground_truth_then_the_evidence_then_the_middle():
    from explainers.figures import opening_slice, slice_anchors

    mask = np.zeros((10, 4, 4), bool)
    mask[7, 1:3, 1:3] = True
    evidence = np.zeros((10, 4, 4), np.float32)
    evidence[2, 2, 2], evidence[5, 0, 0] = 1.0, -5.0  # a strong negative edge elsewhere does not pull the view
    anchors = slice_anchors(mask=mask, opening=evidence, opening_title="Occlusion", maps={"saliency": evidence})
    assert list(anchors) == ["ground-truth centre", "evidence (Occlusion)", "peak of saliency", "middle"]
    assert [opening_slice(a, "axial", 10) for a in anchors.values()] == [7, 2, 2, 5]
    assert list(slice_anchors()) == ["middle"]
    assert list(slice_anchors(opening=evidence)) == ["evidence (occlusion)", "middle"]


def test_case_options_keep_the_case_being_read_and_filters_choices():
    from evaluation.worklist import case_options, filter_groups, outcome_choices

    assert case_options(["b", "c"], "a", ["a", "b", "c"]) == (["a", "b", "c"], True)
    assert case_options(["b", "c"], "b", ["a", "b", "c"]) == (["b", "c"], False)
    assert case_options(["b", "c"], "zz", ["a", "b", "c"]) == (["b", "c"], False)  # not a case of this cohort
    assert case_options([], None, ["a"]) == ([], False)
    assert filter_groups(["site", "split", "sex", "age_band", "scanner"]) == ["site", "sex", "age_band"]
    binary = pd.DataFrame({"outcome": ["correct", "false positive", "unlabelled"]})
    top = pd.DataFrame({"outcome": ["correct", "misclassified"]})
    assert outcome_choices(binary, False) == ["correct", "false positive", "false negative"]
    assert outcome_choices(top, True) == ["correct", "misclassified"]
    assert outcome_choices(top, False) == ["correct", "false positive", "false negative"]


# -- the class a page opens on; the ground-truth mask on the model's grid ----------------------------------------------
def test_pages_open_on_the_class_the_model_is_judged_by():
    from evaluation.outcomes import class_views, judged_class

    three = handle_for(TinyCNN(3, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    binary = handle_for(TinyCNN(2, 1, 3), task="binary", input_shape=(1, 12, 12))
    assert class_views(three) == [None, 0, 1, 2] and judged_class(three) is None  # the top class first
    assert class_views(binary) == [0, 1] and judged_class(binary) == 1  # the positive class
    for handle in (three, binary):
        assert judged_class(handle) in class_views(handle)
    for page in ("case_review", "uncertainty", "subgroups", "compare"):
        text = (ROOT / "pages" / f"{page}.py").read_text()
        assert "views.index(judged_class(handle))" in text and "views = class_views(handle)" in text, page


def test_a_map_explains_the_top_class_or_else_the_positive_class_by_default():
    from data_adapters.records import Prediction
    from explainers.inference import explained_class

    three = handle_for(TinyCNN(3, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    binary = handle_for(TinyCNN(2, 1, 3), task="binary", input_shape=(1, 12, 12))
    assert explained_class(three, Prediction("a", (0.2, 0.5, 0.3))) == 1  # what the model said: its top class
    assert explained_class(three, Prediction("b", (0.6, 0.1, 0.3))) == 0
    assert explained_class(binary, Prediction("c", (0.9, 0.1))) == 1, "binary: the positive class, even when unlikely"
    cli = (ROOT / "workspace" / "cli.py").read_text()
    assert "explained_class(handle, prediction)" in cli and "np.argmax(prediction" not in cli


def test_a_mask_is_binarised_once_on_the_model_grid():
    from data_adapters.preprocessing import mask_on_model_grid
    from data_adapters.records import Image, Preprocessing

    pre = Preprocessing(in_channels=1, spatial_size=(4, 4), resize=True)
    mask = np.zeros((1, 8, 8), np.float32)
    mask[0, :4, :4] = 1.0
    out = mask_on_model_grid(pre, Image(array=mask, spacing=(1.0, 1.0), source="m.png"))
    assert out.dtype == bool and out.shape == (4, 4)
    assert out[:2, :2].all() and not out[2:, :].any() and not out[:, 2:].any()
