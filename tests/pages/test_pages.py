"""Every page under Streamlit's AppTest: no exception, key elements present, widgets do what they say."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def allow(*workspaces: Path) -> None:
    """The operator's choice of workspaces (what ``glassbox serve --workspace`` sets) for the app under test."""
    os.environ["GLASSBOX_WORKSPACES"] = os.pathsep.join(str(w) for w in workspaces)


def page(name: str, workspace: Path, **state) -> AppTest:
    allow(workspace)
    at = AppTest.from_file(str(ROOT / name), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(workspace)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def table(at: AppTest, *columns: str):
    """The first dataframe on the page holding these columns (pages draw several; their order is layout)."""
    for d in at.dataframe:
        if set(columns) <= set(d.value.columns):
            return d.value
    raise AssertionError(f"no dataframe with columns {columns}")


def test_app_entry_shows_sidebar_and_home(demo_root):
    at = page("app.py", demo_root)
    assert not at.exception
    assert at.sidebar.selectbox(key="model").options == ["ct3d-v1", "v1", "v2"]
    assert at.sidebar.selectbox(key="model").value == "v2"
    assert at.sidebar.selectbox(key="cohort").value == "demo2d"
    assert at.title[0].value == "Glassbox"


def test_home_shows_cohort_report_and_model_card(demo_root):
    at = page("pages/home.py", demo_root, model="v1", cohort="demo2d")
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][:2] == ["720", "0"]
    assert any("Every row loaded" in s.value for s in at.success)
    text = " ".join(m.value for m in at.markdown)
    assert "version **v1**" in text and "corner marker as a shortcut" in text
    from workspace.demo_checks import CHECKS

    assert at.expander[0].label == f"The demo's planted truths, measured on these models: {len(CHECKS)} of " \
                                   f"{len(CHECKS)} hold"
    assert "v1 relies on the marker: erasing it drops p(lesion) by" in text and "Measured, not claimed" in text
    at.selectbox(key="home_group_by").set_value("site").run()
    counts = at.dataframe[0].value
    assert list(counts["site"]) == ["A", "B", "C"] and counts["n"].sum() == 720


def test_case_review_shows_case_probabilities_and_maps(demo_root):
    at = page("pages/case_review.py", demo_root, model="v2", cohort="demo2d")
    assert not at.exception and not at.error
    assert at.selectbox(key="review_case").value == "demo-0001"
    probs = table(at, "class", "probability")
    assert list(probs["class"]) == ["no lesion", "lesion"] and abs(probs["probability"].sum() - 1) < 1e-6
    attributes = table(at, "attribute", "value")
    assert set(attributes["attribute"]) >= {"sex", "age", "site", "scanner"}
    captions = " ".join(c.value for c in at.caption)
    assert "lesion ·" in captions
    assert any("Concept sensitivity" in m.value for m in at.markdown)
    assert set(table(at, "concept")["concept"]) == {"marker", "lesion", "no_lesion", "site_b_texture"}


def test_case_review_filters_and_methods(demo_root):
    at = page("pages/case_review.py", demo_root, model="v1", cohort="demo2d")
    at.multiselect(key="review_site").set_value(["B"])
    at.multiselect(key="review_outcome").set_value(["false negative", "false positive"])
    at.multiselect(key="review_methods").set_value(["grad_cam", "occlusion", "guided_grad_cam"])
    at.radio(key="review_signed").set_value("signed")
    at.run()
    assert not at.exception and not at.error
    chosen = at.selectbox(key="review_case")
    assert chosen.value is not None and len(chosen.options) < 240
    # the case already open does not match the new filters: it stays, and the page says so (never a silent swap)
    assert any("does not match the current filters" in i.value for i in at.info)
    chosen.set_value(chosen.options[1]).run()
    assert not at.exception and not any("does not match" in i.value for i in at.info)
    assert "**Outcome for lesion:** false" in " ".join(m.value for m in at.markdown)


