"""Subgroup metrics: equal to scikit-learn and fairlearn, honest intervals, edge cases, and the demo's known gap."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import (
    balanced_accuracy_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from data_adapters.errors import InvalidInputError
from evaluation.calibration import expected_calibration_error
from evaluation.cohort_summary import with_bands
from evaluation.metrics import ONE_VS_REST, bootstrap_weights, counts, metric, metric_names
from evaluation.subgroups import (
    board_view,
    choose_threshold,
    labelled_frame,
    subgroup_report,
)


def synthetic(n=600, seed=0, groups=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    p = np.clip(np.round(0.5 * y + rng.normal(0.25, 0.2, n), 2), 0, 1)  # rounded: ties on purpose
    return pd.DataFrame({"y": y, "p": p, "g": rng.choice(groups, n), "h": rng.choice(["u", "v"], n)})


def sklearn_metrics(y, p, called):
    return {"auroc": roc_auc_score(y, p), "sensitivity": recall_score(y, called),
            "specificity": recall_score(~y, ~called), "ppv": precision_score(y, called),
            "npv": precision_score(~y, ~called), "balanced_accuracy": balanced_accuracy_score(y, called),
            "brier": brier_score_loss(y, p), "ece": expected_calibration_error(y, p)}


def test_point_metrics_equal_scikit_learn():
    f = synthetic()
    y, p = f["y"].to_numpy(), f["p"].to_numpy()
    called = p >= 0.45
    c = counts(np.ones((1, len(y))), y, p, called)
    expected = sklearn_metrics(y, p, called)
    for name in metric_names(ONE_VS_REST):
        assert metric(name)(c)[0] == pytest.approx(expected[name], abs=1e-12), name


def test_weighted_counts_equal_metrics_on_the_resampled_rows():
    f = synthetic(200)
    y, p = f["y"].to_numpy(), f["p"].to_numpy()
    w = bootstrap_weights(y, 3, np.random.default_rng(1))
    assert (w[:, y].sum(axis=1) == y.sum()).all() and (w[:, ~y].sum(axis=1) == (~y).sum()).all()
    c = counts(w, y, p, p >= 0.45)
    for b in range(3):
        rows = np.repeat(np.arange(len(y)), w[b].astype(int))
        expected = sklearn_metrics(y[rows], p[rows], p[rows] >= 0.45)
        for name in ("auroc", "sensitivity", "ppv", "brier"):
            assert metric(name)(c)[b] == pytest.approx(expected[name], abs=1e-6), name  # float32 replicates


def test_report_estimates_equal_fairlearn_metricframe():
    f = synthetic()
    report = subgroup_report(f, "g", threshold=0.45, n_boot=50)
    mf = MetricFrame(metrics={"sensitivity": recall_score, "ppv": precision_score}, y_true=f["y"],
                     y_pred=f["p"] >= 0.45, sensitive_features=f["g"])
    table = report.table.set_index("group")
    for g in ("a", "b", "c"):
        assert table.loc[g, "sensitivity"] == pytest.approx(mf.by_group.loc[g, "sensitivity"])
        assert table.loc[g, "ppv"] == pytest.approx(mf.by_group.loc[g, "ppv"])
        assert table.loc[g, "auroc"] == pytest.approx(roc_auc_score(f.y[f.g == g], f.p[f.g == g]))
    gaps = report.gaps.set_index("metric")
    assert gaps.loc["equalized_odds_difference", "difference"] == pytest.approx(
        equalized_odds_difference(f["y"], f["p"] >= 0.45, sensitive_features=f["g"]))
    assert gaps.loc["demographic_parity_difference", "difference"] == pytest.approx(
        demographic_parity_difference(f["y"], f["p"] >= 0.45, sensitive_features=f["g"]))
    assert report.table.loc[0, "group"] == "overall" and table.loc["overall", "n"] == len(f)


def test_bootstrap_interval_covers_the_truth_at_about_its_nominal_rate():
    """300 simulated groups with true sensitivity 0.8 and specificity 0.7: the 95% intervals should cover
    about 95% of the time (allowing simulation error and the percentile method's known slight undercoverage)."""
    rng = np.random.default_rng(7)
    covered = {"sensitivity": 0, "specificity": 0}
    sims = 300
    for _ in range(sims):
        y = np.r_[np.ones(80, bool), np.zeros(120, bool)]
        called = np.where(y, rng.random(200) < 0.8, rng.random(200) < 0.3)
        p = called.astype(float)
        reps = counts(bootstrap_weights(y, 1000, rng), y, p, called)
        for name, truth in (("sensitivity", 0.8), ("specificity", 0.7)):
            lo, hi = np.quantile(metric(name)(reps), [0.025, 0.975])
            covered[name] += lo <= truth <= hi
    for name, hits in covered.items():
        assert 0.89 <= hits / sims <= 0.99, (name, hits / sims)


def test_ece_of_a_calibrated_predictor_is_near_zero_and_of_a_shifted_one_is_not():
    rng = np.random.default_rng(3)
    p = rng.random(20_000)
    y = rng.random(20_000) < p
    assert expected_calibration_error(y, p) < 0.015
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15
    c = counts(np.ones((1, len(y))), y, p, p > 0.5)
    assert metric("ece")(c)[0] == pytest.approx(expected_calibration_error(y, p))


def test_edge_cases_one_class_group_empty_intersection_missing_values_identical_predictions():
    f = synthetic(400)
    f.loc[f.g == "c", "y"] = False                       # group c: negatives only
    f.loc[(f.g == "a") & (f.h == "v"), "g"] = "b"         # intersection a · v is empty
    f.loc[:9, "h"] = None                                # missing attribute values
    report = subgroup_report(f, ["g", "h"], n_boot=200)
    table = report.table.set_index("group")
    assert "a · v" not in table.index
    assert "a · (missing)" in table.index or "b · (missing)" in table.index or "c · (missing)" in table.index
    c_rows = table[table.index.str.startswith("c ·")]
    assert c_rows["auroc"].isna().all() and c_rows["sensitivity"].isna().all()
    assert all("auroc: only one class present" in n for n in c_rows["notes"])
    assert all("sensitivity: no positive cases" in n for n in c_rows["notes"])
    assert c_rows["specificity"].notna().all()
    small = table[table["n"] < 30]
    assert small["small"].all() and all(n.startswith("too small to judge (n=") for n in small["notes"])
    same = synthetic(300).assign(p=0.3)
    flat = subgroup_report(same, "g", n_boot=100).table.set_index("group")
    assert (flat["auroc"] == 0.5).all()


def test_threshold_rules_and_bad_input():
    f = synthetic(500)
    y, p = f["y"].to_numpy(), f["p"].to_numpy()
    t = choose_threshold(y, p, "sensitivity=0.9")
    assert recall_score(y, p >= t) >= 0.9
    t_spec = choose_threshold(y, p, "specificity=0.9")
    assert recall_score(~y, p < t_spec) >= 0.9
    youden = choose_threshold(y, p)
    j = lambda th: recall_score(y, p >= th) + recall_score(~y, p < th)  # noqa: E731
    assert all(j(youden) >= j(th) - 1e-12 for th in np.unique(p))
    with pytest.raises(InvalidInputError, match=r"threshold rule 'f1' is not 'youden' or 'sensitivity=<0..1>'"):
        choose_threshold(y, p, "f1")
    with pytest.raises(InvalidInputError, match=r"unknown attribute\(s\) \['race'\]; available: \['g', 'h'\]"):
        subgroup_report(f, "race")


def test_board_view_suppresses_small_cells():
    f = synthetic(300)
    f.loc[:7, "g"] = "tiny"
    report = subgroup_report(f, "g", n_boot=100)
    board = board_view(report.table, 10).set_index("group")
    assert board.loc["tiny", "n"] == "<10" and board.loc["tiny", "auroc"] == "<10"
    assert board.loc["tiny", "notes"] == "suppressed: fewer than 10 cases"
    others = report.table[~report.table["group"].isin(["overall", "tiny"])].sort_values("n")
    smallest, largest = others["group"].iloc[0], others["group"].iloc[-1]
    # one hidden group and the total shown would give its n away: the smallest other group is hidden too
    assert board.loc[smallest, "n"] == "<10" and "complementary" in board.loc[smallest, "notes"]
    assert board.loc[largest, "n"] == str(report.table.set_index("group").loc[largest, "n"])
    assert board.loc[largest, "auroc"] == f'{report.table.set_index("group").loc[largest, "auroc"]:.3f}'


def test_suppression_of_the_issues_example_holds_against_subtraction():
    from evaluation.suppression import suppression

    hide = suppression({"A": 65, "B": 67, "C": 79}, 66)  # total 211 shown: 211 - 67 - 79 would give A's 65
    assert set(hide.hidden) == {"A", "B"} and hide.hidden["A"] == "fewer than 66 cases"
    assert "complementary" in hide.hidden["B"] and "A" not in hide.hidden["B"]
    assert hide.texts(["auroc: B 0.552 vs A 0.354", "auroc: C 0.9 vs C2 0.8"]) == ["auroc: C 0.9 vs C2 0.8"]
    assert not hide.names_hidden("AUROC by site") and hide.names_hidden("site A (n=65)")
    assert set(suppression({"A": 65, "B": 60, "C": 79}, 66).hidden) == {"A", "B"}, "two hidden: only their sum shows"
    assert suppression({"A": 70, "B": 67}, 66).hidden == {}


def test_demo_v2_misses_site_b_occult_lesions_and_v1_hides_it_with_the_marker(demo_ws, demo_cohort, demo_models):
    """A property of the data: site B's occult positives carry the marker and no visible lesion, so v2 (which
    cannot use the marker) must miss them, and v1 (which leans on it) must not. Over 5 seeds x 1/2 threads v2's
    held-out sensitivity gap to site B was 0.24-0.35; v1's at most 0.05."""
    gap = {}
    for version in ("v1", "v2"):
        preds = demo_ws.predictions(demo_models[version], demo_cohort)
        frame = labelled_frame(with_bands(demo_cohort.frame()), preds, 1)
        report = subgroup_report(frame[frame["split"] == "test"], "site", threshold=0.5)
        gap[version] = report.gaps.set_index("metric").loc["sensitivity"]
    assert gap["v2"]["lower_group"] == "B" and gap["v2"]["difference_lo"] > 0, gap["v2"]
    assert gap["v1"]["difference"] < gap["v2"]["difference"] - 0.15, (gap["v1"], gap["v2"])


def _equal_groups(rng, n_groups=10, n=160):
    rows = []
    for g in range(n_groups):
        y = np.arange(n) % 2 == 0
        p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1)
        rows.append(pd.DataFrame({"g": f"g{g}", "y": y, "p": p}))
    return pd.concat(rows, ignore_index=True)


