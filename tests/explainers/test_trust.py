"""Explanation trust checks: the registry contract (deterministic, batch-invariant), known answers on a model of
known structure, agreement with Quantus (the field's reference) on the same inputs, and the demo's figures."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from explainers.saliency import explain
from evaluation.explanation_quality import band_pointing, quality_summary
from explainers.trust import (COULD_NOT_JUDGE, POINTING_REFERENCE, TRUST_CHECKS, CheckInputs, band, map_problem, mass,
                              pointing, rank, randomised)
from tests.helpers import LinearModel, TinyCNN, handle_for
from workspace import trust as trust_service


def _linear(seed: int = 0):
    return handle_for(LinearModel((1, 8, 8), 2, seed=seed), task="multiclass", n_classes=2, input_shape=(1, 8, 8))


def _inputs(handle, images, maps, masks=None, recompute=None, seed=0):
    recompute = recompute or (lambda h, x: np.stack([a.array for a in explain(h, x, [str(i) for i in range(len(x))],
                                                                            "saliency", 1)]))
    return CheckInputs(handle, images, maps, 1, masks or [None] * len(images), recompute, seed)


def test_gradients_pass_randomisation_and_a_weight_blind_map_fails():
    handle = _linear()
    images = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    maps = np.stack([a.array for a in explain(handle, images, list("abcdef"), "saliency", 1)])
    check = TRUST_CHECKS.get("randomisation")
    gradient = check.compute(_inputs(handle, images, maps))
    assert np.all(np.abs(gradient) < 0.5) and band(check, float(np.mean(np.abs(gradient)))) != "fails"
    # an "explanation" that is the input itself ignores the weights entirely: it survives randomisation unchanged
    blind = check.compute(_inputs(handle, images, images.copy(), recompute=lambda h, x: x.copy()))
    assert np.allclose(blind, 1.0) and band(check, float(blind.mean())) == "fails"


def test_randomised_model_keeps_nothing_learnt_and_leaves_the_original_alone():
    handle = _linear()
    before = handle.module.linear.weight.clone()
    other = randomised(handle, seed=3)
    assert torch.equal(handle.module.linear.weight, before)
    assert not torch.equal(other.module.linear.weight, before)
    assert torch.equal(randomised(handle, seed=3).module.linear.weight, other.module.linear.weight), "seeded"


def test_deletion_of_a_perfect_map_beats_a_random_map():
    handle = _linear(1)
    rng = np.random.default_rng(2)
    images = rng.random((8, 1, 8, 8)).astype(np.float32)
    w = handle.module.linear.weight.detach().numpy()
    # the exact contribution of each pixel to the class-1 margin (the linear model's own evidence)
    perfect = ((w[1] - w[0]).reshape(1, 8, 8) * (images - images.mean(axis=(2, 3), keepdims=True)))
    perfect = np.clip(perfect, 0, None)
    random_map = rng.random(perfect.shape).astype(np.float32)
    check = TRUST_CHECKS.get("deletion")
    good = check.compute(_inputs(handle, images, perfect))
    noise = check.compute(_inputs(handle, images, random_map))
    assert good.mean() > 0.05 and good.mean() > noise.mean() + 0.05, (good.mean(), noise.mean())


def test_pointing_game_of_a_map_peaked_on_the_mask_is_one():
    a = np.zeros((1, 10, 10), np.float32)
    a[0, 4, 5] = 1.0
    mask = np.zeros((10, 10), bool)
    mask[3:6, 3:7] = True
    inputs = _inputs(None, np.zeros((1, 1, 10, 10), np.float32), a[None], masks=[mask])
    assert TRUST_CHECKS.get("pointing_game").compute(inputs)[0] == 1.0
    assert TRUST_CHECKS.get("relevance_mass").compute(inputs)[0] == 1.0
    assert band(TRUST_CHECKS.get("relevance_mass"), 1.0, chance=mask.mean()) == "passes"


def test_localisation_matches_quantus_on_the_same_inputs():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(7)
    n = 12
    a = rng.random((n, 1, 16, 16)).astype(np.float32)
    s = np.zeros((n, 1, 16, 16), np.float32)
    for i in range(n):
        y0, x0 = rng.integers(0, 10, 2)
        s[i, 0, y0:y0 + 5, x0:x0 + 4] = 1
        if i % 3 == 0:
            a[i, 0, y0 + 2, x0 + 1] = 5.0  # some maps peak inside the mask, others do not
    x = rng.random((n, 1, 16, 16)).astype(np.float32)
    y = np.zeros(n, int)
    kwargs = dict(abs=True, normalise=False, disable_warnings=True, display_progressbar=False)
    reference = {
        "pointing": quantus.PointingGame(**kwargs)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s),
        "mass": quantus.RelevanceMassAccuracy(**kwargs)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s),
        "rank": quantus.RelevanceRankAccuracy(**kwargs)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s),
    }
    ours = {name: [fn(np.abs(a[i]).sum(0).ravel(), s[i, 0].ravel() > 0) for i in range(n)]
            for name, fn in (("pointing", pointing), ("mass", mass), ("rank", rank))}
    for name in ours:
        np.testing.assert_allclose(ours[name], np.asarray(reference[name], float), atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", TRUST_CHECKS.names())
def test_every_check_is_deterministic_and_batch_invariant(name):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    rng = np.random.default_rng(4)
    images = rng.random((5, 1, 12, 12)).astype(np.float32)
    masks = [rng.random((12, 12)) > 0.8 for _ in range(5)]
    ids = list("abcde")
    maps = np.stack([a.array for a in explain(handle, images, ids, "saliency", 1)])

    def recompute(h, x):
        return np.stack([a.array for a in explain(h, x, [str(i) for i in range(len(x))], "saliency", 1)])

    check = TRUST_CHECKS.get(name)
    together = check.compute(CheckInputs(handle, images, maps, 1, masks, recompute, 0))
    again = check.compute(CheckInputs(handle, images, maps, 1, masks, recompute, 0))
    alone = [check.compute(CheckInputs(handle, images[i:i + 1], maps[i:i + 1], 1, masks[i:i + 1], recompute, 0))[0]
             for i in range(5)]
    np.testing.assert_allclose(together, again, rtol=0, atol=0)
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)


def test_an_empty_map_is_named():
    assert map_problem(np.zeros((1, 4, 4))) == "zero everywhere"
    assert map_problem(np.full((1, 4, 4), 0.3)) == "the same value everywhere"
    assert map_problem(np.eye(4)[None]) is None


def test_the_relevance_mass_of_v2s_maps_is_the_demo_checks_figure(demo_ws, demo_models, demo_root):
    """Two independent paths to one number: the trust check's relevance mass of v2's integrated gradients over the
    demo check's cases equals the figure the demo build measured (and passes its band: ≥ 3× chance)."""
    from evaluation.explanation_quality import quality_summary

    cohort = demo_ws.cohort_for(demo_models["v2"], demo_ws.cohort_paths()["demo2d"])
    test = [c for c in cohort.cases if c.attributes.get("split") == "test"]
    visible = [c for c in test if c.label == 1 and c.attributes["site"] != "B"][:40]
    checks = trust_service.trust(demo_ws, demo_models["v2"], cohort, visible, "integrated_gradients", 1,
                                 checks=["relevance_mass"])
    summary = quality_summary(checks).iloc[0]
    facts = {c["name"]: c["value"] for c in json.loads((demo_root / "demo.json").read_text())["checks"]}
    assert summary["mean"] / summary["chance"] == pytest.approx(facts["v2_lesion_attribution"], rel=1e-4)
    assert summary["band"] == "passes"


