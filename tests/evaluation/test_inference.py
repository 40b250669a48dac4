"""evaluation.inference against independent references: statsmodels (Holm, Bonferroni, Wilson), scipy (BCa
bootstrap, binomial order statistics), and simulations of what each design and interval promises."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from evaluation import inference
from evaluation.inference import (
    Verdict,
    bca_interval,
    bonferroni,
    case_weights,
    cluster_weights,
    combine_verdicts,
    design_effect,
    holm,
    max_t,
    percentile_interval,
    permutation_p,
    quantile_mc_interval,
    stratified_weights,
    wilson,
    wilson_clustered,
    within_group_weights,
)


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bonferroni_equal_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.random(12) ** 3, [0.01, 0.01, 1.0]])  # ties and a 1 on purpose
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)
    assert bonferroni(p) == pytest.approx(multipletests(p, method="bonferroni")[1], abs=1e-12)


def test_holm_leaves_nan_out_of_the_family():
    p = np.array([0.01, np.nan, 0.04])
    out = holm(p)
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx(multipletests([0.01, 0.04], method="holm")[1])
    assert len(holm([])) == 0


@pytest.mark.parametrize("k,n,level", [(0, 10, 0.95), (3, 10, 0.95), (10, 10, 0.95), (57, 200, 0.9), (1, 3, 0.99)])
def test_wilson_equals_statsmodels(k, n, level):
    z = stats.norm.ppf(1 - (1 - level) / 2)
    assert wilson(k, n, z) == pytest.approx(proportion_confint(k, n, alpha=1 - level, method="wilson"), abs=1e-12)
    assert np.isnan(wilson(0, 0)).all()


def test_wilson_is_importable_where_it_used_to_live():
    from evaluation.subgroups import wilson as old_home

    assert old_home is wilson


def test_bca_equals_scipy_on_the_same_replicates():
    rng = np.random.default_rng(3)
    x = rng.exponential(1.0, 40)  # skewed: BCa differs from the percentile interval
    res = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=4000, rng=np.random.default_rng(0))
    jack = np.array([np.delete(x, i).mean() for i in range(len(x))])
    lo, hi = bca_interval(x.mean(), res.bootstrap_distribution, jack, 0.95)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-10)
    p_lo, p_hi = percentile_interval(res.bootstrap_distribution, 0.95)
    assert lo > p_lo and hi > p_hi, "for a right-skewed mean BCa moves both bounds up"
    assert np.isnan(bca_interval(np.nan, res.bootstrap_distribution, jack)).all()


def test_percentile_interval_equals_scipy_percentile_method():
    rng = np.random.default_rng(4)
    x = rng.normal(size=50)
    res = stats.bootstrap((x,), np.median, method="percentile", n_resamples=2000, rng=np.random.default_rng(1))
    assert percentile_interval(res.bootstrap_distribution) == pytest.approx(tuple(res.confidence_interval), rel=1e-12)
    assert np.isnan(percentile_interval(np.array([np.nan, np.nan]))).all()


def test_quantile_mc_interval_covers_the_true_quantile_at_its_rate():
    """The order-statistic interval of a 97.5% quantile from 1000 draws covers the distribution's true quantile in
    about 95% of 400 repetitions (binomial order statistics are exact up to discreteness: at least 95%)."""
    rng = np.random.default_rng(5)
    truth = stats.norm.ppf(0.975)
    covered = sum(lo <= truth <= hi for lo, hi in (quantile_mc_interval(rng.normal(size=1000), 0.975)
                                                  for _ in range(400)))
    assert 0.93 <= covered / 400 <= 0.99, covered


def test_weights_of_each_design():
    rng = np.random.default_rng(6)
    y = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    w = stratified_weights(y, 500, rng)
    assert (w[:, y].sum(axis=1) == 30).all() and (w[:, ~y].sum(axis=1) == 70).all()
    g = np.repeat(["a", "b"], 50)
    w = within_group_weights(g, 500, rng)
    assert (w[:, :50].sum(axis=1) == 50).all() and (w[:, 50:].sum(axis=1) == 50).all()
    positives_a = w[:, :30].sum(axis=1)
    assert positives_a.std() > 2, "the class mix varies within a group"
    w = case_weights(100, 2000, rng)
    assert (w.sum(axis=1) == 100).all() and w.mean() == pytest.approx(1.0, abs=0.01)
    assert w[:, 0].var() == pytest.approx(1 - 1 / 100, abs=0.08), "multinomial variance n·(1/n)(1 − 1/n)"
    w = cluster_weights(np.array([0, 0, 1, 2, 2, 2]), 300, rng)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()


def test_max_t_intervals_cover_every_contrast_at_once():
    """Ten independent normal estimates with known SE 1: the bootstrap max-t critical value is the 95% quantile of
    the largest |Z| of ten (Šidák's 2.80), and intervals with it cover all ten truths at once ≈95% of the time."""
    rng = np.random.default_rng(7)
    sidak = stats.norm.ppf(1 - (1 - 0.95 ** 0.1) / 2)
    result = max_t(rng.normal(size=(10, 20_000)), 0.95)
    assert result.critical == pytest.approx(sidak, abs=0.05) and result.family == 10
    assert result.critical_lo <= sidak <= result.critical_hi + 0.02 and result.critical_hi - result.critical_lo < 0.2
    covered, sims = 0, 200
    for _ in range(sims):
        truth = np.zeros(10)
        estimate = truth + rng.normal(size=10)
        boot = estimate[:, None] + rng.normal(size=(10, 1000))
        m = max_t(boot, 0.95)
        covered += np.all(np.abs(estimate - truth) <= m.critical * m.se)
    assert 0.90 <= covered / sims <= 0.99, covered
    single = max_t(rng.normal(size=(1, 20_000)), 0.95)
    assert single.critical == pytest.approx(1.96, abs=0.04), "a family of one is the plain two-sided interval"


def test_max_t_ignores_undefined_replicates():
    r = np.array([[0.0, 1.0, np.nan, -1.0], [np.nan, np.nan, np.nan, np.nan]])
    m = max_t(r)
    assert np.isfinite(m.critical) and m.n_boot == 3


def test_design_effect_and_clustered_wilson_cover_where_plain_wilson_does_not():
    """Three readers per case, who agree with each other: verdicts are not independent. Plain Wilson over all
    verdicts covers the true rate far below 95%; at the design-effect n it covers about 95%."""
    rng = np.random.default_rng(8)
    plain = clustered = 0
    sims, cases, truth = 400, 60, 0.7
    case = np.repeat(np.arange(cases), 3)
    for _ in range(sims):
        right = rng.random(cases) < truth
        verdicts = np.where(rng.random(3 * cases) < 0.9, right[case], rng.random(3 * cases) < truth)
        lo, hi = wilson(verdicts.sum(), len(verdicts))
        plain += lo <= truth <= hi
        lo, hi = wilson_clustered(verdicts, case)
        clustered += lo <= truth <= hi
    assert clustered / sims >= 0.92, clustered
    assert plain / sims < clustered / sims - 0.05, (plain, clustered)
    independent = rng.random(300) < 0.5
    assert design_effect(independent, np.arange(300)) == pytest.approx(1.0, abs=0.2)
    assert design_effect(np.ones(6), [0, 0, 0, 1, 1, 1]) == 3.0, "all agree: each cluster counts once"


def test_permutation_p_never_below_one_over_n_plus_one():
    assert permutation_p(0, 500) == pytest.approx(1 / 501)
    assert permutation_p(500, 500) == 1.0
    assert permutation_p(np.array([0, 9]), 99).tolist() == pytest.approx([0.01, 0.1])
    with pytest.raises(ValueError, match="n_resamples must be at least 1"):
        permutation_p(0, 0)


def test_verdicts_and_their_combination():
    ok = Verdict("pass", ["a within 0.1"], "family-wise 5%")
    bad = Verdict("not shown", ["b not shown within 0.1"], "family-wise 5%")
    assert ok.passed and not bad.passed and isinstance(ok.reasons, tuple)
    both = combine_verdicts([ok, bad])
    assert both.outcome == "not shown" and both.reasons == ("a within 0.1", "b not shown within 0.1")
    assert combine_verdicts([ok, bad, Verdict("fail", ["c"])]).outcome == "fail"
    assert combine_verdicts([]).outcome == "could not judge"
    with pytest.raises(ValueError, match="verdict outcome 'ok' is not one of"):
        Verdict("ok")


def test_cells_are_reexported():
    from evaluation.metrics import Cells

    assert inference.Cells is Cells


def test_tango_bounds_match_the_published_worked_example():
    """Cavo et al. 2012 (Fagerland, Lydersen & Laake 2017, ch. 8; the R package contingencytables' own test):
    the paired table [[59, 6], [16, 80]] has Δ = (6 − 16) / 161 = −0.0621 and Tango's 95% score interval
    −0.1240 to −0.0054."""
    from evaluation.inference import tango_bounds

    lo, hi = tango_bounds(6, 16, 161)
    assert lo == pytest.approx(-0.1240, abs=5e-5) and hi == pytest.approx(-0.0054, abs=5e-5)
    # the roles of the two readings swapped: the interval mirrors
    assert tango_bounds(16, 6, 161) == pytest.approx((-hi, -lo), abs=1e-9)
    # a wider z widens it; a design effect widens it
    wide = tango_bounds(6, 16, 161, z=stats.norm.ppf(0.995))
    assert wide[0] < lo and wide[1] > hi
    assert tango_bounds(6, 16, 161, deff=2.0)[0] < lo
    assert np.isnan(tango_bounds(0, 0, 0)).all()
    # all pairs discordant one way: the interval reaches the end of [−1, 1]
    assert tango_bounds(0, 20, 20)[0] == -1.0 and tango_bounds(20, 0, 20)[1] == 1.0


def test_tango_statistic_at_zero_is_mcnemars_score_statistic():
    """At Δ0 = 0 Tango's score statistic is McNemar's (b − c) / √(b + c): its square against statsmodels' McNemar
    chi-square without continuity correction, so the interval excludes 0 exactly when McNemar's test rejects."""
    from statsmodels.stats.contingency_tables import mcnemar

    from evaluation.inference import _tango_statistic, tango_bounds

    for gained, lost, n in ((6, 16, 161), (30, 12, 400), (3, 9, 50)):
        stat = _tango_statistic(0.0, gained, lost, n, 1.0)
        chi2 = mcnemar([[n - gained - lost, gained], [lost, 0]], exact=False, correction=False).statistic
        assert stat ** 2 == pytest.approx(chi2, rel=1e-9)
        lo, hi = tango_bounds(gained, lost, n)
        assert (lo > 0 or hi < 0) == (chi2 > stats.chi2.ppf(0.95, 1))


def test_tango_bound_holds_its_one_sided_level_at_a_margin_where_few_pairs_disagree():
    """The reason it is the compare gate's bound: 400 pairs, the second reading loses 5% of 340 (about 17
    discordant pairs, none gained), so Δ = −0.0425 exactly; the one-sided 97.5% lower bound lies above the truth in
    at most 2.5% (+ 3 standard errors) of 2000 tables, and the Wald bound (spread at the observed Δ) more often."""
    from evaluation.inference import tango_bounds

    rng = np.random.default_rng(3)
    truth = -0.05 * 340 / 400
    lost = rng.binomial(340, 0.05, 2000)
    above = sum(tango_bounds(0, int(k), 400)[0] > truth for k in lost) / 2000
    wald = np.mean(-lost / 400 - 1.96 * np.sqrt(lost / 400 - (lost / 400) ** 2) / np.sqrt(400) > truth)
    assert above <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 2000), above
    assert wald > above, (wald, above)


def test_paired_design_effect_is_one_for_independent_pairs_and_grows_with_clusters():
    from evaluation.inference import paired_design_effect

    rng = np.random.default_rng(0)
    change = rng.choice([-1, 0, 0, 0, 1], 400)
    assert paired_design_effect(change, np.arange(400)) == 1.0
    # each patient's 4 images change together: the design effect is near 4
    per_patient = rng.choice([-1, 0, 0, 0, 1], 100)
    assert 2.5 < paired_design_effect(np.repeat(per_patient, 4), np.repeat(np.arange(100), 4)) < 5.5
    # nothing discordant: the cautious end, n / C
    assert paired_design_effect(np.zeros(8), np.repeat(np.arange(4), 2)) == 2.0
