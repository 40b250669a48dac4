"""Quick version of the uncertainty area of the calibration suite (``benchmarks/calibration/uncertainty.py``): the
error-detection AUROC and group-mean intervals inside their bands at a few simulations, the known AUROC against
scikit-learn, and intervals that treat a patient's images as independent caught below their band."""
from __future__ import annotations

import numpy as np

from benchmarks.calibration import uncertainty as area


def test_every_uncertainty_claim_holds_at_a_few_simulations():
    found = area.claims(10)
    assert len(found) == 4 and {c.kind for c in found} == {"coverage"}
    failed = [c.line() for c in found if not c.passed]
    assert not failed, failed


def test_population_auroc_is_that_of_a_large_sample():
    from sklearn.metrics import roc_auc_score

    u, e, _ = area._patients(np.random.default_rng(0), 200_000, most=1)
    assert abs(roc_auc_score(e, u) - area.population_auroc(patient_sd=area.PATIENT_SD)) < 0.004
    u, e = area._images(np.random.default_rng(1), 200_000)
    assert abs(roc_auc_score(e, u) - area.population_auroc()) < 0.004


def test_ignoring_patients_is_caught():
    found = area.claims(30, seed=2, design="images", most=8, patient_sd=2.0)
    assert not all(c.passed for c in found), [c.line() for c in found]
    assert found[1].passed  # the images-only claim does not depend on the patient key
