"""The operating-point and recalibration rows of the calibration suite, quick: every claim inside its Monte Carlo band
at few simulations, and the old recalibration (half the images, always applied) far outside its band."""
from __future__ import annotations

from benchmarks.calibration import Claim
from benchmarks.calibration import operating_point

SIMS = 30


def test_operating_point_and_recalibration_claims_hold_at_few_simulations():
    claims = operating_point.claims(SIMS, seed=2)
    assert len(claims) == 4
    for c in claims:
        assert c.passed, c.line()


def test_the_old_recalibration_makes_a_calibrated_model_worse_most_of_the_time():
    old = operating_point.old_design(SIMS, seed=2)
    claim = Claim("old recalibration", "false alarm", 0.05, round(old["recalibration_worse"] * SIMS), SIMS, "old")
    assert not claim.passed and old["recalibration_worse"] > 0.5
    assert old["recalibration_worse_overconfident"] < 0.2, "where there is something to fix, it fixes it"
    # the check, not only the patient split, is what keeps the rate down
    forced = operating_point.old_decision_rates(12, seed=2)["recalibration_worse"]
    assert forced > 0.5
