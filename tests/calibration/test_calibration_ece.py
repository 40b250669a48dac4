"""Quick version of the calibration-error area (``benchmarks/calibration/ece.py``): every claim inside its band at a
few simulations; the consistency test against scipy's binomial where its null is known exactly; and the simulation
catching what was wrong (the ECE interval the product printed, and "ECE above a fixed cut" as miscalibration)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.calibration import Claim
from benchmarks.calibration import ece as area
from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER
from evaluation.calibration import expected_calibration_error, miscalibration_test


def test_every_calibration_error_claim_holds_at_a_few_simulations():
    found = area.claims(3)
    assert {c.kind for c in found} == {"false alarm", "coverage", "power"}
    failed = [c.line() for c in found if not c.passed]
    assert not failed, failed


def test_the_consistency_p_value_is_the_binomial_tail_where_every_score_is_one_half():
    """Known answer: every score 0.5 (one bin), so ECE = |k/n − 1/2| with k ~ Binomial(n, 1/2) under the null, and
    the p-value is P(|K − n/2| ≥ |k − n/2|), from scipy's binomial."""
    from scipy.stats import binom

    n, k = 200, 114
    y = np.r_[np.ones(k), np.zeros(n - k)]
    test = miscalibration_test(y, np.full(n, 0.5), n_sims=19_999, seed=1)
    d = abs(k - n / 2)
    exact = binom.cdf(n / 2 - d, n, 0.5) + binom.sf(n / 2 + d - 1, n, 0.5)
    assert test.ece == pytest.approx(abs(k / n - 0.5), abs=1e-12)
    assert test.p_value == pytest.approx(exact, abs=0.01), (test.p_value, exact)
    assert test.shown() == (exact < 0.05)


def test_the_test_separates_a_calibrated_from_an_overconfident_model_and_ignores_row_order():
    rng = np.random.default_rng(5)
    calibrated = area.binary_cohort(rng, {"g": 400})
    sharp = area.binary_cohort(rng, {"g": 400}, sharpen=3.0)
    a = miscalibration_test(calibrated["y"], calibrated["p"])
    b = miscalibration_test(sharp["y"], sharp["p"])
    assert b.p_value < 0.01 < a.p_value and b.ece > a.ece
    assert a.ece == pytest.approx(expected_calibration_error(calibrated["y"].to_numpy(float), calibrated["p"]))
    assert 1 / 1000 <= b.p_value, "never below what 999 draws can show"
    order = rng.permutation(400)
    assert miscalibration_test(calibrated["y"].to_numpy()[order], calibrated["p"].to_numpy()[order]).p_value \
        == a.p_value
    with pytest.raises(InvalidInputError, match="3 outcomes for 2 scores"):
        miscalibration_test([0, 1, 1], [0.2, 0.3])


def test_the_ece_interval_the_product_printed_fails_its_coverage_row():
    sims = 30
    calibrated = area.old_interval_coverage(sims, seed=2)
    assert calibrated == 0.0, "a resampled ECE interval never reaches a calibrated model's 0"
    assert not Claim("old ECE interval", "coverage", 0.95, round(calibrated * sims), sims, "").passed
    # and an ECE above a fixed cut read as miscalibration alarms on most calibrated cohorts of 200
    rate = area.fixed_cut_false_alarms(40, seed=2)
    assert not Claim("ECE > 0.05", "false alarm", 0.05, round(rate * 40), 40, "").passed


def test_tables_and_report_show_ece_without_an_interval_but_with_its_test():
    from evaluation.subgroups import subgroup_report
    from workspace.report import _with_intervals

    frame = area.binary_cohort(np.random.default_rng(3), {"a": 150, "b": 150})
    table = subgroup_report(frame, "g", threshold=0.5, n_boot=50).table
    assert "ece_lo" not in table and "brier_lo" in table
    assert table["ece_p"].between(0, 1).all() and (table["ece_p_holm"] >= table["ece_p"]).all()
    overall = table.set_index("group").loc["overall"]
    assert overall["ece_p_holm"] == overall["ece_p"], "overall is its own test, not in the groups' family"
    cell = _with_intervals(table, ["ece", "brier"]).set_index("group").loc["overall"]
    assert "by chance; miscalibration" in cell["ece"] and "–" not in cell["ece"] and "–" in cell["brier"]
    assert float(cell["ece"].split(" ")[0]) == pytest.approx(overall["ece"], abs=5e-4), "the model card reads it"


def test_the_groups_holm_adjustment_is_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from evaluation.calibration import miscalibration_holm

    p = [0.3, 0.01, 0.04, 0.02]
    table = pd.DataFrame({"group": ["overall", "a", "b", "c"], "ece_p": p})
    adjusted = miscalibration_holm(table)["ece_p_holm"].to_numpy()
    assert adjusted[0] == 0.3
    np.testing.assert_allclose(adjusted[1:], multipletests(p[1:], method="holm")[1])


def test_a_patients_images_are_drawn_together_where_treating_them_as_independent_alarms():
    """Patients whose images share risk and label: the test with the patient key dropped calls the calibrated model
    miscalibrated far above 5% (so the clustered row can fail); the product's test still finds overconfidence."""
    sims = 10
    rates = area.clustered_rates(sims, seed=3)
    naive = rates["images as independent, false alarms"]
    assert not Claim("images", "false alarm", 0.05, round(naive * sims), sims, "").passed, rates
    assert rates["patients, power (logit × 2)"] >= 0.5, rates
    rng = np.random.default_rng(4)
    frame = area.patient_cohort(rng)
    keyed = miscalibration_test(frame["y"], frame["p"], clusters=frame[CLUSTER])
    shuffled = frame.iloc[rng.permutation(len(frame))]
    assert miscalibration_test(shuffled["y"], shuffled["p"], clusters=shuffled[CLUSTER]).p_value == keyed.p_value
    assert keyed.p_value > miscalibration_test(frame["y"], frame["p"]).p_value, "images alike: a wider null"
