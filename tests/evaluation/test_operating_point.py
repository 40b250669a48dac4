"""Operating points belong to the model version: fitted once on a named validation split (``valid`` included, ``test``
never), stored with provenance keyed by the model hash, reused on every cohort; a visible warning when no validation
split exists; the operator's and the model's own threshold first; ``glassbox monitor`` prints the one it used, the
same as the subgroup and report paths."""
from __future__ import annotations

import json
import re
import types

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from data_adapters.errors import InvalidInputError
from data_adapters.records import ModelCard
from data_adapters.tables import PredictionTable
from evaluation.operating_point import VALIDATION_SPLITS, fit_operating_point, validation_split
from tests.helpers import TinyCNN, handle_for
from workspace.store import Workspace


def _cohort(n: int, splits: dict[str, int], seed: int, shift: float = 1.0):
    """A frame with ``split`` and binary labels, and predictions whose positive probability rises with the label."""
    rng = np.random.default_rng(seed)
    names = [s for s, m in splits.items() for _ in range(m)]
    y = rng.random(len(names)) < 0.4
    p = 1 / (1 + np.exp(-(rng.normal(size=len(names)) + shift * (2 * y - 1))))
    ids = [f"c{seed}_{i}" for i in range(len(names))]
    frame = pd.DataFrame({"case_id": ids, "label": pd.array(y.astype(int), dtype="Int64"), "split": names})
    preds = PredictionTable(pd.DataFrame({"case_id": ids, "p_0": 1 - p, "p_1": p}), task="binary", n_classes=2)
    return frame, preds


def _youden(frame, preds, split):
    rows = frame.merge(preds.frame, on="case_id")
    rows = rows[rows["split"] == split]
    fpr, tpr, thr = roc_curve(rows["label"].astype(int), rows["p_1"])
    return float(np.clip(thr[np.argmax(tpr - fpr)], 0, 1))


def test_a_split_named_valid_is_the_validation_split_and_test_never_is():
    assert validation_split(["train", "valid", "test"]) == "valid"
    assert validation_split(["train", "Validation", "test"]) == "Validation"
    assert validation_split(["train", "test"]) is None and "test" not in VALIDATION_SPLITS
    frame, preds = _cohort(0, {"train": 200, "valid": 150, "test": 150}, seed=1)
    point = fit_operating_point(frame, preds, 1, cohort="public")
    # known answer from scikit-learn's ROC curve on the valid rows alone, not on test
    assert point.split == "valid" and point.source == "validation" and not point.warning
    assert point.threshold == pytest.approx(_youden(frame, preds, "valid"))
    assert point.threshold != pytest.approx(_youden(frame, preds, "test"))
    assert point.n == 150 and "split 'valid' of cohort 'public', 150 cases" in point.describe()


def test_without_a_validation_split_the_fallback_is_fitted_on_test_and_says_so():
    frame, preds = _cohort(0, {"train": 200, "test": 150}, seed=2)
    point = fit_operating_point(frame, preds, 1, cohort="nih")
    assert point.source == "fallback" and point.split == "test"
    assert point.threshold == pytest.approx(_youden(frame, preds, "test"))
    assert "no validation split" in point.warning and "read optimistic" in point.warning and "'nih'" in point.warning
    assert point.describe().endswith("not a validation split")


def test_the_operator_and_the_model_come_first_and_a_bad_model_threshold_is_named():
    frame, preds = _cohort(0, {"valid": 100}, seed=3)
    assert fit_operating_point(frame, preds, 1, settings={"threshold": 0.3}).source == "fixed"
    own = fit_operating_point(frame, preds, 1, model_threshold=0.463)
    assert own.threshold == 0.463 and own.source == "model"
    handle = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    assert handle.stated_threshold is None
    stated = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    object.__setattr__(stated, "card", ModelCard(extra={"operating_threshold": "0.463"}))
    assert stated.stated_threshold == pytest.approx(0.463)
    object.__setattr__(stated, "card", ModelCard(extra={"operating_threshold": "high"}))
    with pytest.raises(InvalidInputError, match=r"card\.operating_threshold must be a number in \[0, 1\], got 'high'"):
        _ = stated.stated_threshold
    with pytest.raises(InvalidInputError, match=r"operating_point\.split 'tune': no labelled case has that split"):
        fit_operating_point(frame, preds, 1, settings={"split": "tune"})


class _Fixed(Workspace):
    """A workspace whose predictions are given (no model run)."""

    preds: dict

    def predictions(self, handle, cohort, *, progress=None):
        return self.preds[cohort.name]


def _as_cohort(name, frame):
    return types.SimpleNamespace(name=name, frame=lambda: frame.copy(), content_hash=f"hash-{name}")


