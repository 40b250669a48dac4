"""Quick calibration of concept significance (the full count: ``benchmarks/calibration_suite.py --only concepts``):
every claim inside its Monte Carlo band, and the design the product used before (Captum's TCAV tutorial: shared
concept and random sets, a t-test over runs) caught above the false-alarm band on the same simulations."""
from __future__ import annotations

from benchmarks.calibration import Claim
from benchmarks.calibration.concepts import claims, tutorial_design_rates

SIMS = 16


def test_concept_claims_hold_at_a_small_count():
    found = claims(SIMS, seed=1)
    assert [c.kind for c in found] == ["false alarm", "false alarm", "power"]
    for c in found:
        assert c.simulations == SIMS and c.passed, c.line()


def test_the_shared_set_design_fails_the_same_band():
    """The old design calls the orthogonal concept significant far above the band the product's claim must meet."""
    rates = tutorial_design_rates(SIMS, seed=1)
    band = Claim("band", "false alarm", 0.05, 0, SIMS, "").bound
    assert rates["orthogonal"] > band, rates
    assert rates["same_pool"] > band, rates