def test_case_review_says_when_nothing_matches(demo_root):
    at = page("pages/case_review.py", demo_root, model="v2", cohort="demo2d")
    at.multiselect(key="review_site").set_value(["A"])
    at.multiselect(key="review_label").set_value([0])
    at.multiselect(key="review_outcome").set_value(["false negative"]).run()
    assert not at.exception
    assert any("No case matches" in i.value for i in at.info)


@pytest.mark.parametrize("name", ["pages/home.py", "pages/case_review.py"])
def test_empty_workspace_gets_guidance_not_an_error(tmp_path, name):
    at = page(name, tmp_path)
    assert not at.exception
    assert "glassbox demo" in at.warning[0].value


def test_subgroups_page_shows_intervals_gaps_and_board_view(demo_root):
    at = page("pages/subgroups.py", demo_root, model="v1", cohort="demo2d")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["group"]) == ["overall", "A", "B", "C"] and "auroc_lo" in table.columns
    assert not any(w.value.startswith("Gap:") and "vs B" in w.value for w in at.warning), "v1 hides it"
    at = page("pages/subgroups.py", demo_root, model="v2", cohort="demo2d")
    assert any(w.value.startswith("Gap: auroc") and "vs B" in w.value for w in at.warning), \
        "v2 cannot see site B's occult lesions, and the table says so"
    assert any("shared operating threshold" in m.value or "youden on split 'test'" in m.value for m in at.markdown)
    at.multiselect(key="sub_by").set_value(["site", "sex"])
    at.toggle(key="sub_board").set_value(True).run()
    at.number_input(key="sub_k").set_value(40).run()
    assert not at.exception
    board = at.dataframe[0].value
    groups = board[board["group"] != "overall"]
    assert (groups["n"] == "<40").any()
    assert all(n == "<40" or int(n) >= 40 for n in groups["n"])
    assert (groups.loc[groups["n"] == "<40", "auroc"] == "<40").all()


def test_uncertainty_page_shows_error_detection_and_calibration(demo_root):
    at = page("pages/uncertainty.py", demo_root, model="v2", cohort="demo2d")
    assert not at.exception and not at.error
    labels = [m.label for m in at.metric]
    assert "Uncertainty flags errors (AUROC)" in labels and "ECE after" in labels
    ece = {m.label: float(m.value) for m in at.metric if m.label.startswith("ECE")}
    assert ece["ECE after"] < ece["ECE before"]


def test_concepts_page_shows_scores_and_verdicts(demo_root):
    at = page("pages/concepts.py", demo_root, model="v1", cohort="demo2d")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table["concept"]) == {"marker", "lesion", "no_lesion", "site_b_texture"}
    assert any("**lesion** at" in i.value and "significant" in i.value for i in at.info)
    at.multiselect(key="tcav_layers").set_value(["features.denseblock3"])
    at.run()
    assert not at.exception and set(at.dataframe[0].value["layer"]) == {"features.denseblock3"}