def test_the_point_is_fitted_once_per_model_version_stored_with_provenance_and_reused(tmp_path):
    ws = _Fixed(tmp_path)
    handle = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    val, val_preds = _cohort(0, {"train": 100, "valid": 62, "test": 100}, seed=4)
    other, other_preds = _cohort(0, {"valid": 300}, seed=5, shift=2.0)  # another cohort would fit another value
    deploy, deploy_preds = _cohort(0, {"": 200}, seed=6)
    deploy = deploy.drop(columns="split")
    ws.preds = {"reference": val_preds, "other": other_preds, "deployment": deploy_preds}
    # opened first on a cohort without a validation split: a fallback, with its warning
    first = ws.operating_point(handle, _as_cohort("deployment", deploy), 1)
    assert first.source == "fallback" and first.warning
    assert ws.operating_point(handle, _as_cohort("deployment", deploy), 1) == first
    # a validation split replaces the fallback, and from then on every cohort reads the same point
    fitted = ws.operating_point(handle, _as_cohort("reference", val), 1)
    assert fitted.source == "validation" and fitted.split == "valid" and fitted.n == 62
    assert fitted.threshold == pytest.approx(_youden(val, val_preds, "valid"))
    assert fitted.threshold != pytest.approx(_youden(other, other_preds, "valid"))
    for name, frame in (("other", other), ("deployment", deploy), ("reference", val)):
        assert ws.operating_point(handle, _as_cohort(name, frame), 1) == fitted
    (stored,) = json.loads((tmp_path / "operating_points" / f"{handle.weights_hash[:40]}.json").read_text()).values()
    assert stored["model_hash"] == handle.weights_hash and stored["cohort_hash"] == "hash-reference"
    assert stored["split"] == "valid" and stored["rule"] == "youden" and stored["n"] == 62
    assert re.match(r"\d{4}-\d\d-\d\dT", stored["fitted_at"])
    # another model version has its own
    v2 = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    assert ws.operating_point(v2, _as_cohort("other", other), 1).cohort == "other"
    # the operator's rule is part of the key: a new rule is fitted anew (and stored beside the first)
    (tmp_path / "settings.json").write_text(json.dumps({"operating_point": {"rule": "sensitivity=0.9"}}))
    tuned = ws.operating_point(handle, _as_cohort("reference", val), 1)
    assert tuned.rule == "sensitivity=0.9" and tuned.threshold != fitted.threshold
    (tmp_path / "settings.json").write_text(json.dumps({"operating_point": {"threshold": 0.42}}))
    assert ws.operating_point(handle, _as_cohort("other", other), 1).threshold == 0.42


def test_a_damaged_store_is_refitted_not_trusted(tmp_path):
    ws = _Fixed(tmp_path)
    handle = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    val, preds = _cohort(0, {"valid": 80}, seed=7)
    ws.preds = {"reference": preds}
    point = ws.operating_point(handle, _as_cohort("reference", val), 1)
    path = tmp_path / "operating_points" / f"{handle.weights_hash[:40]}.json"
    path.write_text("{not json")
    assert ws.operating_point(handle, _as_cohort("reference", val), 1).threshold == point.threshold
    assert json.loads(path.read_text())  # rewritten


def test_monitor_prints_the_threshold_it_used_the_same_as_subgroups_and_the_report(demo_root, demo_ws, capsys):
    from workspace.access import Identity
    from workspace.cli import main
    from workspace.report import gather

    handle = demo_ws.load_model(demo_ws.resolve_model("v2"))
    cohort = demo_ws.cohort_for(handle, demo_ws.resolve_cohort("demo2d"))
    point = demo_ws.operating_point(handle, cohort, 1)
    main(["monitor", "--workspace", str(demo_root), "--model", "v2", "--reference", "demo2d", "--current",
          "deployment"])
    out = capsys.readouterr()
    assert f"at threshold {point.describe()}" in out.out
    assert f"{point.threshold:.3f}" in out.out.splitlines()[0]
    if point.warning:  # the demo has train/test only: the fallback is said out loud
        assert "WARNING: no validation split" in out.err
    main(["subgroups", "--workspace", str(demo_root), "--model", "v2", "--cohort", "deployment", "--by", "site"])
    assert f"threshold {point.describe()}" in capsys.readouterr().out, "the same point on another cohort"
    data = gather(demo_ws, handle, cohort, by=["site"], k=10, author=Identity("ops", "admin"), trust_methods=(),
                  figures=False)
    assert data.evidence["performance"]["clinical"]["threshold"] == round(point.threshold, 3)


def test_a_fallback_on_a_test_split_replaces_one_on_every_labelled_case(tmp_path):
    ws = _Fixed(tmp_path)
    handle = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    plain, plain_preds = _cohort(0, {"": 120}, seed=8)
    plain = plain.drop(columns="split")
    split, split_preds = _cohort(0, {"train": 100, "test": 120}, seed=9)
    ws.preds = {"plain": plain_preds, "split": split_preds}
    first = ws.operating_point(handle, _as_cohort("plain", plain), 1)
    assert first.split is None and first.source == "fallback"
    second = ws.operating_point(handle, _as_cohort("split", split), 1)
    assert second.split == "test" and second.threshold == pytest.approx(_youden(split, split_preds, "test"))
    assert ws.operating_point(handle, _as_cohort("plain", plain), 1) == second
