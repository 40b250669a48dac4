"""The monitoring rows of the calibration suite, quick: every claim inside its Monte Carlo band at few simulations,
and the simulation catches what was wrong (a missing multiplicity adjustment; the old 3-class reading)."""
from __future__ import annotations

from benchmarks.calibration import Claim
from benchmarks.calibration import monitoring

SIMS = 24


def test_monitoring_claims_hold_at_few_simulations():
    claims = monitoring.claims(SIMS, seed=1)
    assert {c.kind for c in claims} == {"false alarm", "power", "coverage"}
    for c in claims:
        assert c.passed, c.line()
    # without Holm's adjustment the same null streams alarm far more often: the false-alarm row can fail
    unadjusted = monitoring.UNADJUSTED[(SIMS, 1)]
    window = next(c for c in claims if c.claim.startswith("drift alert, any window"))
    assert unadjusted > window.measured and unadjusted > 0.15


def test_the_old_three_class_reading_fails_the_coverage_row():
    old = monitoring.old_design(4, seed=1)
    assert old["accuracy"] < 0.5, "the last class against label == 1 reads a 0.80 model near 0.4"
    claim = Claim("old reading", "coverage", 0.95, round(old["coverage"] * old["windows"]), old["windows"], "old")
    assert not claim.passed


def test_sensitivity_intervals_that_treat_a_patients_images_as_independent_cover_below_their_band():
    """Binary model, patients' images much alike: the product's interval (clustered by patient) holds its band,
    the plain Wilson on images (patient key dropped) falls below it, so the sensitivity row can fail."""
    covered, total = monitoring.sensitivity_coverage(12, seed=2, spread=4.0)
    naive, naive_total = monitoring.sensitivity_coverage(12, seed=2, spread=4.0, keyed=False)
    assert Claim("clustered", "coverage", 0.95, covered, total, "").passed
    assert not Claim("images", "coverage", 0.95, naive, naive_total, "").passed and naive < covered


def test_specificity_intervals_that_treat_a_patients_images_as_independent_cover_below_their_band():
    """The same for the measured specificity: clustered by patient it holds its band; the plain Wilson on images
    (patient key dropped) falls below it, so the specificity row can fail."""
    covered, total = monitoring.specificity_coverage(12, seed=2, spread=4.0)
    naive, naive_total = monitoring.specificity_coverage(12, seed=2, spread=4.0, keyed=False)
    assert total == naive_total > 0
    assert Claim("clustered", "coverage", 0.95, covered, total, "").passed
    assert not Claim("images", "coverage", 0.95, naive, naive_total, "").passed and naive < covered
