"""Quick version of the referral area of the calibration suite (``benchmarks/calibration/referral.py``): the board
report's clinical figures (missed and false alarms per 1000; with referral, the share referred, the sensitivity
among the kept cases and the missed per 1000 kept) cover their truths at a few simulations; the figures as the report
printed them before (a point, no interval) and intervals that take a patient's images as independent are caught
below their band."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.calibration import referral as area


def test_every_referral_claim_holds_at_a_few_simulations():
    found = area.claims(40)
    assert len(found) == 10 and {c.kind for c in found} == {"coverage"}
    failed = [c.line() for c in found if not c.passed]
    assert not failed, failed


def test_the_old_point_figures_are_caught():
    found = area.claims(20, design="point")
    assert all(c.measured == 0.0 and not c.passed for c in found), [c.line() for c in found]


def test_ignoring_patients_is_caught():
    found = area.claims(60, seed=3, design="images", most=10, patient_sd=3.0)
    nested = [c for c in found if "patients" in c.claim]
    assert not all(c.passed for c in nested), [c.line() for c in nested]
    assert all(c.passed for c in found if "patients" not in c.claim)  # images alone do not depend on the key
    assert min(c.measured for c in nested) < 0.9


def test_the_population_truths_are_those_of_a_large_fresh_sample():
    pop = area.population()
    u, y, called, _ = area.draw(np.random.default_rng(12345), 400_000)
    assert ((y == 1) & ~called).mean() * 1000 == pytest.approx(pop.missed_rate, abs=0.6)
    assert ((y == 0) & called).mean() * 1000 == pytest.approx(pop.false_rate, abs=0.6)
    cutoff = float(np.quantile(u, 0.9))
    kept = u <= cutoff
    at = pop.at(cutoff)
    assert (~kept).mean() == pytest.approx(at["referred"], abs=0.002)
    assert called[kept & (y == 1)].mean() == pytest.approx(at["sensitivity_kept"], abs=0.004)
    assert ((y == 1) & ~called)[kept].mean() * 1000 == pytest.approx(at["missed_per_kept"], abs=0.8)
    # referral leaves the hard cases to a reader: the kept cases' sensitivity is above the cohort's
    assert at["sensitivity_kept"] > called[y == 1].mean()


def test_a_bad_design_is_refused():
    with pytest.raises(ValueError, match="design 'bootstrap' is not one of"):
        area.cohort(np.random.default_rng(0), 10, design="bootstrap")