def test_gap_intervals_hold_their_level_with_ten_equal_groups():
    """The best-vs-worst pair is chosen after looking; a per-pair interval then flags a gap that is not there
    most of the time with 10 equal groups. The simultaneous (max-t) interval keeps it at or below 5%.
    Measured here: 0 of 60 simulations flagged (per-pair intervals on the same data: 46 of 60)."""
    rng = np.random.default_rng(11)
    flagged = naive = 0
    sims = 60
    for s in range(sims):
        report = subgroup_report(_equal_groups(rng), "g", threshold=0.5, n_boot=300, seed=s)
        row = report.gaps.set_index("metric").loc["sensitivity"]
        flagged += bool(row["flag"])
        tpr = {g: report.table.set_index("group").loc[g, "sensitivity"] for g in (row["higher_group"],
                                                                                   row["lower_group"])}
        # the old way: an interval for the chosen pair alone (normal approximation from the groups' intervals)
        ys = report.table.set_index("group")
        se_pair = np.hypot((ys.loc[row["higher_group"], "sensitivity_hi"] - ys.loc[row["higher_group"],
                                                                                    "sensitivity_lo"]) / 3.92,
                           (ys.loc[row["lower_group"], "sensitivity_hi"] - ys.loc[row["lower_group"],
                                                                                  "sensitivity_lo"]) / 3.92)
        naive += (tpr[row["higher_group"]] - tpr[row["lower_group"]]) - 1.96 * se_pair > 0
        assert row["groups_compared"] == 10 and row["pairs"] == 45
    assert flagged / sims <= 0.12, flagged
    assert naive / sims > 2 * max(flagged, 1) / sims, (naive, flagged)


