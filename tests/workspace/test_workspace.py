"""Workspace caches: computed once, keyed by content, faithful on read-back; any number of classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import workspace.cache as cache
import workspace.store as store
from data_adapters.models import load_model, write_spec
from explainers.saliency import explain
from tests.helpers import TinyCNN, handle_for, random_png_cohort
from workspace.store import Workspace


@pytest.fixture
def small_cohort(tmp_path):
    return random_png_cohort(tmp_path / "cohort", 6, seed=1)


def test_predictions_for_a_three_class_model_are_cached(tmp_path, small_cohort, monkeypatch):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    first = ws.predictions(handle, small_cohort).frame
    assert list(first.columns) == ["case_id", "p_0", "p_1", "p_2"] and len(first) == 6
    np.testing.assert_allclose(first[["p_0", "p_1", "p_2"]].sum(axis=1), 1.0, atol=1e-6)
    monkeypatch.setattr(store, "predict_cases", lambda *a, **k: pytest.fail("recomputed a cached prediction"))
    again = Workspace(tmp_path / "ws").predictions(handle, small_cohort).frame  # a restart: a fresh object
    np.testing.assert_allclose(again[["p_0", "p_1", "p_2"]], first[["p_0", "p_1", "p_2"]])


def test_multilabel_probabilities_are_independent(tmp_path, small_cohort):
    handle = handle_for(TinyCNN(2, 1, 3), task="multilabel", n_classes=3, input_shape=(1, 12, 12))
    frame = Workspace(tmp_path).predictions(handle, small_cohort).frame
    assert not np.allclose(frame[["p_0", "p_1", "p_2"]].sum(axis=1), 1.0)


def test_attributions_are_cached_per_case_method_params_and_target(tmp_path, small_cohort, monkeypatch):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path)
    cases = list(small_cohort.cases[:4])
    calls = []
    real = store.explain

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "explain", counting)
    fresh = ws.attributions(handle, cases[:2], "integrated_gradients", 2, {"n_steps": 8})
    mixed = ws.attributions(handle, cases, "integrated_gradients", 2, {"n_steps": 8})
    assert calls == [2, 2], "only the two new cases are computed"
    for a, b in zip(fresh, mixed[:2]):
        assert b.array.dtype == a.array.dtype == np.float32
        np.testing.assert_array_equal(b.array, a.array)  # a hit is exactly the fresh result
        assert b.convergence_delta == pytest.approx(a.convergence_delta)
        assert b.params == {"n_steps": 8} and b.target == 2
    ws.attributions(handle, cases[:1], "integrated_gradients", 1, {"n_steps": 8})
    ws.attributions(handle, cases[:1], "integrated_gradients", 2, {"n_steps": 9})
    ws.attributions(handle, cases[:1], "integrated_gradients", 2, {"n_steps": 8})
    assert calls == [2, 2, 1, 1], "another target or parameter is another key; the same is a hit"


def test_key_changes_with_model_weights(tmp_path, small_cohort):
    torch.manual_seed(0)
    from monai.networks.nets import DenseNet

    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, "init_features": 4, "growth_rate": 4,
            "block_config": [1], "bn_size": 2}
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(DenseNet(**args).state_dict(), folder / "weights.pt")
    spec = {"name": "m", "format": "state_dict", "network": {"name": "DenseNet", "args": args},
            "task": "multiclass", "class_names": ["a", "b", "c"],
            "preprocessing": {"in_channels": 1, "spatial_size": [12, 12]}}
    write_spec(folder, spec)
    ws = Workspace(tmp_path / "ws")
    case = small_cohort.cases[0]
    k1 = ws.attribution_key(load_model(folder), case, "saliency", 0, None)
    torch.save(DenseNet(**args).state_dict(), folder / "weights.pt")  # new random weights
    assert ws.attribution_key(load_model(folder), case, "saliency", 0, None) != k1


def test_explain_matches_the_workspace_path(tmp_path, small_cohort):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    case = small_cohort.cases[0]
    from data_adapters.cohort import load_image_batch

    direct = explain(handle, load_image_batch([case]), [case.case_id], "saliency", 1)[0]
    via = Workspace(tmp_path).attributions(handle, [case], "saliency", 1)[0]
    np.testing.assert_allclose(via.array, direct.array)


def _map_files(ws):
    return sorted((ws.cache / "attributions").rglob("*.npz"))


@pytest.mark.parametrize("damage", ["truncated", "flipped", "other_case", "not_npz"])
def test_a_damaged_attribution_is_recomputed_with_a_warning_never_served(tmp_path, small_cohort, damage, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    cases = list(small_cohort.cases[:2])
    fresh = ws.attributions(handle, cases, "saliency", 1)
    first, second = _map_files(ws)[0], _map_files(ws)[1]
    if damage == "truncated":
        first.write_bytes(first.read_bytes()[:100])
    elif damage == "flipped":  # one float of the array changed, the stored digest kept
        with np.load(first) as z:
            array, meta = z["array"].copy(), z["meta"]
        array.flat[0] += 1.0
        with open(first, "wb") as f:
            np.savez(f, array=array, meta=meta)
    elif damage == "other_case":
        first.write_bytes(second.read_bytes())
    else:
        first.write_text("not a map")
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = ws.attributions(handle, cases, "saliency", 1)
    assert "discarded and recomputed" in caplog.text
    for a, b in zip(fresh, again):  # recomputed alone rather than in a batch of two: float rounding only
        np.testing.assert_allclose(a.array, b.array, rtol=1e-4, atol=1e-9)
        assert a.case_id == b.case_id


def test_a_damaged_prediction_table_is_recomputed(tmp_path, small_cohort, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    first = ws.predictions(handle, small_cohort).frame
    path = ws.prediction_path(handle, small_cohort)
    cache.atomic_write(path, lambda tmp: cache.write_frame(first.iloc[:3], tmp))  # other cases, MAC intact
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = ws.predictions(handle, small_cohort).frame
    assert "its cases are not the cohort's" in caplog.text
    assert again["case_id"].tolist() == first["case_id"].tolist()
    path.write_bytes(b"PAR1 truncated")
    np.testing.assert_allclose(ws.predictions(handle, small_cohort).frame[["p_0", "p_1", "p_2"]],
                               first[["p_0", "p_1", "p_2"]])


def test_orphaned_temp_files_are_removed_and_fresh_ones_kept(tmp_path):
    import os
    import time

    ws = Workspace(tmp_path)
    old = ws.cache / "attributions" / "ab" / "tmpx1y2.tmp.npz"
    young = ws.cache / "predictions" / "tmpq9.tmp.parquet"
    for f in (old, young):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert cache.remove_orphans(ws.cache) == 1
    assert not old.exists() and young.exists(), "a young temp file may be another process's write in progress"


CHILD = """
import sys, time
import workspace.store as store
from data_adapters.cohort import load_manifest
from data_adapters.models import load_model
real = store.predict_cases
def slow(*args, **kwargs):
    with open(sys.argv[4], "a") as f:
        f.write("computed\\n")
    time.sleep(0.5)
    return real(*args, **kwargs)
