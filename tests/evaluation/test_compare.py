"""Version comparison: known answers (a version against itself), a candidate worse for one group only, McNemar,
map agreement, the region test on the demo, the release gate and the pages."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from data_adapters.errors import InvalidInputError

from evaluation.version_comparison import flip_summary, flips, mcnemar, paired_comparison
from explainers.agreement import map_agreement
from explainers.perturbation import PERTURBATIONS, parse_region, perturb
from workspace.cli import EXIT_COULD_NOT_JUDGE, EXIT_FAIL, main


def _binary(rng, n_per_group=150, worse_in=None, drop=0.0):
    """Labels and two versions' probabilities for groups A, B, C; the candidate equals the baseline except in
    ``worse_in``, where its scores for positives are lowered by ``drop``."""
    rows = []
    for g in "ABC":
        y = rng.random(n_per_group) < 0.4
        base = np.clip(np.where(y, rng.normal(0.7, 0.15, n_per_group), rng.normal(0.3, 0.15, n_per_group)), 0, 1)
        cand = base.copy()
        if g == worse_in:
            cand = np.clip(np.where(y, base - drop, base), 0, 1)
        rows.append(pd.DataFrame({"label": y.astype(int), "site": g, "b": base, "c": cand}))
    frame = pd.concat(rows, ignore_index=True)
    two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
    return frame, two(frame["b"].to_numpy()), two(frame["c"].to_numpy())


def test_a_version_against_itself_differs_by_exactly_zero():
    frame, b, _ = _binary(np.random.default_rng(0))
    report = paired_comparison(frame, b, b, "site", class_index=1, n_boot=200)
    assert (report.table[["delta", "delta_lo", "delta_hi"]].abs().to_numpy() == 0).all()
    assert set(report.table["verdict"]) == {"not worse (shown)"}
    assert flip_summary(flips(frame, b, b, class_index=1))["fixed"] == 0


def test_a_candidate_worse_for_one_group_is_flagged_there_and_nowhere_else():
    """Over 40 simulated cohorts: B's sensitivity drop (0.25 on positives' scores) is shown worse in most; A and C,
    where the candidate equals the baseline, are never shown worse (their deltas are exactly 0)."""
    rng = np.random.default_rng(1)
    flagged = {"A": 0, "B": 0, "C": 0}
    for i in range(40):
        frame, b, c = _binary(rng, worse_in="B", drop=0.25)
        report = paired_comparison(frame, b, c, "site", class_index=1, n_boot=300, seed=i)
        rows = report.verdicts("sensitivity").set_index("group")
        for g in flagged:
            flagged[g] += rows.loc[g, "verdict"] == "worse"
    assert flagged["A"] == flagged["C"] == 0
    assert flagged["B"] >= 36, flagged


def test_non_inferiority_is_not_shown_falsely_when_the_candidate_is_worse_by_the_margin():
    """Coverage of the non-inferiority bound: when the candidate is truly worse by more than the margin in one
    group, 'not worse (shown)' must be rare there (at most the adjusted one-sided 2.5%, allowing simulation
    noise)."""
    rng = np.random.default_rng(2)
    shown = 0
    for i in range(60):
        frame, b, c = _binary(rng, worse_in="A", drop=0.12)
        report = paired_comparison(frame, b, c, "site", class_index=1, n_boot=300, seed=i,
                                   margins={"sensitivity": 0.02})
        shown += report.verdicts("sensitivity").set_index("group").loc["A", "verdict"] == "not worse (shown)"
    assert shown <= 3, shown


def test_mcnemar_is_the_exact_binomial_on_discordant_cases():
    assert mcnemar(17, 0) == pytest.approx(2 * 0.5 ** 17)
    assert mcnemar(8, 3) == pytest.approx(binomtest(8, 11, 0.5).pvalue)
    assert mcnemar(0, 0) == 1.0


def test_flips_name_each_kind_of_change():
    frame = pd.DataFrame({"label": [1, 1, 0, 0]})
    base = np.array([[0.2, 0.8], [0.7, 0.3], [0.9, 0.1], [0.4, 0.6]])
    cand = np.array([[0.6, 0.4], [0.2, 0.8], [0.8, 0.2], [0.3, 0.7]])
    out = flips(frame, base, cand, class_index=1, thresholds=(0.5, 0.5))
    assert out["change"].tolist() == ["broken", "fixed", "both right", "still wrong"]


def test_map_agreement_of_a_map_with_itself_is_one_and_with_its_reverse_is_not():
    rng = np.random.default_rng(3)
    a = rng.random((1, 16, 16)).astype(np.float32)
    assert map_agreement(a, a) == {"spearman": 1.0, "top_overlap": 1.0}
    flat = np.zeros((1, 16, 16), np.float32)
    assert map_agreement(flat, flat)["spearman"] == 1.0
    reverse = map_agreement(a, a.max() - a)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["top_overlap"] == 0.0


def test_perturbations_change_only_the_region_and_are_deterministic():
    rng = np.random.default_rng(4)
    images = rng.random((3, 1, 20, 20)).astype(np.float32)
    box = parse_region("2,3,6,8", images.shape[1:])
    assert box == (slice(3, 8), slice(2, 6))
    for how in PERTURBATIONS.names():
        out = perturb(images, box, how)
        outside = np.ones((20, 20), bool)
        outside[3:8, 2:6] = False
        np.testing.assert_array_equal(out[..., outside], images[..., outside])
        assert not np.array_equal(out[..., 3:8, 2:6], images[..., 3:8, 2:6]), how
        np.testing.assert_array_equal(out, perturb(images, box, how))
    np.testing.assert_allclose(perturb(images, box, "mirror")[0, 0, 3:8, 2:6], images[0, 0, 3:8, 14:18][:, ::-1])


def test_the_region_test_shows_v1s_shortcut_and_not_v2s(demo_root, capsys):
    code = main(["compare", "--baseline", "v1", "--candidate", "v2", "--cohort", "demo2d", "--by", "site",
                 "--region", "demo-marker", "--perturb", "mirror", "--n-boot", "300", "--workspace", str(demo_root)])
    out = capsys.readouterr().out
    assert code == 0
    shifts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in ("overall", "A", "B", "C") and parts[1] in ("v1:", "v2:"):
            mean, lo, hi = float(parts[2]), float(parts[3].strip("[,")), float(parts[4].strip("]"))
            shifts[(parts[0], parts[1].rstrip(":"))] = (mean, lo, hi)
    # erasing site B's marker lowers v1's p(lesion) (it relies on the marker) and barely moves v2
    mean, lo, hi = shifts[("B", "v1")]
    assert mean < -0.03 and hi < 0
    assert abs(shifts[("B", "v2")][0]) < 0.1
    assert abs(shifts[("A", "v1")][0]) < 0.01, "no marker at site A: nothing to take away"


def test_compare_is_a_release_gate(demo_root, capsys):
    args = ["--cohort", "demo2d", "--workspace", str(demo_root), "--n-boot", "200"]
    assert main(["compare", "--baseline", "v2", "--candidate", "v2", *args, "--max-regression", "auroc=0.02"]) == 0
    assert "pass: auroc" in capsys.readouterr().out
    assert main(["compare", "--baseline", "v1", "--candidate", "v2", *args, "--by", "site",
                 "--max-regression", "auroc=0.02"]) == EXIT_FAIL
    assert "FAIL: auroc at B" in capsys.readouterr().out
    assert main(["compare", "--baseline", "v1", "--candidate", "v2", *args, "--min-n", "5000",
                 "--max-regression", "auroc=0.02"]) == EXIT_COULD_NOT_JUDGE
    assert main(["compare", "--baseline", "v1", "--candidate", "v2", *args, "--max-regression", "auc=0.02"]) == 2
    assert "metric must be one of auroc" in capsys.readouterr().err
    assert main(["compare", "--baseline", "v1", "--candidate", "ct3d-v1", *args]) == 2
    assert "versions compared must take the same kind of input" in capsys.readouterr().err


def test_compare_writes_tables_with_provenance(demo_root, tmp_path, capsys):
    out, changed = tmp_path / "d.csv", tmp_path / "f.csv"
    assert main(["compare", "--baseline", "v1", "--candidate", "v2", "--cohort", "demo2d", "--by", "site",
                 "--n-boot", "100", "--out", str(out), "--flips", str(changed), "--workspace", str(demo_root)]) == 0
    table, cases = pd.read_csv(out), pd.read_csv(changed)
    assert {"models", "cohort", "cases", "thresholds", "computed"} <= set(table.columns)
    assert table["cases"].iloc[0] == "split=test"
    assert set(cases["change"]) <= {"fixed", "broken", "still wrong", "both right"}
    broken = cases[cases["change"] == "broken"]
    assert len(broken) and (broken["p_candidate"] != broken["p_baseline"]).all()


def test_compare_page_and_two_version_case_review(demo_root):
    from tests.pages.test_pages import page

    at = page("pages/compare.py", demo_root, model="v2", cohort="demo2d")
    assert not at.exception and not at.error
    assert at.selectbox(key="cmp_candidate").value == "v2" and at.selectbox(key="cmp_baseline").value == "v1"
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Broken"]) > 0 and float(metrics["McNemar p"]) < 0.05
    assert any("**B**" in w.value for w in at.warning), "v2's loss at site B is named"
    at.button(key="cmp_run_unc").click().run()
    assert not at.exception and not at.error
    detect = next(d.value for d in at.dataframe if "version" in d.value and "auroc" in d.value)
    assert detect["version"].tolist() == ["v1", "v2", "v2 − v1"]
    at.button(key="cmp_run_tcav").click().run()
    assert not at.exception and not at.error
    tcav = at.dataframe[-1].value.set_index(["concept", "layer"])
    assert {"v1 effect", "v2 effect", "change", "verdicts"} <= set(tcav.columns) and len(tcav) >= 4
    assert "p_adjusted" not in tcav.columns, "no uncalibrated test of the difference"
    # the planted truth: v1 uses the marker, v2 does not
    assert "significant for v1 only" in set(tcav.loc["marker", "verdicts"])
    at.text_input(key="cmp_region").set_value("demo-marker").run()
    at.button(key="cmp_run_region").click().run()
    assert not at.exception and not at.error
    at = page("pages/case_review.py", demo_root, model="v2", cohort="demo2d", review_versions=["v1", "v2"])
    assert not at.exception and not at.error
    assert at.multiselect(key="review_versions").value == ["v1"]
    text = " ".join(m.value for m in at.markdown)
    assert "by version: v2" in text and "v1" in text
    keys = [c.key for c in at.get("plotly_chart") if c.key]
    assert any(k.endswith("_v1") for k in keys), "a row of maps for the other version"


def test_tcav_of_two_versions_is_each_versions_own_verdict_side_by_side_with_no_difference_test():
    """The earlier Welch test of the difference called equal versions different in 30% of simulations
    (benchmarks/calibration/comparison.py): the table now holds each version's calibrated verdict and no p-value."""
    from evaluation.version_comparison import tcav_difference

    def frame(marker_effect, marker_significant):
        return pd.DataFrame([{"concept": name, "layer": "l", "target": 1, "effect": e, "effect_lo": e - 0.05,
                              "effect_hi": e + 0.05, "significant": sig, "verdict": "significant" if sig else "not"}
                             for name, e, sig in (("marker", marker_effect, marker_significant),
                                                  ("lesion", 0.3, True))])

    out = tcav_difference(frame(0.4, True), frame(0.01, False), baseline="v1", candidate="v2").set_index("concept")
    assert out.loc["marker", "verdicts"] == "significant for v1 only"
    assert out.loc["lesion", "verdicts"] == "significant for both"
    assert out.loc["marker", "change"] == pytest.approx(0.01 - 0.4)
    assert out.loc["marker", "v1 interval"] == "[+0.350, +0.450]"
    assert not any("p_" in c or c == "differs" for c in out.columns), "no uncalibrated test of the difference"
    with pytest.raises(InvalidInputError, match="no concept and layer in common"):
        tcav_difference(frame(0.4, True), frame(0.4, True).assign(layer="other"))