def test_no_comparable_group_is_said_never_an_all_clear():
    f = synthetic(300)
    report = subgroup_report(f, "g", n_boot=100, min_n=1000)
    assert not report.comparable and report.flags() == []
    assert report.judgement().startswith("could not judge: 0 of 3 group(s)")
    assert report.gaps["note"].str.startswith("could not judge").all()


def test_a_demographic_parity_gap_that_is_only_prevalence_says_so():
    rng = np.random.default_rng(3)
    rows = []
    for g, prevalence in (("a", 0.2), ("b", 0.6)):  # a perfect model: selection rate equals prevalence
        y = rng.random(400) < prevalence
        rows.append(pd.DataFrame({"g": g, "y": y, "p": np.where(y, 0.9, 0.1)}))
    report = subgroup_report(pd.concat(rows, ignore_index=True), "g", threshold=0.5, n_boot=200)
    dp = report.gaps.set_index("metric").loc["demographic_parity_difference"]
    assert dp["difference"] > 0.3 and "prevalence difference" in dp["note"]
    assert report.gaps.set_index("metric").loc["equalized_odds_difference", "difference"] == 0.0


def test_the_cluster_bootstrap_covers_where_the_image_bootstrap_does_not():
    """With 200 images from 61 patients (one with 40) whose images agree, resampling images as if independent
    gives intervals that miss the truth about a third of the time; resampling patients keeps ~95%
    (``benchmarks/cluster_coverage.py`` gives the full table)."""
    from evaluation.simulation import coverage

    c = coverage(100, n_boot=300, seed=0)
    assert c["coverage_patients"] >= 0.88, c
    assert c["coverage_images"] <= 0.80, c
    assert c["width_patients"] > 1.4 * c["width_images"], c


