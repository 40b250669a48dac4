"""Attacks from the integrity report that end in a refusal now: server-wide browser messages from a session that is
no signed-in admin, a reader's export holding other readers' verdicts, a DICOM folder's link out of it, a case id that
climbs out of the folder explain writes to, and Markdown from files rendered as Markdown."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.testing.v1 import AppTest

from pages._display import md
from pages._session import IDENTITY, guard_server_messages
from tests.helpers import random_png_cohort, torchscript_binary_model, write_png
from tests.pages.test_pages import ROOT, TIMEOUT, allow
from workspace.access import ADMIN_MESSAGES, Identity, Users
from workspace.review import Record, Verdict


# -- server-wide browser messages -----------------------------------------------------------------------------------
def _session(identity: Identity | None) -> SimpleNamespace:
    calls = []
    state = {} if identity is None else {IDENTITY: identity}
    return SimpleNamespace(_session_state=state, calls=calls,
                           _handle_clear_cache_request=lambda: calls.append("clear_cache"),
                           _handle_app_heartbeat_request=lambda: calls.append("heartbeat"),
                           _handle_set_run_on_save_request=lambda v: calls.append("run_on_save"))


def _message(kind: str) -> BackMsg:
    msg = BackMsg()
    if kind == "clear_cache":
        msg.clear_cache = True
    elif kind == "app_heartbeat":
        msg.app_heartbeat = True
    elif kind == "set_run_on_save":
        msg.set_run_on_save = True
    return msg


@pytest.mark.parametrize("who,allowed", [(None, False), (Identity("dr", "radiologist", "single-user mode"), False),
                                         (Identity("dev", "developer", "single-user mode"), False),
                                         (Identity("ops", "admin", "single-user mode"), True)])
def test_clearing_every_users_caches_needs_a_signed_in_admin(who, allowed, monkeypatch):
    from streamlit.runtime.app_session import AppSession

    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    guard_server_messages()
    guarded = AppSession.handle_backmsg
    assert getattr(guarded, "_glassbox_guard", False)
    guard_server_messages()
    assert AppSession.handle_backmsg is guarded, "installed once"
    unguarded = _session(None)  # what Streamlit itself does: anyone's websocket clears every cache
    _unguarded(guarded)(unguarded, _message("clear_cache"))
    assert unguarded.calls == ["clear_cache"]
    session = _session(who)
    for kind in ("clear_cache", "set_run_on_save", "app_heartbeat"):
        guarded(session, _message(kind))
    expected = ["clear_cache", "run_on_save", "heartbeat"] if allowed else ["heartbeat"]
    assert session.calls == expected, "admin messages only from an admin; the rest pass"
    assert set(ADMIN_MESSAGES) >= {"clear_cache"}


def _unguarded(handler):
    """Streamlit's own handler under the guard (the guard keeps it in its closure)."""
    if not getattr(handler, "_glassbox_guard", False):
        return handler
    return handler.__closure__[next(i for i, n in enumerate(handler.__code__.co_freevars) if n == "original")] \
        .cell_contents


def test_a_local_admin_whose_account_was_demoted_cannot_clear_caches(tmp_path, monkeypatch):
    from streamlit.runtime.app_session import AppSession

    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))
    users = Users()
    users.add("ops", "admin", None)
    who = users.refresh(Identity("ops", "admin"))
    guard_server_messages()
    session = _session(who)
    AppSession.handle_backmsg(session, _message("clear_cache"))
    assert session.calls == ["clear_cache"]
    users.set_role("ops", "developer")
    AppSession.handle_backmsg(session, _message("clear_cache"))
    assert session.calls == ["clear_cache"], "refused once the account is no longer an admin"


# -- reads kept independent ---------------------------------------------------------------------------------------
def _verdict(case_id: str, agreement: str, note: str) -> Verdict:
    return Verdict(case_id=case_id, model_version="v1", model_hash="m" * 64, cohort="c", cohort_hash="c" * 64,
                   agreement=agreement, explanation="useful", corrected_label=None, note=note, flag_board=False)