def test_paired_error_detection_against_scikit_learn_and_itself():
    from sklearn.metrics import roc_auc_score

    from evaluation.version_comparison import paired_error_detection

    rng = np.random.default_rng(6)
    n = 300
    wrong = rng.random(n) < 0.2
    u = rng.normal(0, 1, n) + wrong
    out = paired_error_detection(pd.DataFrame({"label": np.zeros(n)}), {"a": u, "b": u}, {"a": wrong, "b": wrong},
                                 n_boot=200).set_index("version")
    assert out.loc["a", "auroc"] == pytest.approx(roc_auc_score(wrong, u), abs=1e-12)
    assert out.loc["a", "lo"] < out.loc["a", "auroc"] < out.loc["a", "hi"]
    assert out.loc["b − a", ["auroc", "lo", "hi"]].tolist() == [0.0, 0.0, 0.0]


def _few_patients(seed=3):
    from data_adapters.tables import CLUSTER

    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(16), 6)
    y = np.repeat(rng.random(16) < 0.5, 6)
    base = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.2, len(y)), 0, 1)
    cand = np.clip(base - np.where(y, 0.1, 0) + rng.normal(0, 0.1, len(y)), 0, 1)
    two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
    return pd.DataFrame({"label": y.astype(int), CLUSTER: patient}), two(base), two(cand)


