"""Multi-class performance against scikit-learn, for 3 and 7 classes, per group, with patients and without."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    roc_auc_score,
    top_k_accuracy_score,
)

from data_adapters.tables import CLUSTER, UncertaintyTable
from evaluation.calibration import calibration_target
from evaluation.multiclass import multiclass_report
from evaluation.outcomes import with_outcomes
from evaluation.referral import with_spread


def _cohort(n: int, k: int, seed: int, signal: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(p, columns=[f"p_{i}" for i in range(k)])
    frame["label"] = y
    frame["site"] = np.where(rng.random(n) < 0.5, "A", "B")
    return frame


@pytest.mark.parametrize("k", [3, 7])
def test_every_group_matches_scikit_learn(k):
    frame = _cohort(600, k, seed=k)
    report = multiclass_report(frame, "site", [f"c{i}" for i in range(k)], n_boot=200)
    table = report.table.set_index("group")
    for group, sub in [("overall", frame), *frame.groupby("site")]:
        y, p = sub["label"].to_numpy(), sub[[f"p_{i}" for i in range(k)]].to_numpy()
        row = table.loc[group]
        assert row["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-12)
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p.argmax(1)), abs=1e-12)
        assert row["top2_accuracy"] == pytest.approx(top_k_accuracy_score(y, p, k=2, labels=range(k)), abs=1e-12)
        assert row["macro_auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)
        assert row["weighted_auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="weighted"),
                                                      abs=1e-12)
        assert row["brier"] == pytest.approx(((p - np.eye(k)[y]) ** 2).sum(1).mean(), abs=1e-12)
        np.testing.assert_array_equal(report.confusion[group], confusion_matrix(y, p.argmax(1), labels=range(k)))
        for m in ("accuracy", "macro_auroc"):
            assert row[f"{m}_lo"] < row[m] < row[f"{m}_hi"], (group, m)
        # ECE: no interval (biased at small n), its chance figure and the consistency test's p instead
        assert "ece_lo" not in row and 0 < row["ece_chance"] and 0 < row["ece_p"] <= 1, (group, row["ece_p"])


def test_a_class_absent_from_a_group_is_averaged_over_and_said():
    frame = _cohort(300, 3, seed=1)
    frame = frame[~((frame["site"] == "B") & (frame["label"] == 2))]
    row = multiclass_report(frame, "site", ["a", "b", "c"], n_boot=100).table.set_index("group").loc["B"]
    sub = frame[frame["site"] == "B"]
    y, p = sub["label"].to_numpy(), sub[["p_0", "p_1", "p_2"]].to_numpy()
    assert row["classes_present"] == 2 and "1 of 3 classes absent" in row["notes"]
    assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p.argmax(1)), abs=1e-12)
    expected = np.mean([roc_auc_score(y == c, p[:, c]) for c in (0, 1)])
    assert row["macro_auroc"] == pytest.approx(expected, abs=1e-12)


def test_a_gap_between_groups_is_flagged_and_an_equal_one_is_not():
    good = _cohort(400, 7, seed=3, signal=3.0).assign(site="A")
    poor = _cohort(400, 7, seed=4, signal=0.2).assign(site="B")
    report = multiclass_report(pd.concat([good, poor], ignore_index=True), "site", list("abcdefg"), n_boot=300)
    gaps = report.gaps.set_index("metric")
    assert gaps.loc["accuracy", "higher_group"] == "A" and gaps.loc["accuracy", "difference_lo"] > 0.3
    assert report.flags()
    same = multiclass_report(_cohort(800, 7, seed=5), "site", list("abcdefg"), n_boot=300)
    assert not same.gaps.set_index("metric").loc["accuracy", "flag"]


def test_patients_widen_the_interval_when_their_images_agree():
    frame = _cohort(400, 3, seed=6)
    patients = np.repeat(np.arange(40), 10)  # 40 patients of 10 images, each patient's images the same case
    first = frame.groupby(patients).head(1).reset_index(drop=True)
    clustered = first.loc[np.repeat(np.arange(40), 10)].reset_index(drop=True).assign(**{CLUSTER: patients})
    as_images = multiclass_report(clustered.drop(columns=[CLUSTER]), "site", list("abc"), n_boot=400)
    as_patients = multiclass_report(clustered, "site", list("abc"), n_boot=400)
    width = {name: r.table.iloc[0]["accuracy_hi"] - r.table.iloc[0]["accuracy_lo"]
             for name, r in (("images", as_images), ("patients", as_patients))}
    assert width["patients"] > 2.5 * width["images"], width
    assert as_patients.table.iloc[0]["patients"] == 40 and "40 patients resampled" in as_patients.resampling


def test_top_class_outcomes_errors_spread_and_calibration_target():
    frame = pd.DataFrame({"p_0": [0.7, 0.2, 0.1, 0.3], "p_1": [0.2, 0.5, 0.1, 0.3], "p_2": [0.1, 0.3, 0.8, 0.4],
                          "label": pd.array([0, 2, 2, None], dtype="Int64")})
    out = with_outcomes(frame, None, n_classes=3)
    assert out["predicted"].tolist() == [0, 1, 2, 2]
    assert out["outcome"].tolist() == ["correct", "misclassified", "correct", "unlabelled"]
    assert out["error"].tolist() == [False, True, False, False]
    # one class versus the rest at a threshold is another question, with other answers
    vs_rest = with_outcomes(frame, 2, 0.35)
    assert vs_rest["outcome"].tolist() == ["correct", "false negative", "correct", "unlabelled"]
    unc = pd.DataFrame({"case_id": list("abcd"), **{f"mean_{i}": frame[f"p_{i}"] for i in range(3)},
                        **{f"std_{i}": [0.01 * (i + 1) + j for j in range(4)] for i in range(3)},
                        "entropy": 0.5, "mutual_information": 0.1})
    spread = with_spread(UncertaintyTable(unc, method="mc_dropout", task="multiclass", n_classes=3), None)
    assert spread["std"].tolist() == pytest.approx([0.01, 1.02, 2.03, 3.03])
    confidence, right = calibration_target(frame[["p_0", "p_1", "p_2"]].to_numpy()[:3], np.array([0, 2, 2]), None)
    assert confidence.tolist() == [0.7, 0.5, 0.8] and right.tolist() == [True, False, True]