def test_trust_command_and_explanation_quality_page(demo_root, capsys):
    from tests.pages.test_pages import page
    from workspace.cli import main

    assert main(["trust", "--model", "v2", "--cohort", "demo2d", "--methods", "saliency,grad_cam", "--cases", "8",
                 "--by", "site", "--workspace", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert "8 cases sampled across site × outcome" in out
    rows = {tuple(ln.split()[:2]): ln for ln in out.splitlines() if ln.split()[:1] in (["saliency"], ["grad_cam"])
            and len(ln.split()) > 2 and not ln.split()[1].endswith(":")}
    assert {r for r in rows if r[1] == "randomisation"} == {("saliency", "randomisation"),
                                                            ("grad_cam", "randomisation")}
    assert "saliency:" in out and "grad_cam:" in out
    # Grad-CAM vanishes on the randomised demo model: undefined, so "could not judge" with the reason, never a pass
    assert rows[("grad_cam", "randomisation")].endswith("could not judge")
    assert "grad_cam randomisation: could not judge: none of the" in out and "undefined (not 0)" in out
    # the pointing game: a hit rate with its interval, read against the clinical reference, which is named
    assert "0.801" in rows[("saliency", "pointing_game")]
    assert "clinical reference 0.801: human benchmark of Saporta" in out
    assert not rows[("saliency", "pointing_game")].endswith("passes")
    assert main(["trust", "--model", "v2", "--cohort", "demo2d", "--methods", "gradcam", "--workspace",
                 str(demo_root)]) == 2
    assert "did you mean 'grad_cam'" in capsys.readouterr().err
    at = page("pages/quality.py", demo_root, model="v2", cohort="demo2d")
    assert not at.exception and any("run the checks" in i.value for i in at.info)
    at.multiselect(key="qual_methods").set_value(["saliency", "grad_cam"])
    at.number_input(key="qual_cases").set_value(8)
    at.button(key="qual_run").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table["method"]) == {"saliency", "grad_cam"}
    assert set(table["band"]) <= {"passes", "concern", "fails", "could not judge"}
    assert any(m.value.startswith("**saliency**:") for m in at.markdown)


def test_case_review_shows_a_trust_strip_under_each_map(demo_root):
    from tests.pages.test_pages import page

    at = page("pages/case_review.py", demo_root, model="v2", cohort="demo2d", review_methods=["saliency"])
    assert not at.exception and not at.error
    strips = [m for m in at.markdown if "● Randomisation" in m.value]
    assert len(strips) == 1 and "Stability" in strips[0].value
    assert any("scaled to its own 99th percentile" in c.value for c in at.caption)


def test_a_map_that_vanishes_on_the_randomised_model_could_not_be_judged_never_passes():
    """The demo's Grad-CAM: on a randomised model its map is zero everywhere, and a rank correlation with a flat map
    is undefined, not 0 (the old code called it 0.000 [0.000, 0.000]: passes)."""
    handle = _linear()
    images = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    maps = np.stack([a.array for a in explain(handle, images, list("abcdef"), "saliency", 1)])
    check = TRUST_CHECKS.get("randomisation")
    vanished = check.compute(_inputs(handle, images, maps, recompute=lambda h, x: np.zeros_like(x)))
    assert np.isnan(vanished).all()
    frame = pd.DataFrame({"case_id": list("abcdef"), "method": "grad_cam", "check": "randomisation",
                          "value": vanished, "chance": None, "band": [band(check, v) for v in vanished],
                          "problem": ""})
    row = quality_summary(frame).iloc[0]
    assert row["band"] == COULD_NOT_JUDGE and row["cases"] == 0 and row["of"] == 6
    assert "zero or constant everywhere" in row["reason"] and "undefined (not 0)" in row["reason"]
    # half vanished is still judged on the rest, and says how many were not
    half = np.where(np.arange(6) < 3, vanished, 0.1)
    row = quality_summary(frame.assign(value=half, band=[band(check, v) for v in half])).iloc[0]
    assert row["band"] == "passes" and row["cases"] == 3 and "3 of 6 cases not judged" in row["reason"]
    # fewer than half judged: could not judge
    few = np.where(np.arange(6) < 4, vanished, 0.1)
    row = quality_summary(frame.assign(value=few, band=[band(check, v) for v in few])).iloc[0]
    assert row["band"] == COULD_NOT_JUDGE and "only 2 of 6 cases could be judged" in row["reason"]


def _pointing_frame(hits: list[float], chance: float = 0.006) -> pd.DataFrame:
    check = TRUST_CHECKS.get("pointing_game")
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(len(hits))], "method": "saliency",
                         "check": "pointing_game", "value": hits,
                         "chance": [chance if np.isfinite(h) else None for h in hits],
                         "band": [band(check, h) for h in hits], "problem": ""})