def test_the_gates_bound_states_its_monte_carlo_error_and_stays_within_it_across_seeds():
    """16 patients (the issue's bound moved from −0.45 to −0.68 between seeds): each bound comes with the Monte
    Carlo interval of its quantile; across seeds the bounds stay within about that width, and 4000 resamples give a
    narrower one than 1000."""
    frame, b, c = _few_patients()
    widths, bounds = {}, {}
    for n_boot in (1000, 4000):
        rows = [paired_comparison(frame, b, c, [], class_index=1, n_boot=n_boot, seed=s, min_n=10, min_events=2)
                .verdicts("auroc").iloc[0] for s in range(5)]
        bounds[n_boot] = np.array([r.improvement_lower for r in rows])
        widths[n_boot] = np.mean([r.improvement_lower_mc_hi - r.improvement_lower_mc_lo for r in rows])
        assert all(r.improvement_lower_mc_lo <= r.improvement_lower <= r.improvement_lower_mc_hi for r in rows)
    assert widths[4000] < widths[1000]
    assert np.ptp(bounds[4000]) <= 1.5 * widths[4000], (bounds[4000], widths[4000])


def test_the_noninferiority_gate_returns_a_verdict_with_its_burden_of_proof():
    from evaluation.version_comparison import noninferiority_gate

    rng = np.random.default_rng(7)
    frame, b, c = _binary(rng, worse_in="B", drop=0.3)
    same = paired_comparison(frame, b, b, "site", class_index=1, n_boot=300)
    verdict = noninferiority_gate(same, ["auroc"])
    assert verdict.outcome == "pass" and "not worse by more than 0.02 in any of 4 group(s)" in verdict.reasons[0]
    assert verdict.error_control.startswith("passes only what is shown not worse") and "Bonferroni over 4" in \
        verdict.error_control
    worse = paired_comparison(frame, b, c, "site", class_index=1, n_boot=300)
    failed = noninferiority_gate(worse, ["sensitivity"])
    assert failed.outcome == "fail" and any("sensitivity at B" in r for r in failed.reasons)
    drop = -float(worse.verdicts("sensitivity").set_index("group").loc["B", "delta"])
    at_margin = paired_comparison(frame, b, c, "site", class_index=1, n_boot=300, margins={"sensitivity": drop})
    unclear = noninferiority_gate(at_margin, ["sensitivity"])  # a loss equal to the margin: neither shown
    assert at_margin.verdicts("sensitivity").set_index("group").loc["B", "verdict"] == "not shown"
    assert unclear.outcome == "not shown" and "sensitivity at B" in unclear.reasons[0] and "not shown" in \
        unclear.reasons[0]
    small = paired_comparison(frame, b, c, "site", class_index=1, n_boot=100, min_n=5000)
    assert noninferiority_gate(small, ["auroc"]).outcome == "could not judge"


