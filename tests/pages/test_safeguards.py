"""What a browser user types never widens what the server trusts or reads: workspaces are the operator's choice,
bundle code runs only from the operator's model roots, concept folders only from under the data roots, and
identifier hashes are keyed by a secret outside every workspace."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from data_adapters.errors import InvalidInputError
from data_adapters.models.state_dict import monai_network
from tests.data_adapters.test_bundle import NET, write_bundle
from tests.pages.test_pages import ROOT, TIMEOUT, allow
from workspace.concepts import concept_sensitivity
from workspace.keys import identifier_key
from workspace.store import Workspace, allowed_workspace


def _evil_workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace anywhere on disk whose models/ holds a bundle that writes a witness file when its config runs."""
    witness = tmp_path / "witness"
    evil = tmp_path / "evil"
    network_def = f"$__import__('pathlib').Path(r'{witness}').touch() or monai.networks.nets.DenseNet(" + \
        ", ".join(f"{k}={v!r}" for k, v in NET.items()) + ")"
    write_bundle(evil / "models" / "trojan", network_def=network_def)
    (evil / "cohorts" / "c").mkdir(parents=True)
    return evil, witness


def test_a_typed_workspace_is_not_opened_and_its_bundle_never_runs(tmp_path, demo_root):
    evil, witness = _evil_workspace(tmp_path)
    allow(demo_root)  # the operator served the demo workspace only
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(evil)  # what a browser user might inject
    at.session_state["model"] = "trojan"
    at.run()
    assert not at.exception
    assert at.session_state["workspace"] == str(demo_root.resolve()), "fell back to the operator's workspace"
    assert "trojan" not in at.sidebar.selectbox(key="model").options
    assert not any(t.label == "Workspace" for t in at.sidebar.text_input), "no free-text workspace box"
    assert not witness.exists()
    assert not (evil / "settings.json").exists() and not (evil / "cache").exists(), "nothing written there"


@pytest.mark.parametrize("name", ["pages/home.py", "pages/case_review.py", "pages/subgroups.py",
                                  "pages/uncertainty.py", "pages/concepts.py"])
def test_an_allowed_workspace_does_not_trust_its_own_bundles(tmp_path, name):
    evil, witness = _evil_workspace(tmp_path)
    allow(evil)  # even a workspace the operator allowed: its models/ grants no trust by itself
    at = AppTest.from_file(str(ROOT / name), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(evil)
    at.session_state["model"] = "trojan"
    at.run()
    assert not at.exception
    assert not witness.exists(), name
    assert any("outside the configured model roots" in e.value for e in at.error), [e.value for e in at.error]


def test_the_operators_model_root_is_what_grants_trust(tmp_path, monkeypatch):
    evil, witness = _evil_workspace(tmp_path)
    assert allowed_workspace(evil) != evil.resolve()
    monkeypatch.setenv("GLASSBOX_MODEL_ROOTS", str(evil / "models"))
    handle = Workspace(evil, trust_own_models=False).load_model(evil / "models" / "trojan")
    assert handle.class_names == ("normal", "abnormal") and witness.exists()


def test_concept_folders_are_read_only_from_under_the_cohort_or_data_roots(tmp_path, demo_ws, demo_cohort,
                                                                          demo_models, monkeypatch):
    import numpy as np
    from PIL import Image

    outside = tmp_path / "Smith_John_MRN123"
    outside.mkdir()
    for i in range(12):
        Image.fromarray(np.zeros((128, 128), np.uint16)).save(outside / f"{i}.png")
    folder = demo_ws.cohort_paths()["demo2d"].parent
    with pytest.raises(InvalidInputError, match="lies outside the cohort's folder and the configured data roots") as e:
        concept_sensitivity(demo_ws, demo_models["v1"], demo_cohort, folder, str(outside), "features.denseblock2",
                            demo_cohort.cases[:1], 1)
    assert "'[masked]'" in str(e.value) and "Smith" not in str(e.value), "a folder name that may carry a name"
    assert "0.png" not in str(e.value), "nothing inside it is listed"
    monkeypatch.setenv("GLASSBOX_DATA_ROOTS", str(tmp_path))
    frame = concept_sensitivity(demo_ws, demo_models["v1"], demo_cohort, folder, str(outside),
                                "features.denseblock2", demo_cohort.cases[:1], 1)
    assert len(frame) == 1
    monkeypatch.delenv("GLASSBOX_DATA_ROOTS")
    with pytest.raises(InvalidInputError, match="lies outside the cohort's folder and the configured data roots"):
        concept_sensitivity(demo_ws, demo_models["v1"], demo_cohort, folder, str(folder / ".." / ".." / ".."),
                            "features.denseblock2", demo_cohort.cases[:1], 1)


def test_identifier_hashes_are_keyed_by_a_secret_outside_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "operator" / "secret"))
    ws = Workspace(tmp_path / "ws")
    key = ws.salt
    assert key == identifier_key() and len(key) == 64
    assert (tmp_path / "operator" / "secret").stat().st_mode & 0o077 == 0, "owner-only"
    assert not (tmp_path / "ws").exists() or key not in "".join(
        p.read_text(errors="ignore") for p in (tmp_path / "ws").rglob("*") if p.is_file())
    import hashlib
    import hmac

    from data_adapters.dicom_folder import salted

    assert salted(key, "PAT-001") == hmac.new(key.encode(), b"PAT-001", hashlib.sha256).hexdigest()[:16]
