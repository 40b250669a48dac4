"""The embedded demo: the cohort's built-in truths, and explanations checked against them.

Every bound on a trained model here holds across training seeds and thread counts: they are the bounds of
``workspace.demo_checks`` (set from 5 seeds × 1 and 2 torch threads, ``benchmarks/demo_spread.py``; each check's
measured spread is in its ``spread`` field), so the tests pass with the shipped weights and with
``glassbox demo --retrain``.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from data_adapters.cohort import load_image_batch
from data_adapters.demo.synthesis import MARKER_BOX, erase_marker, occult_cases
from data_adapters.preprocessing import prepare_batch
from data_adapters.readers import read_image
from explainers.inference import ClassScores
from workspace.demo import SHIPPED, DemoCheckError, build_demo, demo_facts, shipped_weights
from workspace.demo_checks import CHECKS, MEASURES


def test_cohort_has_the_promised_truths(demo_cohort):
    frame = demo_cohort.frame()
    assert len(demo_cohort) >= 600 and demo_cohort.report.n_rejected == 0
    assert {"sex", "age", "site", "scanner", "marker"} <= set(frame.columns)
    assert all((c.mask is not None) == (c.label == 1) for c in demo_cohort.cases)
    prevalence = frame.groupby("site")["label"].mean()
    assert prevalence.max() - prevalence.min() > 0.1, "group prevalences must differ"
    marker = frame.groupby(["site", "label"])["marker"].mean()
    assert marker["A"].max() == 0 and marker["C"].max() == 0
    assert marker["B", 1] > 0.6 and marker["B", 0] < 0.2, "the marker must go with the label at site B"
    occult = occult_cases(demo_cohort.cases[0].image.parent.parent)
    hidden = [c for c in demo_cohort.cases if c.case_id in occult]
    assert len(hidden) > 30 and {c.attributes["site"] for c in hidden} == {"B"}
    assert all(c.label == 1 and c.attributes["marker"] == 1 and c.mask is not None for c in hidden), \
        "occult positives are site-B positives that all carry the marker: the marker is their only evidence"
    sample = {s: load_image_batch([c for c in demo_cohort.cases if c.attributes["site"] == s][:20]) for s in "ABC"}
    means = [float(sample[s].mean()) for s in "ABC"]
    # air: noise only, measured within each image (C's is clipped at 0, so B is compared with A)
    noise = {s: float(np.median(sample[s][:, 0, 60:68, 2:10].std(axis=(1, 2)))) for s in "ABC"}
    assert max(means) - min(means) > 0.03 and noise["B"] / noise["A"] > 1.5, "sites must differ (scanner shift)"


def test_second_build_reuses_everything(demo_root):
    lines = []
    start = time.perf_counter()
    build_demo(demo_root, log=lines.append)
    assert time.perf_counter() - start < 1.0
    assert lines == [f"demo workspace at {demo_root} is up to date; reusing it"]


def _test_cases(cohort, **where):
    return [c for c in cohort.cases if c.attributes["split"] == "test"
            and all(c.attributes.get(k) == v if k != "label" else c.label == v for k, v in where.items())]


def _energy_share(maps, regions, positive_only):
    shares = []
    for a, region in zip(maps, regions):
        m = a.spatial_map()
        m = np.clip(m, 0, None) if positive_only else np.abs(m)
        shares.append(m[region].sum() / max(m.sum(), 1e-12))
    return float(np.mean(shares))


def _visible_positives(cohort):
    return [c for c in _test_cases(cohort, label=1) if c.attributes["site"] != "B"]


def test_v2_explanations_find_the_lesion(demo_ws, demo_cohort, demo_models):
    cases = _visible_positives(demo_cohort)[:40]
    masks = [read_image(c.mask).array[0] > 0.5 for c in cases]
    area = float(np.mean([m.mean() for m in masks]))
    v2 = demo_models["v2"]
    ig = demo_ws.attributions(v2, cases, "integrated_gradients", "lesion")
    cam = demo_ws.attributions(v2, cases, "grad_cam", "lesion")
    assert _energy_share(ig, masks, positive_only=False) > CHECKS["v2_lesion_attribution"][2] * area
    assert _energy_share(cam, masks, positive_only=True) > CHECKS["v2_gradcam_lesion"][2] * area


def test_v1_looks_at_the_marker_and_v2_does_not(demo_ws, demo_cohort, demo_models):
    cases = _test_cases(demo_cohort, marker=1)[:30]
    box = np.zeros(cases[0].shape[1:], bool)
    box[MARKER_BOX] = True
    share = {v: _energy_share(demo_ws.attributions(demo_models[v], cases, "integrated_gradients", "lesion"),
                              [box] * len(cases), positive_only=False) for v in ("v1", "v2")}
    assert share["v1"] > CHECKS["v1_marker_attribution"][2] * box.mean(), share
    assert share["v1"] > 3 * share["v2"], share


def test_erasing_the_marker_moves_v1_not_v2(demo_cohort, demo_models):
    occult = occult_cases(demo_cohort.cases[0].image.parent.parent)
    drop = {}
    for name, cases in (("occult", [c for c in _test_cases(demo_cohort, marker=1, label=1) if c.case_id in occult]),
                        ("marked", _test_cases(demo_cohort, marker=1, label=1))):
        images = load_image_batch(cases)
        clean = images.copy()
        erase_marker(clean)
        for v in ("v1", "v2"):
            handle = demo_models[v]
            with torch.no_grad():
                p = torch.sigmoid(ClassScores(handle)(prepare_batch(handle.preprocessing, images))[:, 1])
                q = torch.sigmoid(ClassScores(handle)(prepare_batch(handle.preprocessing, clean))[:, 1])
            drop[v, name] = float((p - q).mean())
    assert drop["v1", "occult"] > CHECKS["v1_marker_reliance"][2], drop
    assert abs(drop["v2", "marked"]) < CHECKS["v2_marker_reliance"][2] and abs(drop["v2", "occult"]) < 0.15, drop
    assert drop["v1", "occult"] > drop["v1", "marked"], "the marker matters most where it is the only evidence"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_models_are_useful(demo_ws, demo_cohort, demo_models, version):
    from sklearn.metrics import roc_auc_score

    handle = demo_models[version]
    preds = demo_ws.predictions(handle, demo_cohort).frame.set_index("case_id")
    test = [c for c in _test_cases(demo_cohort) if c.attributes["site"] != "B"]  # where lesions are visible
    auc = roc_auc_score([c.label for c in test], preds.loc[[c.case_id for c in test], "p_1"])
    assert auc > CHECKS[f"{version}_lesion_auroc"][2], auc
    np.testing.assert_allclose(preds["p_0"] + preds["p_1"], 1.0, atol=1e-6)


def test_the_build_measured_every_planted_property_and_each_holds(demo_root):
    facts = demo_facts(demo_root)
    assert facts["checks_passed"] and {c["name"] for c in facts["checks"]} == set(CHECKS) | set(MEASURES)
    for c in facts["checks"]:
        if c["name"] in CHECKS:
            assert c["asserted"] and c["holds"], c
            assert c["value"] >= c["bound"] if c["op"] == ">=" else c["value"] <= c["bound"], c
        else:
            assert not c["asserted"] and np.isfinite(c["value"]), c
    assert all(w["source"] == "shipped" for w in facts["weights"].values()), "make test reviews the shipped weights"


def test_the_shipped_weights_are_the_ones_reviewed_and_tampering_is_refused(demo_root, tmp_path, monkeypatch):
    import hashlib
    import shutil

    import workspace.demo as demo

    index = shipped_weights()
    assert set(index) == {"v1", "v2", "ct3d-v1"}
    for version, entry in index.items():
        data = (SHIPPED / entry["file"]).read_bytes()
        assert len(data) < 300_000 and hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert hashlib.sha256((demo_root / "models" / version / "weights.pt").read_bytes()).hexdigest() == \
            entry["sha256"]
    fake = tmp_path / "weights"
    shutil.copytree(SHIPPED, fake)
    (fake / "v1.pt").write_bytes((fake / "v1.pt").read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(demo, "SHIPPED", fake)
    with pytest.raises(Exception, match=r"v1\.pt do not match their SHA-256 in weights\.json"):
        build_demo(tmp_path / "ws", log=lambda _m: None)


def test_a_planted_property_that_fails_stops_the_build_with_the_reason(demo_root, tmp_path, monkeypatch):
    import shutil

    import workspace.demo as demo
    from workspace.demo_checks import DemoCheck

    copy = tmp_path / "ws"
    shutil.copytree(demo_root, copy, ignore=shutil.ignore_patterns("demo.json"))
    broken = DemoCheck("v1_marker_reliance", CHECKS["v1_marker_reliance"][0], 0.05, 0.5, ">=", "")
    monkeypatch.setattr(demo, "run_checks", lambda *a, **k: [broken])
    with pytest.raises(DemoCheckError, match=r"1 of the demo's 1 planted properties do not hold .* v1 relies on the "
                                             r"marker: erasing it drops p\(lesion\) by 0\.05 .* \(needs >= 0\.5\)"):
        build_demo(copy, log=lambda _m: None)
    facts = demo_facts(copy)
    assert not facts["checks_passed"] and not demo.demo_is_built(copy), "a failed build is not reused"
