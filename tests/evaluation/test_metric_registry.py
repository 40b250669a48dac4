"""The metric registry's contract, generated from the registry (after timm's ``tests/data_adapters/test_models.py`` and
scikit-learn's ``parametrize_with_checks``): every registered entry states each of its facts, equals its declared
reference implementation (scikit-learn, fairlearn) on generated data, point estimate and bootstrap replicates alike,
and is undefined exactly where it says why. A new entry is tested the day it is registered."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame

from data_adapters.errors import UnknownNameError
from evaluation.inference import case_weights
from evaluation.metrics import (
    DIRECTIONS,
    METRICS,
    ONE_VS_REST,
    TASKS,
    TOP_CLASS,
    Metric,
    Reference,
    Replicates,
    counts,
    entries,
    gap_metric_names,
    higher_is_better,
    metric,
    metric_names,
)
from evaluation.multiclass import multiclass_report
from evaluation.subgroups import subgroup_report

ALL = [m for _, m in METRICS.items()]
PER_GROUP = [m for m in ALL if m.per_group]
BETWEEN = [m for m in ALL if not m.per_group]
THRESHOLD = 0.45
K = 4


def _key(m: Metric) -> str:
    return m.key


def one_vs_rest_sample(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y, p, called)``: prevalence about 0.35, continuous scores that separate the classes imperfectly."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    p = np.clip(rng.beta(2, 5, n) + 0.35 * y, 0.001, 0.999)
    return y, p, p >= THRESHOLD


def top_class_sample(seed: int, n: int = 500, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """``(y, P)``: every class present, softmax probabilities with some signal."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, P


def _data(entry: Metric, w: np.ndarray, sample):
    """What ``entry`` reads for the weights ``w`` ``(B, n)``: :class:`Counts` or :class:`Replicates`."""
    if entry.task == ONE_VS_REST:
        y, p, called = sample
        return counts(w, y, p, called)
    y, P = sample
    return Replicates(w, y, P)


def _sample(entry: Metric, seed: int):
    return one_vs_rest_sample(seed) if entry.task == ONE_VS_REST else top_class_sample(seed)


def _rows(sample, rows: np.ndarray):
    return tuple(a[rows] for a in sample)


@pytest.mark.parametrize("entry", ALL, ids=_key)
def test_every_entry_states_each_of_its_facts(entry):
    assert METRICS.get(entry.key) is entry and entry.key == f"{entry.task}.{entry.name}"
    assert entry.task in TASKS and entry.direction in DIRECTIONS and isinstance(entry.gaps, bool)
    for fact in ("definition", "undefined", "design"):
        assert isinstance(getattr(entry, fact), str) and len(getattr(entry, fact)) >= 5, fact
    assert "class mix varying" in entry.design  # every interval here resamples cases with the class mix varying
    assert isinstance(entry.reference, Reference)
    module, _, name = entry.reference.path.rpartition(".")
    assert module.split(".")[0] in ("sklearn", "fairlearn", "scipy", "statsmodels"), "an independent library"
    assert callable(getattr(__import__(module, fromlist=[name]), name))
    if entry.per_group:
        assert callable(entry.compute) and callable(entry.why_undefined)
    else:
        assert entry.compute is None and entry.gaps  # a between-group difference exists only as a gap


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("entry", PER_GROUP, ids=_key)
def test_each_metric_equals_its_reference_implementation(entry, seed):
    sample = _sample(entry, seed)
    value = float(entry(_data(entry, np.ones((1, len(sample[0]))), sample))[0])
    assert np.isfinite(value)
    assert value == pytest.approx(entry.reference(*sample), abs=1e-10), entry.reference.path


@pytest.mark.parametrize("entry", PER_GROUP, ids=_key)
def test_every_bootstrap_replicate_equals_the_reference_on_its_resampled_rows(entry):
    """One code path for the estimate and every replicate: replicate ``b`` of resample counts ``w[b]`` is the metric
    of the rows drawn, as the reference computes it on those rows repeated."""
    sample = _sample(entry, 2)
    w = case_weights(len(sample[0]), 4, np.random.default_rng(3)).astype(np.float64)
    values = entry(_data(entry, w, sample))
    assert values.shape == (4,)
    for b in range(4):
        rows = np.repeat(np.arange(len(sample[0])), w[b].astype(int))
        assert values[b] == pytest.approx(entry.reference(*_rows(sample, rows)), abs=1e-9), b
    assert len(np.unique(np.round(values, 12))) > 1, "replicates vary"


