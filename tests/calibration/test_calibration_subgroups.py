"""Quick version of the subgroups area of the calibration suite (``benchmarks/calibration/subgroups.py``; the full
count runs in ``benchmarks/calibration_suite.py``): every claim inside its band at a few simulations, and the old
design (class counts fixed, each metric adjusted on its own) caught above its band, so the simulation can fail."""
from __future__ import annotations

import numpy as np

from benchmarks.calibration import Claim
from benchmarks.calibration import subgroups as area


def test_every_subgroup_claim_holds_at_a_few_simulations():
    found = area.claims(4)
    kinds = {c.kind for c in found}
    assert kinds == {"false alarm", "coverage", "power"}
    assert len(found) >= 13
    failed = [c.line() for c in found if not c.passed]
    assert not failed, failed


def test_the_old_design_flags_equal_groups_far_above_its_band():
    """3 equal groups × 600: the old design (each group resampled with its class counts fixed, each metric's gaps
    adjusted on their own) flags some gap in 40% of cohorts (issue 23); the product's design stays near 5%."""
    sims = 15
    old, per_metric = area.any_gap_rate(area._equal(3, 600), sims, 1, n_boot=400, design="fixed class counts",
                                        family="per metric")
    new, _ = area.any_gap_rate(area._equal(3, 600), sims, 1, n_boot=400)
    old_claim = Claim("old design", "false alarm", 0.05, old, sims, "fixed class counts, per metric")
    assert not old_claim.passed, (old, per_metric)
    assert Claim("new design", "false alarm", 0.05, new, sims, "").passed
    assert set(per_metric) & {"ppv", "npv", "ece", "demographic_parity_difference"}, \
        "the prevalence-dependent metrics are the ones the fixed class counts get wrong"


def test_population_values_are_those_of_a_large_sample():
    """The suite's known truths, against a million cases drawn from the same model (scikit-learn's AUROC)."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    frame = area.cohort(np.random.default_rng(0), {"g": 1_000_000})
    y, p = frame["y"].to_numpy(), frame["p"].to_numpy()
    truth = area.population()
    assert abs(recall_score(y, p >= 0.5) - truth["sensitivity"]) < 0.003
    assert abs(precision_score(y, p >= 0.5) - truth["ppv"]) < 0.003
    assert abs(roc_auc_score(y, p) - truth["auroc"]) < 0.002


def test_the_old_compare_bound_passes_a_candidate_worse_by_the_margin_where_the_score_bound_holds():
    """A stress design with few discordant cases (200 cases, 80 positives; the candidate breaks about 1.6 of them,
    worse by exactly the margin 0.02): the paired bootstrap's percentile bound (the old design) reads 0 whenever
    nothing broke and passes 20% of 60 cohorts, far above its 2.5% band; Tango's score bound, its variance under the
    null, stays inside it. (At the suite's design, 1000 cases, the old bound passed 4.2% of 1300 cohorts and the
    score bound 1.7% of the same 1300: ``benchmarks/calibration/subgroups.py``.)"""
    sims = 60
    old = area.margin_claim(sims, 1, 0.02, 200, proportion_bound="percentile", n_boot=500)
    new = area.margin_claim(sims, 1, 0.02, 200, n_boot=500)
    assert not old.passed and old.measured > 0.1, old.line()
    assert new.passed and new.measured < old.measured, new.line()
