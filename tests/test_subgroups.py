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
from evaluation.metrics import METRICS, bootstrap_weights, counts
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
    for name in METRICS.names():
        assert METRICS.get(name)(c)[0] == pytest.approx(expected[name], abs=1e-12), name


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
            assert METRICS.get(name)(c)[b] == pytest.approx(expected[name], abs=1e-6), name  # float32 replicates


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
            lo, hi = np.quantile(METRICS.get(name)(reps), [0.025, 0.975])
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
    assert METRICS.get("ece")(c)[0] == pytest.approx(expected_calibration_error(y, p))


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
