"""Quick version of the comparison area of the calibration suite (``benchmarks/calibration/comparison.py``; the full
count runs in ``benchmarks/calibration_suite.py``): McNemar, the region test and the paired error-detection AUROC
inside their bands at a few simulations; the old McNemar on images and a region test ignoring patients caught below
their bands, so the simulations can fail; the patients' McNemar against scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, permutation_test

from benchmarks.calibration import Claim
from benchmarks.calibration import comparison as area
from evaluation.version_comparison import mcnemar, mcnemar_clustered


def test_every_comparison_claim_holds_at_a_few_simulations():
    found = area.claims(8)
    assert {c.kind for c in found} == {"false alarm", "coverage", "power"}
    assert len(found) == 10
    failed = [c.line() for c in found if not c.passed]
    assert not failed, failed


def test_mcnemar_on_images_of_one_patient_alarms_above_its_band():
    """1-4 images per patient that a version gets right or wrong together: the exact test on images (the old code)
    flags equal versions far above 5%; the patients' sign-flip test stays inside the band."""
    sims = 80
    old = sum(area.mcnemar_patients_p(np.random.default_rng([3, s]), old=True) < 0.05 for s in range(sims))
    new = sum(area.mcnemar_patients_p(np.random.default_rng([3, s])) < 0.05 for s in range(sims))
    assert not Claim("old", "false alarm", 0.05, old, sims, "").passed, old
    assert Claim("new", "false alarm", 0.05, new, sims, "").passed, new
    assert old > 2 * new


def test_region_interval_ignoring_patients_covers_below_its_band():
    sims = 40
    hits = np.array([area.region_coverage(np.random.default_rng([4, s]), s, design="cases") for s in range(sims)])
    assert not all(Claim("v", "coverage", 0.95, int(h), sims, "").passed for h in hits.sum(axis=0)[:2])


@pytest.mark.parametrize("broken,fixed", [(7, 2), (0, 5), (12, 12), (3, 0)])
def test_patients_mcnemar_is_the_exact_test_with_one_image_each(broken, fixed):
    b = np.r_[np.ones(broken, int), np.zeros(fixed, int)]
    f = 1 - b
    assert mcnemar_clustered(b, f) == pytest.approx(binomtest(broken, broken + fixed, 0.5).pvalue)
    assert mcnemar(broken, fixed) == pytest.approx(binomtest(broken, broken + fixed, 0.5).pvalue)


def test_patients_mcnemar_against_scipys_paired_permutation_test():
    rng = np.random.default_rng(7)
    broken, fixed = rng.integers(0, 4, 12), rng.integers(0, 3, 12)
    exact = permutation_test((broken, fixed), lambda x, y: np.sum(x - y), permutation_type="samples",
                             alternative="two-sided", n_resamples=np.inf).pvalue
    assert mcnemar_clustered(broken, fixed) == pytest.approx(exact)
    broken, fixed = rng.integers(0, 4, 60), rng.integers(0, 3, 60)  # Monte Carlo beyond 16 discordant patients
    reference = permutation_test((broken, fixed), lambda x, y: np.sum(x - y), permutation_type="samples",
                                 alternative="two-sided", n_resamples=20_000, random_state=1).pvalue
    assert mcnemar_clustered(broken, fixed) == pytest.approx(reference, abs=0.01)
    assert mcnemar_clustered(broken, fixed) >= 1 / 20_001


def test_tcav_of_two_versions_keeps_its_verdicts_where_the_old_difference_test_alarmed():
    """Compare's TCAV: each version's own verdict side by side; on versions with equal population TCAV the verdicts
    rarely disagree, where the earlier Welch test of the difference alarmed (0.30 of 100)."""
    from benchmarks.calibration.comparison import tcav_claims

    new, old = tcav_claims(12), tcav_claims(12, old=True)
    assert all(c.passed for c in new), [c.line() for c in new]
    assert old[1].hits > new[1].hits, "the old design alarms more on versions that do not differ"