def test_a_reader_exports_only_their_own_verdicts(tmp_path):
    record = Record(tmp_path / "ws")
    a, b = Identity("dr-a", "radiologist"), Identity("dr-b", "radiologist")
    record.record_verdict(a, _verdict("k1", "agree", "clear case"), secret="s" * 32)
    record.record_verdict(b, _verdict("k1", "disagree", "missed nodule, see apex"), secret="s" * 32)
    mine = pd.read_csv(__import__("io").StringIO(record.verdicts_csv(a, model_hash="m" * 64)))
    assert set(mine["reader"]) == {"dr-a"} and "missed nodule" not in mine.to_csv()
    for everyone in (Identity("ops", "admin"), Identity("dev", "developer")):
        frame = pd.read_csv(__import__("io").StringIO(record.verdicts_csv(everyone)))
        assert set(frame["reader"]) == {"dr-a", "dr-b"}
    text = record.export_verdicts(b)
    assert "clear case" not in text and "missed nodule" in text
    with pytest.raises(Exception, match="does not export case-level verdicts"):
        record.verdicts_csv(Identity("chair", "board"))


# -- a DICOM folder does not follow links out of it ------------------------------------------------------------
def test_a_dicom_folder_cohort_does_not_follow_a_link_out_of_its_folder(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    from data_adapters.dicom_folder import load_dicom_folder

    folder, outside = tmp_path / "cohort", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    for where, uid in ((folder / "in.dcm", "1.2.3.1"), (outside / "secret.dcm", "1.2.3.2")):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID, ds.SeriesInstanceUID = uid, uid + ".9"
        ds.save_as(where)
    (folder / "link.dcm").symlink_to(outside / "secret.dcm")
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)
    cohort = load_dicom_folder(folder, salt="k" * 32)
    assert len(cohort) == 1 and cohort.cases[0].image == folder / "in.dcm"
    reasons = [r.reason for r in cohort.report.rejections]
    assert any("link.dcm: a link to a file outside the cohort's folder" in r for r in reasons), reasons
    assert all(Path(os.path.realpath(c.image)).is_relative_to(folder) for c in cohort.cases)


# -- explain's default --out ------------------------------------------------------------------------------------------
def test_explains_default_file_name_from_a_case_id_stays_in_the_working_folder(tmp_path, monkeypatch, capsys):
    from workspace.cli import main

    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    root = tmp_path / "ws"
    random_png_cohort(root / "cohorts" / "c", 2, size=12, n_classes=2)
    manifest = root / "cohorts" / "c" / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("k0,", "../../escape_case,"))
    torchscript_binary_model(root / "models" / "m", 12)
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    code = main(["explain", "--model", str(root / "models" / "m"), "--cohort", str(manifest), "--case",
                 "../../escape_case", "--method", "saliency", "--workspace", str(root)])
    out = capsys.readouterr()
    assert code == 0, out
    assert not list(tmp_path.glob("escape_case*")) and not list((tmp_path / "a").glob("escape_case*")), \
        "nothing written above the working folder"
    written = list(here.glob("*.npy"))
    assert len(written) == 1 and written[0].name.startswith("escape_case-") and written[0].parent == here
    assert np.load(written[0]).shape == (1, 12, 12)


# -- Markdown from files is text ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["![x](http://127.0.0.1:9/beacon.png)", "[sign in again](http://phish.example)",
                                  ":red[urgent] :material/warning:", "$\\frac{1}{0}$", "<img src=x onerror=alert(1)>",
                                  "# heading\n- item", "- a list", "3) three",
                                  "www.phish.example/x", "see http://x.example", "**bold** _it_ `code` ~~gone~~"])
def test_md_escapes_every_markdown_construct(text):
    """CommonMark (§2.4): any ASCII punctuation character may be backslash-escaped and then renders as itself. So
    ``md`` is right when every character that can open a construct (image, link, emphasis, code, HTML, Streamlit's
    ``:colour[]`` directives, ``$`` formulas, headings) is escaped, no bare URL or list marker is left, and removing
    the escapes (what the renderer shows) gives the text back, on one line."""
    escaped = md(text)
    triggers = set("\\`*_{}[]<>!~$|#")
    i, shown = 0, []
    while i < len(escaped):
        ch = escaped[i]
        if ch == "\\":
            assert i + 1 < len(escaped) and escaped[i + 1] in triggers | set("/.-+)"), escaped
            shown.append(escaped[i + 1])
            i += 2
            continue
        assert ch not in triggers, f"unescaped {ch!r} in {escaped!r}"
        shown.append(ch)
        i += 1
    assert "".join(shown) == " ".join(text.splitlines()), "shown as written"
    assert "://" not in escaped and "www." not in escaped.lower(), "no autolink"
    assert not re.match(r"\s*([-+]|\d+[.)])\s", escaped) and "\n" not in escaped, "no list item, no new line"