def _degenerate(entry: Metric):
    """Samples at the edges where metrics lose their denominators, plus a healthy one."""
    if entry.task == ONE_VS_REST:
        y, p, called = one_vs_rest_sample(4, 60)
        return {"healthy": (y, p, called), "no positives": (np.zeros_like(y), p, called),
                "no negatives": (np.ones_like(y), p, called), "nothing called": (y, p, np.zeros_like(called)),
                "everything called": (y, p, np.ones_like(called))}
    y, P = top_class_sample(4, 60)
    return {"healthy": (y, P), "one class": (np.zeros_like(y), P), "two classes": (y % 2, P)}


@pytest.mark.parametrize("entry", PER_GROUP, ids=_key)
def test_undefined_exactly_where_the_entry_gives_its_reason(entry):
    reasons = {}
    for what, sample in _degenerate(entry).items():
        data = _data(entry, np.ones((1, len(sample[0]))), sample)
        why, value = entry.why_undefined(data), float(entry(data)[0])
        assert (why is None) == np.isfinite(value), (what, why, value)
        if why:
            assert why in entry.undefined, (what, why, entry.undefined)
            reasons[what] = why
    assert "healthy" not in reasons
    if entry.undefined.startswith("never"):
        assert not reasons
    else:  # what the entry says can make it undefined does, on one of these samples
        assert reasons, entry.undefined


def _groups_frame(seed: int = 5) -> pd.DataFrame:
    y, p, _ = one_vs_rest_sample(seed, 900)
    g = np.random.default_rng(seed).choice(["a", "b", "c"], len(y))
    return pd.DataFrame({"y": y, "p": p, "g": g})


@pytest.fixture(scope="module")
def one_vs_rest_report():
    frame = _groups_frame()
    return frame, subgroup_report(frame, "g", threshold=THRESHOLD, n_boot=40)


@pytest.mark.parametrize("entry", BETWEEN, ids=_key)
def test_each_between_group_difference_equals_its_reference(entry, one_vs_rest_report):
    frame, report = one_vs_rest_report
    y, p, g = frame["y"].to_numpy(), frame["p"].to_numpy(), frame["g"].to_numpy()
    gap = report.gaps.set_index("metric").loc[entry.name, "difference"]
    assert gap == pytest.approx(entry.reference(y, p, p >= THRESHOLD, g), abs=1e-12)


@pytest.mark.parametrize("entry", entries(ONE_VS_REST, gaps=True), ids=_key)
def test_each_gap_equals_fairlearn_between_groups_difference_of_the_reference(entry, one_vs_rest_report):
    frame, report = one_vs_rest_report
    def reference(y_true, y_pred, p):
        return entry.reference(np.asarray(y_true), np.asarray(p), np.asarray(y_pred))

    mf = MetricFrame(metrics={entry.name: reference}, y_true=frame["y"], y_pred=frame["p"] >= THRESHOLD,
                     sensitive_features=frame["g"], sample_params={entry.name: {"p": frame["p"].to_numpy()}})
    gap = report.gaps.set_index("metric").loc[entry.name, "difference"]
    assert gap == pytest.approx(float(mf.difference(method="between_groups")[entry.name]), abs=1e-10)


def test_each_top_class_gap_is_the_reference_best_minus_worst_group():
    y, P = top_class_sample(6, 900)
    frame = pd.DataFrame(P, columns=[f"p_{i}" for i in range(K)])
    frame["label"] = y
    frame["site"] = np.random.default_rng(6).choice(["A", "B", "C"], len(y))
    report = multiclass_report(frame, "site", [f"c{i}" for i in range(K)], n_boot=40)
    gaps = report.gaps.set_index("metric")
    judged = entries(TOP_CLASS, gaps=True)
    assert list(gaps.index) == [m.name for m in judged]
    for entry in judged:
        by_group = [entry.reference(y[frame["site"] == s], P[frame["site"] == s]) for s in ("A", "B", "C")]
        assert gaps.loc[entry.name, "difference"] == pytest.approx(max(by_group) - min(by_group), abs=1e-10), entry.key