def test_cluster_weights_resample_whole_patients():
    from evaluation.metrics import cluster_weights

    clusters = np.array([0, 0, 0, 1, 2, 2])
    w = cluster_weights(clusters, 500, np.random.default_rng(0))
    assert w.shape == (500, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 4] == w[:, 5]).all()
    per_patient = w[:, [0, 3, 4]]
    assert (per_patient.sum(axis=1) == 3).all(), "three patients drawn per replicate"
    assert abs(per_patient.mean() - 1.0) < 0.05


def test_every_metric_states_its_resampling_design_on_its_registry_entry():
    FACTS = {name: metric(name, ONE_VS_REST) for name in metric_names(ONE_VS_REST)}  # an entry is its facts

    assert set(FACTS) == set(metric_names(ONE_VS_REST))
    assert all("class mix varying" in FACTS[m].design for m in FACTS)
    assert "prevalence" in FACTS["ppv"].design and "prevalence" in FACTS["npv"].design
    assert FACTS["brier"].direction == FACTS["ece"].direction == "lower" and FACTS["auroc"].direction == "higher"


def test_groups_are_resampled_with_their_class_mix_varying_and_the_old_design_is_kept():
    """A group of PPV-dependent size: the class mix varies between samples, so PPV's interval must be wider than
    with the class counts fixed (which leaves the prevalence variation out)."""
    f = synthetic(900)
    new = subgroup_report(f, "g", threshold=0.45, n_boot=2000).table.set_index("group")
    old = subgroup_report(f, "g", threshold=0.45, n_boot=2000, design="fixed class counts").table.set_index("group")
    width = lambda t, m: (t[f"{m}_hi"] - t[f"{m}_lo"]).drop("overall")  # noqa: E731
    assert (width(new, "ppv") > 1.1 * width(old, "ppv")).all(), (width(new, "ppv"), width(old, "ppv"))
    assert (width(new, "sensitivity") / width(old, "sensitivity")).between(0.85, 1.2).all()
    with pytest.raises(InvalidInputError, match="design 'stratified' is not one of cases within group"):
        subgroup_report(f, "g", design="stratified")