def test_the_pointing_game_reads_its_hit_rate_with_interval_against_chance_and_radiologists():
    from statsmodels.stats.proportion import proportion_confint

    # the demo's saliency: 1 hit of 11 lesions is 15x chance (0.6%) but far below radiologists
    row = quality_summary(_pointing_frame([1.0] + [0.0] * 10)).iloc[0]
    lo, hi = proportion_confint(1, 11, alpha=0.05, method="wilson")
    assert row["mean"] == pytest.approx(1 / 11) and row["lo"] == pytest.approx(lo) and row["hi"] == pytest.approx(hi)
    assert row["band"] == "fails" and row["reference"] == POINTING_REFERENCE and "shown below 0.701" in row["reason"]
    assert "hit rate 0.091 [" in row["reason"]
    # 29 of 30: shown not worse than radiologists by more than the margin
    assert quality_summary(_pointing_frame([1.0] * 29 + [0.0])).iloc[0]["band"] == "passes"
    # 7 of 10: not shown either way
    assert quality_summary(_pointing_frame([1.0] * 7 + [0.0] * 3)).iloc[0]["band"] == "concern"
    # at chance: fails however many hits the finding's size allows
    assert quality_summary(_pointing_frame([1.0] * 5 + [0.0] * 5, chance=0.5)).iloc[0]["band"] == "fails"
    # no finding to point at: could not judge, with the reason
    row = quality_summary(_pointing_frame([np.nan] * 6)).iloc[0]
    assert row["band"] == COULD_NOT_JUDGE and "no case to judge" in row["reason"] and "no ground-truth finding" in row[
        "reason"]
    assert band_pointing(np.nan, np.nan, np.nan, None)[0] == COULD_NOT_JUDGE


@pytest.mark.parametrize("name", TRUST_CHECKS.names())
def test_every_check_names_the_source_of_its_band_and_when_it_is_undefined(name):
    check = TRUST_CHECKS.get(name)
    assert check.band_source and check.undefined
    assert ("Glassbox" in check.band_source) or check.reference is not None
    if name == "pointing_game":
        assert check.reference == POINTING_REFERENCE and "Saporta et al." in check.reference_source
        assert "80.1%" in check.reference_source and "secondary quotation" in check.reference_source


def test_in_words_never_calls_a_method_trustworthy_when_a_check_could_not_be_judged():
    from evaluation.explanation_quality import in_words

    summary = pd.DataFrame({"method": "grad_cam", "check": ["randomisation", "deletion"],
                            "band": [COULD_NOT_JUDGE, "passes"], "reason": ["the map vanished", "0.2"]})
    (line,) = in_words(summary)
    assert "trustworthy on every check run" not in line and "passes every check that could be judged" in line
    assert "could not judge randomisation (the map vanished)" in line
