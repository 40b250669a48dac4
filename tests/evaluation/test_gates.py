"""Every gate's Verdict made in ``evaluation/`` (``evaluation.gates``), on known answers, and the command's one map from
a Verdict to its exit code."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from data_adapters.errors import InvalidInputError
from evaluation.gates import (alert_levels, drift_gate, gap_limits, integrity_verdict, loaded_verdict, margins,
                              noninferiority_gate, same_report, shown_gaps)
from evaluation.inference import OUTCOMES, Verdict
from evaluation.subgroups import subgroup_report
from evaluation.suppression import suppression
from evaluation.version_comparison import paired_comparison


def _called(rng, sizes: dict[str, int], sensitivity: dict[str, float]) -> pd.DataFrame:
    """Groups whose positives are called with the given sensitivity (specificity 0.85 everywhere); half positive."""
    rows = []
    for g, n in sizes.items():
        y = np.arange(n) % 2 == 0
        called = np.where(y, rng.random(n) < sensitivity[g], rng.random(n) < 0.15)
        rows.append(pd.DataFrame({"g": g, "y": y, "p": np.where(called, 0.8, 0.2)}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def gap_cohort():
    """a and b: sensitivity 0.85; c: 0.35 (a true gap of 0.5, far beyond 0.1); d: 40 cases, hidden at k=100."""
    rng = np.random.default_rng(4)
    frame = _called(rng, {"a": 600, "b": 600, "c": 600, "d": 40}, {"a": 0.85, "b": 0.85, "c": 0.35, "d": 0.85})
    return frame, subgroup_report(frame, "g", threshold=0.5, n_boot=300, seed=0)


def test_the_gap_gate_fails_a_shown_gap_passes_a_wide_limit_and_cannot_judge_without_two_groups(gap_cohort):
    frame, report = gap_cohort
    gaps = shown_gaps(report, frame, ["g"])
    fail = gaps.gate({"sensitivity": 0.1})
    assert fail.outcome == "fail" and "shown to exceed it" in fail.reasons[0]
    assert "passes only a gap shown within its limit" in fail.error_control
    assert gaps.gate({"sensitivity": 0.95}).outcome == "pass"
    small = subgroup_report(frame, "g", threshold=0.5, n_boot=50, min_n=5000)
    assert shown_gaps(small, frame, ["g"]).gate({"sensitivity": 0.9}).outcome == "could not judge"
    screen = gaps.screen()
    assert screen.outcome == "fail" and any("sensitivity" in r for r in screen.reasons)
    assert shown_gaps(small, frame, ["g"]).screen().outcome == "could not judge"


def test_a_board_view_judges_gaps_among_the_groups_it_shows_and_names_no_hidden_one(gap_cohort):
    frame, report = gap_cohort
    hide = suppression(frame["g"].value_counts().to_dict(), 100)
    assert set(hide.hidden) == {"d", "a"} or set(hide.hidden) == {"d", "b"}, hide.hidden  # d, and one to cover it
    rebuilt = []
    view = shown_gaps(report, frame, ["g"], hide,
                      rebuild=lambda seen: rebuilt.append(sorted(seen["g"].unique())) or
                      subgroup_report(seen, "g", threshold=0.5, n_boot=300, seed=0))
    assert rebuilt == [sorted(set("abcd") - set(hide.hidden))], "re-made on the shown groups' cases only"
    assert view.among_shown and view.judgement().endswith("not judged in the board view)")
    verdict = view.gate({"sensitivity": 0.1})
    assert verdict.outcome == "fail"
    assert not any(hide.names_hidden(r) for p in verdict.parts for r in p.reasons)
    assert not any(hide.names_hidden(f) for f in view.flags())
    # one group shown: nothing is judged, and no gap computed from hidden groups is told
    alone = suppression({"a": 600, "b": 600, "c": 600, "d": 40}, 700)
    one = shown_gaps(report, frame, ["g"], alone, rebuild=lambda seen: pytest.fail("nothing to re-make"))
    assert one.unjudged and one.gate({"sensitivity": 0.1}).outcome == "could not judge"
    assert one.screen().outcome == "could not judge" and one.judgement().startswith("could not judge")


def test_the_non_inferiority_gate_passes_a_version_against_itself_and_fails_a_worse_one():
    rng = np.random.default_rng(1)
    rows = []
    for g in "ABC":
        y = rng.random(300) < 0.4
        rows.append(pd.DataFrame({"label": y.astype(int), "site": g,
                                  "b": np.clip(np.where(y, rng.normal(0.7, 0.15, 300), rng.normal(0.3, 0.15, 300)),
                                               0, 1)}))
    frame = pd.concat(rows, ignore_index=True)
    two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
    base = two(frame["b"].to_numpy())
    same = paired_comparison(frame, base, base, "site", class_index=1, n_boot=300)
    assert noninferiority_gate(same, ["sensitivity"]).outcome == "pass"
    worse = frame["b"].where(frame["label"] == 0, frame["b"] - 0.4).clip(0, 1).to_numpy()
    report = paired_comparison(frame, base, two(worse), "site", class_index=1, n_boot=300)
    verdict = noninferiority_gate(report, ["sensitivity"])
    assert verdict.outcome == "fail" and "shown worse by more than margin" in verdict.reasons[0]
    tiny = paired_comparison(frame, base, base, "site", class_index=1, n_boot=100, min_n=5000)
    assert noninferiority_gate(tiny, ["sensitivity"]).outcome == "could not judge"


def test_limits_are_parsed_with_the_metric_named():
    assert gap_limits(["sensitivity=0.1"], ["auroc", "sensitivity"]) == {"sensitivity": 0.1}
    with pytest.raises(InvalidInputError, match=r"--max-gap 'accuracy=0.1': metric must be one of auroc, sensitivity"):
        gap_limits(["accuracy=0.1"], ["auroc", "sensitivity"])
    with pytest.raises(InvalidInputError, match=r"expected METRIC=NUMBER"):
        gap_limits(["auroc=x"], ["auroc"])
    assert margins("auroc=0.02, sensitivity=0.03", ["auroc", "sensitivity"]) == {"auroc": 0.02, "sensitivity": 0.03}
    with pytest.raises(InvalidInputError, match=r"--max-regression 'ppv=0.1': metric must be one of auroc"):
        margins("ppv=0.1", ["auroc"])


def test_the_drift_gate_fires_on_a_window_under_its_level_and_names_it():
    report = SimpleNamespace(windows=pd.DataFrame({"window": ["2026-04", "2026-05"], "mmd_p_adj": [0.4, 0.001]}),
                             sites=pd.DataFrame({"window": ["2026-05"], "mmd_p_adj": [0.03]}),
                             attributes=pd.DataFrame({"window": ["2026-05"], "p_adj": [0.2]}))
    fired = drift_gate(report, alert_levels([]))
    assert fired.outcome == "fail" and fired.reasons == ("mmd_p < 0.01 (the model's feature space, per window) in "
                                                         "2026-05",)
    assert drift_gate(report, {"mmd_p": 0.0001}).outcome == "pass"
    assert drift_gate(report, alert_levels(["mmd_p=0.0001", "site_mmd_p=0.05"])).reasons[0].startswith(
        "site_mmd_p < 0.05")
    with pytest.raises(InvalidInputError, match=r"--alert 'mmd=0.1': name must be one of mmd_p, site_mmd_p"):
        alert_levels(["mmd=0.1"])


def test_checks_as_verdicts():
    assert integrity_verdict(True, "intact").outcome == "pass"
    assert integrity_verdict(False, "entry 3 edited").reasons == ("entry 3 edited",)
    assert loaded_verdict(0, "0 of 2 rows loaded").outcome == "fail" and loaded_verdict(5, "").passed
    assert same_report(None, "abc").passed and same_report("abc", "abc").passed
    assert same_report("abd", "abc", "changed").reasons == ("changed",)


def test_the_command_maps_each_outcome_to_one_exit_code():
    from workspace.cli import exit_code

    assert {o: exit_code(Verdict(o)) for o in OUTCOMES} == {"pass": 0, "fail": 1, "could not judge": 3,
                                                             "not shown": 4}


def test_the_cav_gate_passes_at_its_accuracy_and_cannot_judge_below():
    from evaluation.concept_significance import MIN_CAV_ACCURACY

    from evaluation.gates import cav_gate

    assert cav_gate(MIN_CAV_ACCURACY).passed and cav_gate(0.95).passed
    below = cav_gate(MIN_CAV_ACCURACY - 0.01)
    assert below.outcome == "could not judge" and "cannot tell the concept" in below.reasons[0]
