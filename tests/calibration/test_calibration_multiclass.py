"""Quick version of the multi-class area of the calibration suite (``benchmarks/calibration/multiclass.py``): every
claim inside its band at a few simulations, the known population values against scikit-learn on a large sample, and
intervals that treat a patient's images as independent caught below their band, so the simulation can fail."""
from __future__ import annotations

import numpy as np

from benchmarks.calibration import Claim
from benchmarks.calibration import multiclass as area


def test_every_multiclass_claim_holds_at_a_few_simulations():
    found = area.claims(4)
    assert {c.kind for c in found} == {"false alarm", "coverage", "power"}
    failed = [c.line() for c in found if not c.passed]
    assert not failed, failed


def test_population_values_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, roc_auc_score, top_k_accuracy_score

    y, P = area._draw(np.random.default_rng(12345), area.POPULATION)
    truth = area.population()
    assert abs(accuracy_score(y, P.argmax(axis=1)) - truth["accuracy"]) < 0.003
    assert abs(top_k_accuracy_score(y, P, k=2) - truth["top2_accuracy"]) < 0.003
    assert abs(roc_auc_score(y, P, multi_class="ovr") - truth["macro_auroc"]) < 0.002
    assert truth["accuracy"] > 1 / 3 and truth["brier"] < 2 / 3  # better than chance


def test_intervals_treating_a_patients_images_as_independent_cover_below_their_band():
    sims, sd = 30, 2.0
    truth = {m: area.population(patient_sd=sd)[m] for m in ("accuracy", "brier")}
    covered = area.coverage_counts(lambda rng: area.patient_cohort(rng, keyed=False, most=8, patient_sd=sd,
                                                                   patients=60), truth, sims, 1, 63)
    assert not all(Claim(m, "coverage", 0.95, k, sims, "").passed for m, k in covered.items()), covered