def test_the_sensitivity_bound_is_tangos_score_bound_on_the_flipped_positives():
    """The gate's bound for a share judged right is Tango's score bound (evaluation.inference.tango_bounds) on the
    positives the candidate fixed and broke, at the Bonferroni-adjusted one-sided level; AUROC keeps the bootstrap's
    percentile; ``proportion_bound="percentile"`` is the old design (a bootstrap quantile, with Monte Carlo error)."""
    from scipy.stats import norm

    from evaluation.inference import tango_bounds

    frame, b, c = _binary(np.random.default_rng(3), worse_in="B", drop=0.2)
    report = paired_comparison(frame, b, c, "site", class_index=1, n_boot=300, margins={"sensitivity": 0.05})
    rows = report.verdicts("sensitivity").set_index("group")
    changes = flips(frame, b, c, class_index=1)
    z = norm.ppf(1 - 0.025 / report.adjusted_over)
    for group in ("overall", "B"):
        pos = changes[(changes["label"] == 1) & ((changes["site"] == group) | (group == "overall"))]
        lo, hi = tango_bounds((pos["change"] == "fixed").sum(), (pos["change"] == "broken").sum(), len(pos), z)
        assert rows.loc[group, "improvement_lower"] == pytest.approx(lo, abs=1e-9)
        assert rows.loc[group, "improvement_lower_mc_lo"] == rows.loc[group, "improvement_lower_mc_hi"] == \
            pytest.approx(lo, abs=1e-9)
        assert lo < rows.loc[group, "delta"] < hi
    assert rows.loc["B", "delta"] < -0.05 and rows.loc["B", "verdict"] in ("worse", "not shown")
    auroc = report.verdicts("auroc").iloc[0]
    assert auroc.improvement_lower_mc_lo < auroc.improvement_lower_mc_hi  # a bootstrap quantile, with its MC error
    old = paired_comparison(frame, b, c, "site", class_index=1, n_boot=300, margins={"sensitivity": 0.05},
                            proportion_bound="percentile").verdicts("sensitivity").set_index("group")
    assert old.loc["B", "improvement_lower_mc_lo"] < old.loc["B", "improvement_lower_mc_hi"]
    assert old.loc["B", "improvement_lower"] != rows.loc["B", "improvement_lower"]
    assert "Tango's score bound" in report.error_control
    from evaluation.version_comparison import noninferiority_gate

    assert "Tango's score bound, no Monte Carlo error" in noninferiority_gate(report, ["sensitivity"]).reasons[0]
    assert "Monte Carlo interval" in noninferiority_gate(report, ["auroc"]).reasons[0]
    with pytest.raises(InvalidInputError, match="proportion_bound must be 'score' or 'percentile'"):
        paired_comparison(frame, b, c, "site", class_index=1, n_boot=50, proportion_bound="wald")


