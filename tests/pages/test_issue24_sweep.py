"""Issue 24's reproductions that no other test held: each ends in a refusal, a detection or a named message.

The rest of the issue's list is held by the catalogue (tests/workspace/test_catalogue.py) and the area tests; the map from each
bullet to its test is in the issue's closing note (/tmp/issue24_sweep.md when it was written)."""
from __future__ import annotations

import json
import re

import pytest
from argon2 import PasswordHasher
from streamlit.testing.v1 import AppTest

from data_adapters.errors import InvalidInputError
from tests.helpers import random_png_cohort, torchscript_binary_model
from tests.pages.test_pages import ROOT, TIMEOUT, allow
from workspace.access import MAX_CLIENT_FAILURES, ROLES, Identity, Users
from workspace.review import Record

#: an image or a link in Markdown source that is not escaped (what makes a browser fetch or a reader click)
LIVE = re.compile(r"(?<!\\)!\[|(?<!\\)\[[^\]]*(?<!\\)\]\(|(?<![\\/])https?://")
BEACON, PHISH = "![x](http://127.0.0.1:9/beacon.png)", "[sign in again](http://phish.example/login)"


# -- people: 30 failing sign-in clients slowed a signed-in user's rerun (0.28 s -> 1.29 s, max 15.5 s) --------------
def test_thirty_failing_sign_in_clients_cost_at_most_the_networks_limit_of_password_hashes(tmp_path):
    """The slowdown was CPU: every failing attempt ran argon2. Now a network's strangers get MAX_CLIENT_FAILURES
    hashes per lockout window over every account; further attempts are refused before any hash is computed, and the
    owner's own browser still signs in."""
    hashes = []

    class Counted(PasswordHasher):
        def verify(self, *a, **k):
            hashes.append(1)
            return super().verify(*a, **k)

    users = Users(tmp_path / "users.sqlite")
    users._hasher = Counted(time_cost=1, memory_cost=1024, parallelism=1)  # quick hashes, the same counting
    users.add("alice", "radiologist", "correct horse battery")
    assert users.authenticate("alice", "correct horse battery", "alice-browser", "local") is not None
    hashes.clear()
    attempts = 0
    for round_ in range(3):
        for client in range(30):  # 30 clients on the loopback, each guessing alice's password and others'
            for name in ("alice", "bob"):
                assert users.authenticate(name, f"guess {round_}", f"client-{client}", "local") is None
                attempts += 1
    assert attempts == 180
    assert len(hashes) <= MAX_CLIENT_FAILURES, f"{len(hashes)} hashes for {attempts} failing attempts"
    assert users.locked("alice", "client-0", "local") and users.locked("bob", "client-29", "local")
    assert not users.locked("alice", "alice-browser", "local"), "the owner's browser is held to its own failures"
    assert users.authenticate("alice", "correct horse battery", "alice-browser", "local") is not None


# -- identifiers: the board's checklist answers are screened like notes ---------------------------------------------
@pytest.mark.parametrize("text,why", [("discussed with Jane Doe", "personal name"),
                                      ("patient born 12 Mar 1961", "calendar date")])
@pytest.mark.parametrize("field", ["answer", "open_items"])
def test_a_checklist_answer_holding_an_identifier_is_refused_and_not_stored(tmp_path, text, why, field):
    record = Record(tmp_path, path=tmp_path / "review.sqlite")
    board = Identity("board-1", "board")
    args = {"model_hash": "m" * 64, "cohort_hash": "c" * 64, "question": "intended use", "answer": "agreed"}
    label = "answer" if field == "answer" else "open items"
    with pytest.raises(InvalidInputError, match=f"checklist {label} to 'intended use': it seems to hold a {why}") \
            as caught:
        record.answer(board, **{**args, field: text})
    assert text not in str(caught.value), "the refusal never echoes the identifier"
    assert record.answers(model_hash="m" * 64, cohort_hash="c" * 64).empty
    assert record.answer(board, **args) > 0, "a plain answer is kept"


# -- identifiers: Markdown in case ids, and in model.json for every role's Home ---------------------------------------
def _texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("markdown", "caption", "info", "warning", "success", "error", "subheader", "title")
            for e in getattr(at, kind)]


def test_markdown_in_a_case_id_renders_as_text_on_case_review(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_AUTH", "single")
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    root = tmp_path / "ws"
    manifest = random_png_cohort(root / "cohorts" / "c", 4, size=12, n_classes=2).report.source
    lines = open(manifest, encoding="utf-8").read().splitlines()
    lines[1] = lines[1].replace("k0", BEACON, 1)
    lines[2] = lines[2].replace("k1", f'"{PHISH}"', 1)
    open(manifest, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    torchscript_binary_model(root / "models" / "m", 12)
    allow(root)
    at = AppTest.from_file(str(ROOT / "pages" / "case_review.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(root)
    at.session_state["model"], at.session_state["cohort"] = "m", "c"
    at.run()
    assert not at.exception, at.exception
    texts = _texts(at)
    assert any("beacon" in t or "phish" in t for t in texts), "the case id is shown"
    live = [t for t in texts if LIVE.search(t)]
    assert not live, live


def _markdown_card(root) -> None:
    random_png_cohort(root / "cohorts" / "c", 4, size=12, n_classes=2)
    folder = torchscript_binary_model(root / "models" / "m", 12)
    spec_file = folder / "model.json" if folder.is_dir() else folder
    spec = json.loads(spec_file.read_text())
    spec["name"] = f"lesion {BEACON}"
    spec["class_names"] = ["no lesion", f"lesion {BEACON}"]
    spec["card"] = {"intended_use": BEACON, "training_data": PHISH, "limitations": [PHISH], "owner": BEACON}
    spec_file.write_text(json.dumps(spec))


@pytest.mark.parametrize("role", ROLES)
def test_markdown_in_model_json_renders_as_text_on_home_for_every_role(tmp_path, monkeypatch, role):
    """The issue counted 5 listener requests per Home visit, per role."""
    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    root = tmp_path / "ws"
    _markdown_card(root)
    users = Users()
    users.add(f"{role}-1", role, None)
    allow(root)
    at = AppTest.from_file(str(ROOT / "pages" / "home.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(root)
    at.session_state["_identity"] = users.refresh(Identity(f"{role}-1", role))
    at.run()
    assert not at.exception, at.exception
    texts = _texts(at)
    assert at.title[0].value != "Glassbox · sign in", "signed in"
    live = [t for t in texts if LIVE.search(t)]
    assert not live, live


def test_the_report_page_names_a_checklist_answer_holding_a_name_and_stores_nothing(demo_root, monkeypatch, tmp_path):
    from tests.pages.test_roles import account

    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))
    allow(demo_root)
    at = AppTest.from_file(str(ROOT / "pages" / "report.py"), default_timeout=TIMEOUT)
    for key, value in {"workspace": str(demo_root), "model": "v2", "cohort": "demo2d", "_identity":
                       account("board-1", "board"), "report_by": ["site"]}.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception and not at.error
    before = len(Record(demo_root).audit(action="checklist_answer"))
    box = next(t for t in at.text_area if t.key.startswith("checklist_answer_"))
    box.set_value("agreed with Jane Doe on the ward")
    next(b for b in at.button if b.label == "Save answers").click().run()
    assert not at.exception, at.exception
    assert any("seems to hold a personal name" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("Jane Doe" in e.value for e in at.error), "the refusal never echoes the name"
    assert len(Record(demo_root).audit(action="checklist_answer")) == before, "nothing stored"