def test_a_name_in_both_views_is_two_entries_that_say_how_they_differ_and_agree_on_direction():
    shared = sorted(set(metric_names(ONE_VS_REST)) & set(metric_names(TOP_CLASS)))
    assert shared == ["balanced_accuracy", "brier", "ece"]
    for name in shared:
        ovr, top = metric(name, ONE_VS_REST), metric(name, TOP_CLASS)
        assert ovr.definition != top.definition
        assert "top-class" in ovr.definition or "top class" in ovr.definition, ovr.definition
        assert "one-vs-rest" in top.definition, top.definition
        assert ovr.direction == top.direction
    # and the two really differ: on two classes the top-class Brier is twice the one-vs-rest one
    y, p, _ = one_vs_rest_sample(7)
    P = np.column_stack([1 - p, p])
    ones = np.ones((1, len(y)))
    assert metric("brier", TOP_CLASS)(Replicates(ones, y.astype(int), P))[0] == pytest.approx(
        2 * metric("brier")(counts(ones, y, p, p >= 0.5))[0])


def test_directions_as_the_product_has_always_used_them():
    lower = {m.key for m in ALL if not m.higher_is_better}
    assert lower == {"one_vs_rest.brier", "one_vs_rest.ece", "top_class.brier", "top_class.ece",
                     "one_vs_rest.equalized_odds_difference", "one_vs_rest.demographic_parity_difference"}
    assert higher_is_better("auroc") and higher_is_better("accuracy") and not higher_is_better("brier")


def test_the_gate_vocabularies_are_the_registry_in_table_order():
    assert gap_metric_names(ONE_VS_REST) == [*metric_names(ONE_VS_REST), "equalized_odds_difference",
                                             "demographic_parity_difference"]
    assert metric_names(ONE_VS_REST) == ["auroc", "sensitivity", "specificity", "ppv", "npv", "balanced_accuracy",
                                         "brier", "ece"]
    assert gap_metric_names(TOP_CLASS) == metric_names(TOP_CLASS) == [
        "accuracy", "balanced_accuracy", "top2_accuracy", "macro_auroc", "weighted_auroc", "ece", "brier"]


def test_an_unknown_name_gets_close_matches_among_its_view():
    with pytest.raises(UnknownNameError, match=r"unknown one-vs-rest metric 'sensitivty' \(did you mean "
                                               r"'sensitivity'\?\); known: auroc, sensitivity"):
        metric("sensitivty")
    with pytest.raises(UnknownNameError, match=r"unknown one-vs-rest metric 'accuracy'.*known: auroc"):
        metric("accuracy", ONE_VS_REST)
    with pytest.raises(UnknownNameError, match=r"unknown metric task 'binary'; known: one_vs_rest, top_class"):
        metric("auroc", "binary")


def test_an_entry_missing_a_fact_or_registered_twice_is_refused():
    good = metric("auroc")
    fields = {f: getattr(good, f) for f in ("name", "task", "definition", "direction", "undefined", "gaps", "design",
                                            "reference", "compute", "why_undefined")}
    with pytest.raises(ValueError, match=r"metric entry 'one_vs_rest.auroc': direction must be one of higher, lower"):
        Metric(**{**fields, "direction": "up"})
    with pytest.raises(ValueError, match=r"metric entry 'one_vs_rest.auroc': definition is empty"):
        Metric(**{**fields, "definition": " "})
    with pytest.raises(ValueError, match=r"metric entry 'one_vs_rest.auroc': a per-group metric needs compute"):
        Metric(**{**fields, "why_undefined": None})
    with pytest.raises(ValueError, match=r"metric 'one_vs_rest.auroc' is registered twice"):
        METRICS.register(Metric(**fields), good.key)