def test_case_review_shows_a_volume_in_three_planes_at_the_slice_that_matters(demo_root):
    import numpy as np

    from data_adapters.models import load_model
    from data_adapters.readers import read_image
    from workspace.store import Workspace

    at = page("pages/case_review.py", demo_root, model="ct3d-v1", cohort="demo3d",
              review_label=[1], review_methods=["saliency"])
    assert not at.exception and not at.error
    assert at.radio(key="review_plane").options == ["axial", "coronal", "sagittal"]
    case_id = at.selectbox(key="review_case").value
    slider = next(s for s in at.slider if s.key.startswith(f"review_slice_{case_id}_axial"))
    manifest = Workspace(demo_root).cohort_paths()["demo3d"]
    from data_adapters.cohort import load_manifest

    mask = read_image(load_manifest(manifest).case(case_id).mask).array[0] > 0.5
    zs = np.nonzero(mask)[0]
    assert zs.min() + 1 <= slider.value <= zs.max() + 1, "a case with a ground truth opens on it (slices from 1)"
    assert len(at.get("plotly_chart")) == 4, "image, map, and a projection under each"
    assert any(f"axial slice {slider.value} of 32" in c.value and "opened at the ground-truth centre" in c.value
               for c in at.caption), "slider and caption number slices alike"
    from explainers.figures import OPENING_METHOD, peak_slice

    at.selectbox(key="review_anchor").set_value("evidence (Occlusion)").run()
    slider = next(s for s in at.slider if s.key.startswith(f"review_slice_{case_id}_axial"))
    handle = load_model(demo_root / "models" / "ct3d-v1")
    (opening,) = Workspace(demo_root).attributions(handle, [load_manifest(manifest).case(case_id)], OPENING_METHOD,
                                                   "lesion")
    assert slider.value == peak_slice(opening.spatial_map(), "axial", positive=True) + 1, \
        "or at the slice of strongest positive occlusion evidence"
    at.radio(key="review_plane").set_value("sagittal").run()
    assert not at.exception
    assert any(s.key.startswith(f"review_slice_{case_id}_sagittal") for s in at.slider)


def test_a_cohort_that_does_not_fit_the_model_says_what_the_model_expects(demo_root):
    at = page("pages/subgroups.py", demo_root, model="ct3d-v1", cohort="demo2d")
    assert not at.exception
    assert "No case of cohort **demo2d** fits model" in at.error[0].value
    assert "expects 3D input 1×32×48×48 (channels × spatial)" in at.error[0].value
    reasons = at.dataframe[0].value["reason"]
    assert reasons.str.contains("the model expects 1×32×48×48").all()


@pytest.mark.parametrize("name", ["pages/home.py", "pages/case_review.py", "pages/subgroups.py",
                                  "pages/uncertainty.py"])
def test_pages_work_on_the_dicom_studies_without_showing_identifiers(demo_root, name):
    at = page(name, demo_root, model="ct3d-v1", cohort="demo3d_dicom")
    assert not at.exception, at.exception
    rendered = " ".join(str(e.value) for kind in ("markdown", "caption", "metric", "dataframe", "selectbox", "title",
                                                  "info", "warning", "success", "error")
                        for e in getattr(at, kind))
    assert "Demo^Patient" not in rendered and "DEMO-0" not in rendered and "ACC0000" not in rendered
    if name.endswith("subgroups.py"):
        assert not at.error and "has no labels" in at.info[0].value
    if name.endswith("uncertainty.py"):  # no labels: no error detection, but who would be referred
        assert any("has no labels" in i.value for i in at.info)
        assert len(at.dataframe[-1].value) == round(0.1 * 24)


def test_case_review_reports_an_image_that_vanished_after_loading(tmp_path):
    from tests.helpers import tiny_workspace

    ws = tiny_workspace(tmp_path / "ws")
    at = page("pages/case_review.py", ws, model="tiny", cohort="pngs", review_methods=["saliency"])
    assert not at.exception and not at.error
    (ws / "cohorts" / "pngs" / "i0.png").unlink()  # the cohort stays cached; the file is gone
    at.run()
    assert not at.exception
    assert "i0.png: file not found" in at.error[0].value


