"""The reader-agreement calibration claims hold at a small simulation count, and the simulation catches the old
designs (plain Wilson over verdicts; kappa resampled by image when a patient has two)."""
from __future__ import annotations

from benchmarks.calibration.agreement import claims, population_kappa


def test_reader_agreement_intervals_hold_their_coverage():
    found = claims(150, seed=1, n_boot=500)
    assert len(found) == 5
    for c in found:
        assert c.passed, c.line()


def test_the_simulation_fails_the_old_designs():
    old = {c.claim: c for c in claims(150, seed=1, old=True, n_boot=500)}
    wilson = old["reader agreement with the model: 95% interval (plain Wilson over verdicts (old))"]
    assert not wilson.passed and wilson.measured < 0.90, wilson.line()
    two_way = old["reader agreement for readers like these: 95% interval (plain Wilson over verdicts (old))"]
    assert not two_way.passed, two_way.line()
    light = old["mean kappa over readers like these: 95% interval (cases resampled only (old design))"]
    assert not light.passed, light.line()
    image = old["Cohen's kappa of two readers: 95% interval (30 patients x 2 images, old)"]
    assert not image.passed and image.measured < 0.90, image.line()


def test_population_kappa_known_answer():
    # two readers who always report the truth agree perfectly; two who always guess agree by chance only
    assert abs(population_kappa(faithful=1.0) - 1.0) < 1e-12
    assert abs(population_kappa(faithful=0.0)) < 1e-12