def test_the_cell_bootstrap_varies_the_class_mix_too():
    from evaluation.metrics import Cells

    rng = np.random.default_rng(0)
    y = rng.random(30_000) < 0.3
    p = np.clip(0.5 * y + rng.normal(0.25, 0.2, len(y)), 0, 1)
    cells = Cells.of(y, p, p >= 0.5, 0.5)
    w = cells.resample(500, np.random.default_rng(1))
    positives = w[:, cells.y].sum(axis=1)
    assert np.allclose(w.sum(axis=1), len(y)) and positives.std() > 0.5 * np.sqrt(len(y) * 0.3 * 0.7)
    fixed = cells.resample(500, np.random.default_rng(1), design="fixed class counts")
    assert np.allclose(fixed[:, cells.y].sum(axis=1), y.sum())


def test_gap_judgements_are_controlled_jointly_and_say_over_what():
    f = synthetic(900)
    joint = subgroup_report(f, "g", threshold=0.45, n_boot=1000)
    alone = subgroup_report(f, "g", threshold=0.45, n_boot=1000, family="per metric")
    assert joint.error_control == "family-wise 5% over 9 metrics × 3 pairs of 3 groups (27 contrasts, one max-t)"
    assert joint.error_control in joint.judgement()
    critical = joint.gaps["critical"]
    assert critical.nunique() == 1, "one critical value for the whole family"
    assert (critical.iloc[0] > alone.gaps["critical"]).all(), "the whole family needs a larger one than a metric"
    assert "per metric" in alone.error_control
    g = joint.gaps.set_index("metric")
    assert (g["gap_upper"] >= g["difference_hi"] - 1e-12).all() and (g["gap_lower"] >= g["difference_lo"] - 1e-12).all()
    assert (g["gap_upper_mc_lo"] <= g["gap_upper"]).all() and (g["gap_upper"] <= g["gap_upper_mc_hi"]).all()


def test_a_group_too_small_to_judge_shows_no_interval_never_a_zero_width_one():
    """The issue's case: 3 patients, "specificity 0.286 [0.286, 0.286]". A group under the patient minimum (or
    the size rule) keeps its estimate, gets NaN bounds and says why."""
    from data_adapters.tables import CLUSTER

    f = synthetic(400)
    f[CLUSTER] = np.arange(len(f)) // 2
    f.loc[:39, "g"] = "tiny"  # 40 images (above n=30) from 3 patients (below the minimum of 10)
    f.loc[:39, CLUSTER] = np.repeat([10_001, 10_002, 10_003], [14, 13, 13])
    report = subgroup_report(f, "g", threshold=0.45, n_boot=300)
    tiny = report.table.set_index("group").loc["tiny"]
    assert tiny["small"] and tiny["patients"] == 3
    assert np.isfinite(tiny["specificity"]) and np.isnan(tiny["specificity_lo"]) and np.isnan(tiny["specificity_hi"])
    assert tiny["notes"].startswith("too small to judge (n=40") and "patients=3" in tiny["notes"]
    others = report.table[report.table["group"].isin(["a", "b", "c"])]
    assert (others["specificity_hi"] > others["specificity_lo"]).all()


def test_a_proportion_every_resample_agrees_on_gets_wilsons_interval():
    from statsmodels.stats.proportion import proportion_confint

    f = synthetic(600)
    f.loc[(f.g == "a") & f.y, "p"] = 0.99  # every positive of group a found
    report = subgroup_report(f, "g", threshold=0.45, n_boot=300).table.set_index("group")
    a = report.loc["a"]
    positives = int(((f.g == "a") & f.y).sum())
    assert a["sensitivity"] == 1.0
    assert (a["sensitivity_lo"], a["sensitivity_hi"]) == pytest.approx(
        proportion_confint(positives, positives, method="wilson"), abs=1e-9)
    assert "sensitivity: every resample gave 1.000; Wilson interval instead" in a["notes"]