store.predict_cases = slow
store.Workspace(sys.argv[1]).predictions(load_model(sys.argv[2]), load_manifest(sys.argv[3]))
"""


def test_two_processes_asking_for_the_same_result_compute_it_once(tmp_path, small_cohort):
    import subprocess
    import sys

    from tests.helpers import torchscript_binary_model

    model = torchscript_binary_model(tmp_path / "model", 12)
    log = tmp_path / "computed.log"
    manifest = small_cohort.cases[0].image.parent / "manifest.csv"
    args = [sys.executable, "-c", CHILD, str(tmp_path / "ws"), str(model), str(manifest), str(log)]
    procs = [subprocess.Popen(args, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE)
             for _ in range(2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert log.read_text().count("computed") == 1, "the second process waited for the first and read its result"


# -- the cache store and the decisions the services leave to the library (issue 25) ---------------------------------

def test_cached_arrays_are_computed_once_and_an_edited_or_stale_entry_is_recomputed(tmp_path, caplog):
    path = tmp_path / "cache" / "x.npz"
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(4.0), "case_id": np.array(["c0", "c1", "c2", "c3"])}

    first = cache.cached_arrays(path, ("a", "case_id"), compute)
    again = cache.cached_arrays(path, ("a", "case_id"), compute)
    assert len(calls) == 1 and np.array_equal(first["a"], again["a"])
    with np.load(path) as z:  # an edit that keeps the old MAC
        edited = {"a": -z["a"], "case_id": z["case_id"], "mac": z["mac"]}
    with open(path, "wb") as f:
        np.savez(f, **edited)
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        served = cache.cached_arrays(path, ("a", "case_id"), compute)
    assert len(calls) == 2 and np.array_equal(served["a"], np.arange(4.0)) and "MAC" in caplog.text
    cache.cached_arrays(path, ("a", "case_id"), compute, valid=lambda a: a["case_id"].tolist() == ["other"])
    assert len(calls) == 3, "arrays written for other cases are recomputed"


def test_the_compared_cases_are_the_labelled_ones_matching_the_filter_and_none_is_named():
    import pandas as pd

    from data_adapters.errors import InvalidInputError
    from evaluation.version_comparison import comparison_cases

    frame = pd.DataFrame({"case_id": list("abcd"), "label": [0, 1, None, 1], "split": ["test", "test", "test", "dev"]})
    assert comparison_cases(frame, {"split": "test"})["case_id"].tolist() == ["a", "b"]
    assert comparison_cases(frame, None)["case_id"].tolist() == ["a", "b", "d"]
    with pytest.raises(InvalidInputError, match=r"no labelled case of 'demo' matches \{'split': 'val'\}"):
        comparison_cases(frame, {"split": "val"}, "demo")


def test_the_judged_class_and_the_drift_attributes():
    from evaluation.drift import drift_attributes
    from evaluation.outcomes import judged_class

    binary = handle_for(TinyCNN(2, 1, 1), task="binary", n_classes=2)
    three = handle_for(TinyCNN(2, 1, 3), task="multiclass", n_classes=3)
    assert judged_class(binary) == 1 and judged_class(three) is None
    assert judged_class(three, "class1") == 1 and judged_class(three, 2) == 2
    assert drift_attributes({"age": "n", "site": "c", "sex": "c"}, {"sex": "c", "site": "c", "x": "c"}) == ["site", "sex"]


def test_tcav_takes_enough_references_for_every_concept_and_layer_and_held_out_inputs_first(tmp_path):
    from data_adapters.cohort import load_manifest
    from data_adapters.errors import InvalidInputError
    from explainers.concepts import MIN_EXAMPLES, reference_count, tcav_inputs
    from tests.helpers import write_png

    assert reference_count(250, 3, 1) == 250
    assert reference_count(250, 10, 3) == 1199  # 1 / (1199 + 1) = 0.05 / (2 × 10 × 3): the bound can be met
    rows = ["case_id,image,label,split"]
    for i in range(24):
        write_png(tmp_path / f"{i}.png", np.full((8, 8), i, np.uint8))
        rows.append(f"c{i},{i}.png,{i % 2},{'test' if i % 4 == 3 else 'train'}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    cohort = load_manifest(tmp_path / "manifest.csv", class_names=["no", "yes"])
    chosen = tcav_inputs(cohort, 1, 8)
    assert [c.case_id for c in chosen[:6]] == ["c3", "c7", "c11", "c15", "c19", "c23"] and len(chosen) == 8
    assert all(c.label == 1 for c in chosen)
    few = tmp_path / "few"
    rows = ["case_id,image,label"] + [f"c{i},../{i}.png,{int(i < MIN_EXAMPLES - 1)}" for i in range(MIN_EXAMPLES + 4)]
    few.mkdir()
    (few / "manifest.csv").write_text("\n".join(rows) + "\n")
    small = load_manifest(few / "manifest.csv", class_names=["no", "yes"], roots=[few, tmp_path])
    with pytest.raises(InvalidInputError, match=f"at least {MIN_EXAMPLES} labelled cases of class 'yes' in cohort "
                                                f".*found {MIN_EXAMPLES - 1}"):
        tcav_inputs(small, 1, 8, "yes")


def test_the_quality_sample_explains_the_top_class_or_the_chosen_one():
    import pandas as pd

    from data_adapters.errors import InvalidInputError
    from evaluation.explanation_quality import quality_sample

    frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(6)], "label": [0, 1, 2, 0, 1, None],
                          "p_0": [0.8, 0.1, 0.1, 0.2, 0.1, 0.3], "p_1": [0.1, 0.8, 0.1, 0.7, 0.1, 0.3],
                          "p_2": [0.1, 0.1, 0.8, 0.1, 0.8, 0.4]})
    sample, targets = quality_sample(frame, 5, [], n_classes=3, class_index=None)
    assert sorted(sample["case_id"]) == ["c0", "c1", "c2", "c3", "c4"], "the unlabelled case is never sampled"
    assert targets.to_dict() == {c: p for c, p in zip(sample["case_id"], sample["predicted"])}
    assert targets["c3"] == 1 and targets["c4"] == 2, "each case's own top class, right or wrong"
    sample, targets = quality_sample(frame, 5, [], n_classes=3, class_index=2, threshold=lambda: 0.5)
    assert set(targets) == {2} and set(sample["outcome"]) <= {"correct", "false positive", "false negative"}
    asked = []
    with pytest.raises(InvalidInputError, match="has no labelled cases"):
        quality_sample(frame[frame["label"].isna()], 5, [], n_classes=3, class_index=2,
                       threshold=lambda: asked.append(1) or 0.5)
    assert not asked, "no operating point is fitted for a cohort without labels"


def test_checks_that_need_a_mask_are_dropped_without_masks_and_costly_methods_get_fewer_draws():
    from explainers.trust import STABILITY_DRAWS, TRUST_CHECKS, applicable_checks, stability_draws

    every = TRUST_CHECKS.names()
    masked = [n for n in every if TRUST_CHECKS.get(n).needs_mask]
    assert masked and applicable_checks(None, masks_known=True) == list(every)
    assert applicable_checks(None, masks_known=False) == [n for n in every if n not in masked]
    assert stability_draws(1) == STABILITY_DRAWS and stability_draws(50) == 2


def test_a_perturbation_that_changes_nothing_shifts_nothing_for_every_version():
    from data_adapters.records import Image
    from explainers.perturbation import region_shifts

    read = [Image(array=np.full((1, 8, 8), v, np.float32), spacing=(1.0, 1.0), source=f"c{v}") for v in (0.2, 0.7)]
    torch.manual_seed(0)
    import dataclasses

    versions = [handle_for(TinyCNN(2, 1, 3)), dataclasses.replace(handle_for(TinyCNN(2, 1, 3)), version="u")]
    shifts = region_shifts(versions, read, "2,2,6,6", "mean", None)  # the mean of the rest of a flat image: itself
    assert set(shifts) == {"t", "u"} and all(np.allclose(s, 0.0, atol=1e-6) for s in shifts.values())


def test_judgements_open_on_the_held_out_split_where_a_cohort_has_one():
    import pandas as pd

    from evaluation.cohort_summary import held_out_split

    assert held_out_split(pd.DataFrame({"split": ["train", "test", None]})) == "test"
    assert held_out_split(pd.DataFrame({"split": ["train", "dev"]})) is None
    assert held_out_split(pd.DataFrame({"site": ["A"]})) is None
