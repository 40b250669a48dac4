"""TCAV: the demo's known concept truths, a null concept, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from data_adapters.errors import InvalidInputError, UnknownNameError
from explainers.concepts import (
    ConceptSet,
    concept_from_filter,
    concept_from_folder,
    default_layers,
    random_concepts,
    resolve_concept,
    tcav_scores,
)
from tests.helpers import write_png
from workspace.cli import main


@pytest.fixture(scope="module")
def demo_tcav(demo_ws, demo_cohort, demo_models):
    folder = demo_ws.cohort_paths()["demo2d"].parent
    return {v: demo_ws.concept_scores(demo_models[v], demo_cohort, folder, ["marker", "lesion", "no_lesion"]).set_index(
        ["concept", "layer"]) for v in ("v1", "v2")}


def test_the_lesion_raises_both_versions_scores_and_its_absence_does_not(demo_tcav):
    """Direction, not just the word "significant": the lesion concept's TCAV exceeds the random concepts' on a
    significant layer for both versions (bound from 5 seeds × 1/2 threads), and "no lesion" never significantly
    raises the score. The marker's TCAV is measured and shown but not asserted: its sign for v1 varied between
    training runs, although erasing the marker moved v1 in every run (test_demo)."""
    from workspace.demo_checks import CHECKS

    for version in ("v1", "v2"):
        scores = demo_tcav[version].reset_index()
        lesion = scores[(scores["concept"] == "lesion") & scores["significant"]]
        assert len(lesion) and (lesion["score"] - lesion["null_score"]).max() > CHECKS[f"tcav_lesion_{version}"][2]
        absent = scores[(scores["concept"] == "no_lesion") & scores["significant"]]
        assert not (absent["score"] > absent["null_score"]).any(), version
        assert (scores["runs"] == 15).all() and (scores["p_adjusted"] >= scores["p_value"]).all()
        marker = scores[scores["concept"] == "marker"]
        assert (marker["cav_accuracy"] > 0.9).all(), "the marker is easy to separate: its TCAV is meaningful"


def test_random_concepts_come_from_the_other_classes(demo_cohort):
    (r,) = random_concepts(demo_cohort, 1, 40, seed=3, exclude_class=1)
    assert "not labelled class 1" in r.source
    from data_adapters.cohort import load_image_batch

    negatives = {a.tobytes() for a in load_image_batch([c for c in demo_cohort.cases if c.label == 0])}
    positives = {a.tobytes() for a in load_image_batch([c for c in demo_cohort.cases if c.label == 1])}
    drawn = {a.tobytes() for a in r.images}
    assert len(drawn) == 40 and drawn <= negatives and not drawn & positives


def test_a_concept_identical_to_random_is_not_significant(demo_cohort, demo_models, tmp_path):
    handle = demo_models["v2"]
    randoms = random_concepts(demo_cohort, 6, 40, seed=1)
    same = random_concepts(demo_cohort, 7, 40, seed=1)[-1]  # another draw from the same distribution
    null = ConceptSet("random_like", same.images, "a random draw")
    inputs = np.stack([randoms[0].images[i] for i in range(20)])
    (score,) = tcav_scores(handle, inputs, [null], ["features.denseblock3"], 1, randoms, tmp_path)
    assert not score.significant and score.p_adjusted > 0.05, score


def test_bad_concepts_and_layers(demo_cohort, demo_models, tmp_path):
    handle = demo_models["v1"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"concept 'empty' has 0 example\(s\); TCAV needs at least 10"):
        concept_from_folder(tmp_path / "empty", handle)
    for i in range(12):
        write_png(tmp_path / "small" / f"{i}.png", np.zeros((32, 32), np.uint16))
    with pytest.raises(InvalidInputError, match=r"concept 'small': 0\.png is \(1, 32, 32\); model demo lesion "
                                                r"detector v1 expects 2D input 1×128×128 \(channels × spatial\)"):
        concept_from_folder(tmp_path / "small", handle)
    with pytest.raises(UnknownNameError, match=r"has no layer 'features.denseblock9' \(did you mean"):
        tcav_scores(handle, np.zeros((2, 1, 128, 128), np.float32),
                    [concept_from_filter(demo_cohort, "site == B")], ["features.denseblock9"], 1,
                    random_concepts(demo_cohort, 3, 20), tmp_path)
    with pytest.raises(UnknownNameError, match=r"cohort has no attribute 'sitte' \(did you mean 'site'"):
        concept_from_filter(demo_cohort, "sitte == B")
    with pytest.raises(InvalidInputError, match=r"concept 'site == Z' matches no case"):
        concept_from_filter(demo_cohort, "site == Z")
    with pytest.raises(UnknownNameError, match=r"unknown concept 'markers' \(did you mean 'marker'\?\); named "
                                               r"concepts: lesion, marker, no_lesion, site_b_texture"):
        resolve_concept("markers", demo_cohort, demo_cohort.cases[0].image.parent.parent)
    with pytest.raises(InvalidInputError, match="needs at least 3 random concepts"):
        tcav_scores(handle, np.zeros((2, 1, 128, 128), np.float32), [concept_from_filter(demo_cohort, "site == B")],
                    ["features.denseblock3"], 1, random_concepts(demo_cohort, 2, 20), tmp_path)
    assert default_layers(handle) == ["features.denseblock2", "features.denseblock3"]


def test_tcav_results_are_cached(demo_ws, demo_cohort, demo_models, demo_tcav, monkeypatch):
    import explainers.concepts as concepts

    monkeypatch.setattr(concepts, "tcav_scores", lambda *a, **k: pytest.fail("recomputed cached TCAV"))
    again = demo_ws.concept_scores(demo_models["v1"], demo_cohort, demo_ws.cohort_paths()["demo2d"].parent,
                                   ["marker", "lesion", "no_lesion"])
    assert again.set_index(["concept", "layer"])["score"].equals(demo_tcav["v1"]["score"])


def test_tcav_command(demo_root, demo_tcav, tmp_path, capsys):
    out = tmp_path / "tcav.csv"
    assert main(["tcav", "--model", str(demo_root / "models" / "v1"), "--cohort",
                 str(demo_root / "cohorts" / "demo2d" / "manifest.csv"), "--workspace", str(demo_root),
                 "--concept", "marker,lesion,no_lesion", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lesion @ features.denseblock" in text and "SIGNIFICANT" in text
    assert set(np.loadtxt(out, delimiter=",", skiprows=1, usecols=0, dtype=str)) == {"marker", "lesion", "no_lesion"}


def test_per_case_sensitivity_is_one_finite_value_per_case_and_cached(demo_ws, demo_cohort, demo_models):
    """Per-case conceptual sensitivity (a directional derivative) is computed and shown on Case review, but its sign
    for the marker is not asserted: like TCAV's, it varied between training runs while erasing the marker (the
    causal test, test_demo) moved v1 by 0.80-0.86 and v2 by at most 0.04 in every run."""
    folder = demo_ws.cohort_paths()["demo2d"].parent
    cases = [c for c in demo_cohort.cases if c.attributes["split"] == "test" and c.label == 1][:10]
    first = demo_ws.concept_sensitivity(demo_models["v1"], demo_cohort, folder, "marker", "features.denseblock2",
                                        cases, "lesion")
    again = demo_ws.concept_sensitivity(demo_models["v1"], demo_cohort, folder, "marker", "features.denseblock2",
                                        cases, "lesion")
    assert list(first["case_id"]) == [c.case_id for c in cases] and np.isfinite(first["sensitivity"]).all()
    np.testing.assert_array_equal(first["sensitivity"], again["sensitivity"])
    assert (first["cav_accuracy"] > 0.9).all(), "the marker is easy to separate at this layer"


def test_concept_folders_take_any_readable_format(tmp_path):
    import nibabel

    for i in range(11):
        nibabel.save(nibabel.Nifti1Image(np.full((6, 5, 4), i, np.float32), np.eye(4)), tmp_path / f"v{i}.nii.gz")
    (tmp_path / "README.txt").write_text("not an example")
    concept = concept_from_folder(tmp_path)
    assert concept.images.shape == (11, 1, 4, 5, 6) and concept.name == tmp_path.name