def test_ece_beside_what_a_perfectly_calibrated_model_would_read():
    """Known answer: scores all 0.5 (one bin), so ECE = |k/n − 1/2| with k ~ Binomial(n, 1/2): its expectation
    from scipy's binomial pmf. And the issue's case: a calibrated model at n = 200 reads about 0.07."""
    from scipy.stats import binom

    from evaluation.calibration import ece_expected_by_chance

    n = 50
    k = np.arange(n + 1)
    exact = float((binom.pmf(k, n, 0.5) * np.abs(k / n - 0.5)).sum())
    assert ece_expected_by_chance(np.full(n, 0.5), n_sims=20_000) == pytest.approx(exact, rel=0.03)
    rng = np.random.default_rng(0)
    p = rng.random(200)
    chance = ece_expected_by_chance(p)
    assert 0.055 < chance < 0.085
    big = rng.random(60_000)  # the normal approximation at scale agrees with the simulation just below it
    assert ece_expected_by_chance(big) == pytest.approx(ece_expected_by_chance(big[:50_000]) * np.sqrt(5 / 6),
                                                        rel=0.05)
    f = synthetic(300)
    table = subgroup_report(f, "g", threshold=0.45, n_boot=100).table.set_index("group")
    assert (table["ece_chance"] > 0).all() and table.loc["overall", "ece_chance"] < table["ece_chance"].drop(
        "overall").min(), "smaller groups: more ECE by chance"


def _gap_cohort(rng, sens_c: float, n: int = 600):
    rows = []
    for g, sens in (("a", 0.85), ("b", 0.85), ("c", sens_c)):
        y = np.arange(n) % 2 == 0
        called = np.where(y, rng.random(n) < sens, rng.random(n) < 0.15)
        rows.append(pd.DataFrame({"g": g, "y": y, "p": np.where(called, 0.8, 0.2)}))
    return pd.concat(rows, ignore_index=True)


def test_the_fairness_gate_passes_only_what_is_shown_within_its_limit():
    """The issue's case: a gap of 0.234 [−0.005, 0.474] used to pass --max-gap 0.1 (not shown to exceed). Now a
    pass needs every pair's simultaneous upper bound at or under the limit; "not shown" is its own outcome."""
    rng = np.random.default_rng(4)
    report = subgroup_report(_gap_cohort(rng, 0.80), "g", threshold=0.5, n_boot=1000)
    row = report.gaps.set_index("metric").loc["sensitivity"]
    wide, tight = row["gap_upper"] + 0.01, row["difference"] + 0.01
    assert report.gate({"sensitivity": wide}).outcome == "pass"
    shown = report.gate({"sensitivity": tight})
    assert row["gap_lower"] < tight < row["gap_upper"] and shown.outcome == "not shown"
    assert "not shown within" in shown.reasons[0] and "Monte Carlo interval of the bound" in shown.reasons[0]
    assert "passes only a gap shown within its limit" in shown.error_control and "family-wise 5%" in shown.error_control
    far = subgroup_report(_gap_cohort(rng, 0.45), "g", threshold=0.5, n_boot=1000)
    failed = far.gate({"sensitivity": 0.1})
    assert failed.outcome == "fail" and "shown to exceed it" in failed.reasons[0]
    both = far.gate({"sensitivity": 0.1, "ppv": 0.99})
    assert both.outcome == "fail" and [p.outcome for p in both.parts] == ["fail", "pass"]
    unjudged = subgroup_report(_gap_cohort(rng, 0.8), "g", threshold=0.5, n_boot=100, min_n=5000)
    assert unjudged.gate({"sensitivity": 0.5}).outcome == "could not judge"


def test_the_known_gap_keeps_its_power_under_the_joint_family():
    """A sensitivity gap of 0.85 vs 0.55 (300 positives a group) is flagged against the whole family's critical
    value in each of 10 cohorts."""
    rng = np.random.default_rng(5)
    found = 0
    for s in range(10):
        gaps = subgroup_report(_gap_cohort(rng, 0.55), "g", threshold=0.5, n_boot=500, seed=s).gaps
        found += gaps.set_index("metric").loc["sensitivity", "lower_group"] == "c" and bool(
            gaps.set_index("metric").loc["sensitivity", "flag"])
    assert found == 10