def test_md_leaves_plain_text_as_it_reads():
    assert md("i0.png: file not found") == "i0.png: file not found"
    assert md("v2 · 83.0% (site A)") == "v2 · 83.0% (site A)"
    assert md("- item") == "\\- item" and md("1. first") == "1\\. first"


#: an image or a link in Markdown source that is not escaped (what makes a browser fetch or a reader click)
LIVE = re.compile(r"(?<!\\)!\[|(?<!\\)\[[^\]]*(?<!\\)\]\(|(?<![\\/])https?://")


def test_markdown_in_a_model_card_and_class_names_renders_as_text(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_AUTH", "single")
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    root = tmp_path / "ws"
    beacon, phish = "![x](http://127.0.0.1:9/beacon.png)", "[sign in again](http://phish.example/login)"
    assert LIVE.search(beacon) and LIVE.search(phish), "the pattern finds the raw attack"
    random_png_cohort(root / "cohorts" / "c", 4, size=12, n_classes=2)
    folder = torchscript_binary_model(root / "models" / "m", 12)
    spec_file = folder / "model.json" if folder.is_dir() else folder
    spec = json.loads(spec_file.read_text())
    spec["name"] = f"lesion {beacon}"
    spec["class_names"] = ["no lesion", f"lesion {beacon}"]
    spec["card"] = {"intended_use": beacon, "training_data": phish, "limitations": [phish, ":red[urgent]"],
                    "owner": beacon}
    spec_file.write_text(json.dumps(spec))
    allow(root)
    at = AppTest.from_file(str(ROOT / "pages" / "home.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(root)
    at.run()
    assert not at.exception, at.exception
    texts = [e.value for kind in ("markdown", "caption", "info", "warning", "success", "error", "subheader", "title")
             for e in getattr(at, kind)]
    assert any("beacon" in t for t in texts), "the card is shown"
    live = [t for t in texts if LIVE.search(t)]
    assert not live, live
    assert not any(":red[" in t for t in texts), "no colour directive from a file"


def test_a_users_file_of_the_previous_version_is_migrated_and_keeps_its_accounts(tmp_path):
    import sqlite3

    old = tmp_path / "users.sqlite"
    db = sqlite3.connect(old)
    db.executescript("""CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT,
                            active INTEGER NOT NULL DEFAULT 1, created TEXT NOT NULL);
                        CREATE TABLE failures (name TEXT NOT NULL, at TEXT NOT NULL);
                        INSERT INTO users VALUES ('alice', 'board', NULL, 1, '2026-01-01');""")
    db.commit()
    db.close()
    users = Users(old)
    who = users.refresh(Identity("alice", "board"))
    assert who is not None and who.epoch == 0
    users.set_role("alice", "admin")
    assert users.refresh(who) is None, "the change ends the session that signed in before it"
    assert Users(old).refresh(Identity("alice", "admin")).epoch == 1


def test_figures_never_draw_a_link_or_styled_text_from_data():
    """A group named with a Plotly link renders as text: the link tag is escaped in trace names, categories, hover
    text and titles alike, and Glassbox's own markup (<b>, <br>) is kept."""
    import plotly.graph_objects as go

    from evaluation.figures import forest_plot, plain_figure

    evil = '<a href="http://phish.example">Site A</a>'
    table = pd.DataFrame({"group": ["overall", evil, "B"], "n": [60, 30, 30], "sensitivity": [0.8, 0.7, 0.9],
                          "sensitivity_lo": [0.7, 0.5, 0.8], "sensitivity_hi": [0.9, 0.85, 0.97], "small": False})
    fig = plain_figure(forest_plot(table, "sensitivity", title=f"<b>Sensitivity</b> by {evil}"))
    text = json.dumps(fig.to_plotly_json(), default=str)
    assert "<a href" not in text and "&lt;a href" in text
    assert "&lt;/a" in text
    assert "<b>Sensitivity</b>" in text
    raw = go.Figure(go.Bar(x=[evil], y=[1], name='<span style="color:red">x</span>', hovertext=[evil]))
    dump = lambda f: json.dumps(f.to_plotly_json(), default=str)  # noqa: E731
    assert "<span" in dump(raw) and "<span" not in dump(plain_figure(raw))
    assert plain_figure(raw).data[0].x[0] == "&lt;a href=\"http://phish.example\">Site A&lt;/a>"
