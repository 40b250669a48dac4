"""Shared fixtures: the demo workspace (built once, reused across runs: `glassbox demo` is idempotent)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from data_adapters.cohort import load_manifest
from data_adapters.models import load_model
from workspace.demo import build_demo
from workspace.store import Workspace, default_workspace

ROOT = Path(__file__).resolve().parent.parent
# what reviewers record in tests never lands in the shared demo workspace, and no test reads the machine's accounts
_RECORDS = Path(tempfile.mkdtemp(prefix="glassbox-test-record-"))
os.environ["GLASSBOX_RECORD_DIR"] = str(_RECORDS)
os.environ["GLASSBOX_USERS_FILE"] = str(_RECORDS / "users.sqlite")
os.environ.pop("GLASSBOX_AUTH", None)


@pytest.fixture(scope="session")
def demo_root() -> Path:
    return build_demo(default_workspace(), log=lambda _m: None)


@pytest.fixture(scope="session")
def demo_ws(demo_root) -> Workspace:
    return Workspace(demo_root)


@pytest.fixture(scope="session")
def demo_cohort(demo_ws):
    return load_manifest(demo_ws.cohort_paths()["demo2d"])


@pytest.fixture(scope="session")
def demo_models(demo_ws):
    return {v: load_model(p) for v, p in demo_ws.model_paths().items()}
