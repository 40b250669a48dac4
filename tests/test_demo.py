"""The embedded demo: the cohort's built-in truths, and explanations checked against them.

Figures at the time of writing (40 positive test cases; 30 marker cases): v2 integrated-gradients energy inside
the lesion mask is 6.3x the mask's area share (Grad-CAM 2.9x, peak within 12 px of the lesion in 72% of cases);
v1 puts 19% of its IG energy on the marker box, which covers 0.9% of the image (v2: 2.4%).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from data_adapters.cohort import load_image_batch
from data_adapters.demo.synthesis import MARKER_BOX, erase_marker
from data_adapters.preprocessing import prepare_batch
from data_adapters.readers import read_image
from explainers.inference import ClassScores
from workspace.demo import build_demo


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
    sample = {s: load_image_batch([c for c in demo_cohort.cases if c.attributes["site"] == s][:20]) for s in "ABC"}
    means = [float(sample[s].mean()) for s in "ABC"]
    noise = [float(np.std(sample[s][:, 0, 60:68, 2:10])) for s in "ABC"]  # air: noise only
    assert max(means) - min(means) > 0.03 and max(noise) / min(noise) > 1.5, "sites must differ (scanner shift)"


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


def test_v2_explanations_find_the_lesion(demo_ws, demo_cohort, demo_models):
    cases = _test_cases(demo_cohort, label=1)[:40]
    masks = [read_image(c.mask).array[0] > 0.5 for c in cases]
    area = float(np.mean([m.mean() for m in masks]))
    v2 = demo_models["v2"]
    ig = demo_ws.attributions(v2, cases, "integrated_gradients", "lesion")
    cam = demo_ws.attributions(v2, cases, "grad_cam", "lesion")
    assert _energy_share(ig, masks, positive_only=False) > 4.0 * area
    assert _energy_share(cam, masks, positive_only=True) > 2.0 * area
    hits = []
    for a, m in zip(cam, masks):
        peak = np.unravel_index(np.argmax(a.spatial_map()), m.shape)
        ys, xs = np.nonzero(m)
        hits.append(np.hypot(ys.mean() - peak[0], xs.mean() - peak[1]) < 12)
    assert np.mean(hits) > 0.6, "Grad-CAM's peak should sit on the lesion in most cases"


def test_v1_looks_at_the_marker_and_v2_does_not(demo_ws, demo_cohort, demo_models):
    cases = _test_cases(demo_cohort, marker=1)[:30]
    box = np.zeros(cases[0].shape[1:], bool)
    box[MARKER_BOX] = True
    share = {v: _energy_share(demo_ws.attributions(demo_models[v], cases, "integrated_gradients", "lesion"),
                              [box] * len(cases), positive_only=False) for v in ("v1", "v2")}
    assert share["v1"] > 10 * box.mean(), share
    assert share["v1"] > 3 * share["v2"], share


def test_erasing_the_marker_moves_v1_not_v2(demo_cohort, demo_models):
    cases = _test_cases(demo_cohort, marker=1, label=1)
    images = load_image_batch(cases)
    clean = images.copy()
    erase_marker(clean)
    drop = {}
    for v in ("v1", "v2"):
        handle = demo_models[v]
        with torch.no_grad():
            p = torch.sigmoid(ClassScores(handle)(prepare_batch(handle.preprocessing, images))[:, 1])
            q = torch.sigmoid(ClassScores(handle)(prepare_batch(handle.preprocessing, clean))[:, 1])
        drop[v] = float((p - q).mean())
    assert drop["v1"] > 0.3 and abs(drop["v2"]) < 0.1, drop


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_models_are_useful(demo_ws, demo_cohort, demo_models, version):
    from sklearn.metrics import roc_auc_score

    handle = demo_models[version]
    preds = demo_ws.predictions(handle, demo_cohort).set_index("case_id")
    test = _test_cases(demo_cohort)
    auc = roc_auc_score([c.label for c in test], preds.loc[[c.case_id for c in test], "p_1"])
    assert auc > 0.85, auc
    np.testing.assert_allclose(preds["p_0"] + preds["p_1"], 1.0, atol=1e-6)