def test_the_score_bound_widens_where_a_patients_images_change_together():
    """Each patient's 3 images are one case read three times: treated as 3 independent pairs the bound is too
    narrow; with the patient key the design effect (about 3) widens it, and the clustered bound matches the bound
    of one image per patient closely."""
    from data_adapters.tables import CLUSTER

    rng = np.random.default_rng(5)
    n = 300
    y = rng.random(n) < 0.5
    base = np.where(y, 0.8, 0.2) + rng.uniform(-0.1, 0.1, n)
    cand = np.where(y & (rng.random(n) < 0.1), 0.3, base)
    two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
    one = pd.DataFrame({"label": y.astype(int)})
    tripled = pd.DataFrame({"label": np.repeat(y, 3).astype(int)})
    clustered = tripled.assign(**{CLUSTER: np.repeat(np.arange(n), 3)})
    bound = {name: paired_comparison(f, two(np.repeat(base, k)), two(np.repeat(cand, k)), [], class_index=1,
                                     n_boot=200).verdicts("sensitivity").iloc[0].improvement_lower
             for name, f, k in (("one", one, 1), ("tripled", tripled, 3), ("clustered", clustered, 3))}
    assert bound["tripled"] > bound["clustered"], bound
    assert abs(bound["clustered"] - bound["one"]) < 0.01, bound


def test_identical_versions_keep_a_zero_bound():
    frame, b, _ = _binary(np.random.default_rng(4))
    rows = paired_comparison(frame, b, b, "site", class_index=1, n_boot=100).verdicts("specificity")
    assert (rows["improvement_lower"] == 0).all() and set(rows["verdict"]) == {"not worse (shown)"}


def test_top_class_accuracy_takes_the_score_bound_over_every_case():
    """In the top-class view the share judged right is accuracy, over all cases: its bound is Tango's on the cases
    the candidate's top class fixed and broke; balanced accuracy (not a plain share) keeps the bootstrap."""
    from scipy.stats import norm

    from evaluation.inference import tango_bounds

    rng = np.random.default_rng(6)
    n = 400
    y = rng.integers(0, 3, n)
    base = rng.dirichlet(np.ones(3), n) + 0.6 * np.eye(3)[y]
    cand = np.where((rng.random(n) < 0.1)[:, None], rng.dirichlet(np.ones(3), n), base)
    report = paired_comparison(pd.DataFrame({"label": y}), base, cand, [], n_boot=200)
    right_b, right_c = base.argmax(1) == y, cand.argmax(1) == y
    lo, _ = tango_bounds((right_c & ~right_b).sum(), (right_b & ~right_c).sum(), n, norm.ppf(0.975))
    table = report.table.set_index("metric")
    assert table.loc["accuracy", "improvement_lower"] == pytest.approx(lo, abs=1e-9)
    assert report.score_bounded("accuracy") and not report.score_bounded("balanced_accuracy")
    assert table.loc["balanced_accuracy", "improvement_lower_mc_lo"] < table.loc["balanced_accuracy",
                                                                                 "improvement_lower_mc_hi"]