def test_an_edited_manifest_or_model_is_never_served_stale(tmp_path):
    """Streamlit leaves ``_``-prefixed arguments out of its cache keys; the pages key on file stamps instead."""
    import time

    from tests.helpers import random_png_cohort, torchscript_binary_model

    ws = tmp_path / "ws"
    random_png_cohort(ws / "cohorts" / "pngs", 6, size=12, n_classes=2)
    model = torchscript_binary_model(ws / "models" / "tiny", 12)
    at = page("pages/home.py", ws, model="tiny", cohort="pngs")
    assert not at.exception and at.metric[0].value == "6"
    first_hash = next(c.value for c in at.caption if "Weights hash" in c.value)
    manifest = ws / "cohorts" / "pngs" / "manifest.csv"
    time.sleep(0.01)
    manifest.write_text("\n".join(manifest.read_text().splitlines()[:5]) + "\n")  # header + 4 rows
    spec = (model / "model.json").read_text()
    (model / "model.json").write_text(spec.replace('"name": "tiny"', '"name": "tiny v2"'))
    at.run()
    assert not at.exception and at.metric[0].value == "4", "the edited manifest is re-read"
    assert next(c.value for c in at.caption if "Weights hash" in c.value) != first_hash, "the edited model too"


def test_settings_survive_a_page_switch_and_actions_are_never_reassigned():
    """app.py re-assigns kept widget keys on every run so a page switch does not reset them; a button, download or
    table selection re-assigned would break its page, so every such key in the pages must be left out."""
    import re

    from pages._state import kept

    actions = set()
    for source in (ROOT / "pages").glob("*.py"):
        for call in re.finditer(r"(button|download_button|form_submit_button|download)\((.*?)\)\n|on_select=", source.read_text(),
                                flags=re.S):
            actions |= set(re.findall(r'key=f?"([^"{]+)', call.group(0)))
    actions |= {"review_worklist"}
    assert {"review_prev", "review_next", "qual_run", "cmp_open", "audit_export"} <= actions
    assert not [k for k in actions if kept(k)]
    assert all(kept(k) for k in ("review_case", "review_methods", "review_preset_list", "sub_by", "review_layout"))



def test_case_review_never_computes_the_whole_cohort_on_open(tmp_path):
    """The case in view gets its uncertainty; the cohort's (MC dropout or TTA over every case) waits until asked."""
    from tests.helpers import tiny_workspace

    ws = tiny_workspace(tmp_path / "ws")
    at = page("pages/case_review.py", ws, model="tiny", cohort="pngs", review_methods=["saliency"])
    assert not at.exception and not at.error
    assert any(m.label == "Uncertainty (entropy)" for m in at.metric)
    assert any("once the cohort's uncertainty is computed" in c.value for c in at.caption)
    assert not list((ws / "cache").rglob("uncertainty/*.parquet")), "no cohort-wide uncertainty was computed"


def test_uncertainty_page_runs_a_large_cohort_in_the_background(tmp_path, monkeypatch):
    """A cohort's uncertainty costing more forward passes than the page should wait for runs as a background job
    (issue 32: MC dropout over 5,984 cases held the page for minutes): the page shows the job's progress and
    computes nothing itself; once the job has written the cache, the page reads it."""
    import time

    import pages._cache as cache
    from tests.helpers import tiny_workspace
    from workspace import jobs

    monkeypatch.setattr(cache, "BACKGROUND_PASSES", 1)  # the tiny cohort counts as large
    ws = tiny_workspace(tmp_path / "ws")
    at = page("pages/uncertainty.py", ws, model="tiny", cohort="pngs", unc_method="tta")
    assert not at.exception and not at.error
    running = [j for j in jobs._jobs.values() if "uncertainty" in j.key and str(ws) in j.key]
    assert len(running) == 1 and running[0].title.startswith("Uncertainty (tta)")
    assert not at.metric, "the page waited for the job instead of computing and drawing the cohort's figures"
    deadline = time.time() + TIMEOUT
    while running[0].running and time.time() < deadline:  # a condition, not a fixed sleep
        time.sleep(0.2)
    assert not running[0].running and running[0].error is None
    assert list((ws / "cache").rglob("uncertainty/*.parquet")), "the job wrote the cohort's table"
    at = page("pages/uncertainty.py", ws, model="tiny", cohort="pngs", unc_method="tta")
    assert not at.exception and not at.error
    assert any(m.label == "Uncertainty flags errors (AUROC)" for m in at.metric)