def test_comparison_reads_each_metrics_direction_from_its_entry():
    """A candidate that is better on every metric is shown not worse on each, Brier and ECE included (the sign
    comes from the entry: a lower Brier is an improvement)."""
    from evaluation.version_comparison import paired_comparison

    rng = np.random.default_rng(8)
    n = 600
    y = rng.integers(0, 2, n)
    weak = np.clip(0.5 + 0.1 * (2 * y - 1) + rng.normal(0, 0.1, n), 0.01, 0.99)
    strong = np.clip(0.5 + 0.4 * (2 * y - 1) + rng.normal(0, 0.05, n), 0.01, 0.99)
    frame = pd.DataFrame({"label": y, "g": "a"})
    report = paired_comparison(frame, np.column_stack([1 - weak, weak]), np.column_stack([1 - strong, strong]), [],
                               class_index=1, n_boot=300)
    table = report.table.set_index("metric")
    for name in ("auroc", "brier", "ece"):
        assert table.loc[name, "verdict"] == "not worse (shown)", name
    assert table.loc["brier", "delta"] < 0 and table.loc["auroc", "delta"] > 0
    swapped = paired_comparison(frame, np.column_stack([1 - strong, strong]), np.column_stack([1 - weak, weak]), [],
                                class_index=1, n_boot=300).table.set_index("metric")
    assert swapped.loc["brier", "verdict"] == swapped.loc["auroc", "verdict"] == "worse"


def test_the_forest_figure_marks_the_margin_on_the_side_the_entry_calls_worse():
    from evaluation.figures import delta_forest

    table = pd.DataFrame({"metric": ["auroc", "brier"], "group": ["overall"] * 2, "n": [100] * 2,
                          "delta": [0.01, -0.01], "delta_lo": [-0.01, -0.02], "delta_hi": [0.02, 0.0],
                          "verdict": ["not shown"] * 2, "margin": [0.02] * 2})
    marked = {m: [s["x0"] for s in delta_forest(table, m).layout.shapes if s["line"]["dash"] == "dash"]
              for m in ("auroc", "brier")}
    assert marked == {"auroc": [-0.02], "brier": [0.02]}



def test_a_comparison_says_why_a_metric_is_undefined_with_the_entrys_reason():
    from evaluation.version_comparison import noninferiority_gate, paired_comparison

    rng = np.random.default_rng(9)
    n = 200
    frame = pd.DataFrame({"label": np.r_[rng.integers(0, 2, n // 2), np.zeros(n // 2, int)],
                          "g": ["mixed"] * (n // 2) + ["negatives only"] * (n // 2)})
    p = np.clip(0.3 + 0.4 * frame["label"].to_numpy() + rng.normal(0, 0.1, n), 0.01, 0.99)
    probs = np.column_stack([1 - p, p])
    report = paired_comparison(frame, probs, probs, "g", class_index=1, n_boot=100, min_n=10, min_events=0)
    row = report.table.set_index(["group", "metric"]).loc[("negatives only", "sensitivity")]
    assert row["verdict"] == "undefined"
    assert row["why_undefined"] == "baseline: no positive cases; candidate: no positive cases"
    assert report.table.set_index(["group", "metric"]).loc[("mixed", "sensitivity"), "why_undefined"] == ""
    verdict = noninferiority_gate(report, ["sensitivity"])
    assert verdict.outcome == "not shown"
    assert any("negatives only" in r and "undefined: baseline: no positive cases" in r for r in verdict.reasons)


def test_the_contract_fails_a_wrong_entry():
    """The checks above can fail: an entry computing the wrong thing, or keeping quiet about why it is undefined, is
    caught by the same comparisons."""
    import dataclasses

    sample = one_vs_rest_sample(0)
    ones = np.ones((1, len(sample[0])))
    wrong = dataclasses.replace(metric("ppv"), compute=metric("sensitivity").compute)  # recall under PPV's name
    assert abs(float(wrong(_data(wrong, ones, sample))[0]) - wrong.reference(*sample)) > 0.01
    quiet = dataclasses.replace(metric("ppv"), why_undefined=lambda c: None)
    y, p, _ = sample
    nothing_called = _data(quiet, ones, (y, p, np.zeros_like(y)))
    assert quiet.why_undefined(nothing_called) is None and not np.isfinite(quiet(nothing_called)[0])
    top = top_class_sample(0)
    off = dataclasses.replace(metric("brier", TOP_CLASS), compute=lambda r: metric("brier", TOP_CLASS).compute(r) / 2)
    assert abs(float(off(_data(off, np.ones((1, len(top[0]))), top))[0]) - off.reference(*top)) > 0.01
