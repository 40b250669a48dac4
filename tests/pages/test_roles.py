"""Every role through every page (AppTest), the sign-in form, and a radiologist's verdict recorded through Case review
and found again in the worklist, the record and the audit log."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from pages._navigation import TITLES
from tests.pages.test_pages import ROOT, TIMEOUT, allow, table
from workspace.access import PAGES, ROLES, Identity, Users
from workspace.review import Record


@pytest.fixture
def local_auth(monkeypatch, tmp_path):
    """A server that asks for sign-in (``glassbox serve --auth local``), with its own users file (sessions are
    re-read from their accounts on every run, so each test's accounts live in it)."""
    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))


def account(name: str, role: str) -> Identity:
    """An active account ``name`` with ``role`` in the current users file (made or changed), as a session holds it
    once signed in."""
    users = Users()
    if users.exists(name):
        users.set_role(name, role)
        users.set_active(name, True)
    else:
        users.add(name, role, None)
    return users.refresh(Identity(name, role))


def as_role(name: str, workspace, role: str, **state) -> AppTest:
    allow(workspace)
    at = AppTest.from_file(str(ROOT / name), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(workspace)
    at.session_state["_identity"] = account(f"{role}-1", role)
    for k, v in {"model": "v2", "cohort": "demo2d", **state}.items():
        at.session_state[k] = v
    return at.run()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page_name", list(PAGES))
def test_every_role_through_every_page(demo_root, local_auth, role, page_name):
    at = as_role(f"pages/{page_name}.py", demo_root, role)
    assert not at.exception, at.exception
    refused = [e.value for e in at.error if "is not open to the" in e.value]
    if role in PAGES[page_name]:
        assert not refused, f"{role} should open {page_name}"
        assert at.title and "sign in" not in at.title[0].value
    else:
        assert refused == [f"{TITLES[page_name]} is not open to the {role} role (it is open to: "
                           f"{', '.join(PAGES[page_name])})."]
        assert not at.get("plotly_chart") and not at.dataframe, "nothing is drawn before the role check"


def test_nobody_signed_in_gets_the_sign_in_form_and_a_wrong_password_is_logged(demo_root, local_auth, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))
    Users().add("alice", "radiologist", "correct horse battery")
    allow(demo_root)
    # each page asks for sign-in itself (the app's router does too; the browser test signs in through it)
    at = AppTest.from_file(str(ROOT / "pages" / "home.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(demo_root)
    at.run()
    assert not at.exception and at.title[0].value == "Glassbox · sign in"
    assert not at.get("plotly_chart") and not at.dataframe
    at.text_input(key="sign_in_name").set_value("alice")
    at.text_input(key="sign_in_password").set_value("wrong password!")
    at.button[0].click().run()
    assert "Not signed in" in at.error[0].value
    last = Record(demo_root).audit().iloc[-1]
    assert last["action"] == "sign_in_failed" and last["actor"] == "alice" and last["role"] == "none"
    assert "wrong password" not in Record(demo_root).audit().to_csv()
    at.text_input(key="sign_in_password").set_value("correct horse battery")
    at.button[0].click().run()
    assert not at.exception and at.title[0].value == "Glassbox"
    assert Record(demo_root).audit()["action"].tolist()[-2:] == ["sign_in", "opened"]
    assert Record(demo_root).audit().iloc[-1]["actor"] == "alice"


def test_single_user_mode_says_so(demo_root):
    allow(demo_root)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(demo_root)
    at.run()
    assert not at.exception and at.title[0].value == "Glassbox"
    assert any("Single-user local mode" in c.value for c in at.sidebar.caption)


def _verdict_form(at: AppTest, name: str):
    return next(w for w in getattr(at, name.split(":")[0]) if w.key and w.key.startswith(name.split(":")[1]))


def test_a_radiologist_records_a_verdict_and_finds_it_again(demo_root, local_auth):
    at = as_role("pages/case_review.py", demo_root, "radiologist", model="v1")
    assert not at.exception and not at.error
    case_id = at.selectbox(key="review_case").value
    _verdict_form(at, "radio:verdict_agreement_").set_value("disagree")
    _verdict_form(at, "radio:verdict_explanation_").set_value("misleading")
    _verdict_form(at, "selectbox:verdict_label_").set_value("no lesion")
    _verdict_form(at, "text_area:verdict_note_").set_value("marker in corner, no lesion seen")
    _verdict_form(at, "checkbox:verdict_flag_").check()
    next(b for b in at.button if b.label == "Record, next").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="review_case").value != case_id, "record and open next moves on"
    assert any(f"case {case_id}, **disagree**" in s.value for s in at.success), "confirmed after it was stored"
    stored = Record(demo_root).verdicts(reader="radiologist-1").iloc[-1]
    assert (stored["case_id"], stored["agreement"], stored["explanation"], stored["corrected_label"],
            bool(stored["flag_board"]), stored["model_version"]) == (case_id, "disagree", "misleading", "no lesion",
                                                                      True, "v1")
    worklist = table(at, "case_id", "status", "reviews")
    assert worklist.set_index("case_id").loc[case_id, "status"] == "disagree"
    at.selectbox(key="review_preset_list").set_value("not yet reviewed").run()
    assert case_id not in table(at, "case_id", "status")["case_id"].tolist()
    entry = Record(demo_root).audit(action="verdict").iloc[-1]
    assert entry["actor"] == "radiologist-1" and case_id not in entry["objects"]
    assert json.loads(entry["objects"])["agreement"] == "disagree"
    assert Record(demo_root).verify().ok


def test_a_note_with_an_identifier_is_refused_and_kept_in_the_box(demo_root, local_auth):
    at = as_role("pages/case_review.py", demo_root, "radiologist", model="v1")
    before = len(Record(demo_root).verdicts(history=True))
    _verdict_form(at, "radio:verdict_agreement_").set_value("agree")
    _verdict_form(at, "text_area:verdict_note_").set_value("pt DOE^JANE, MRN 4821337")
    next(b for b in at.button if b.label == "Record verdict").click().run()
    assert any("Not recorded: the note seems to hold" in e.value for e in at.error)
    assert _verdict_form(at, "text_area:verdict_note_").value == "pt DOE^JANE, MRN 4821337"
    assert len(Record(demo_root).verdicts(history=True)) == before


def test_a_developer_reads_cases_but_records_no_verdict(demo_root, local_auth):
    at = as_role("pages/case_review.py", demo_root, "developer")
    assert not at.exception
    assert not [b for b in at.button if b.label.startswith("Record")]
    assert any("The developer role does not record verdicts" in c.value for c in at.caption)


def test_a_board_member_sees_suppressed_groups_and_no_case(demo_root, local_auth, monkeypatch):
    monkeypatch.setenv("GLASSBOX_BOARD_K", "300")
    at = as_role("pages/home.py", demo_root, "board", home_group_by="site")
    counts = table(at, "site", "n")
    assert (counts["n"] == "<300").any() and all(n == "<300" or int(n) >= 300 for n in counts["n"])
    at = as_role("pages/subgroups.py", demo_root, "board", sub_by=["site"])
    assert not at.exception
    assert at.toggle(key="sub_board_fixed").value is True and at.number_input(key="sub_k_board").min == 300
    at = as_role("pages/agreement.py", demo_root, "board")
    assert not at.exception
    assert not any("case_id" in d.value.columns for d in at.dataframe), "no case-level rows for the board"


def test_the_audit_page_shows_the_log_and_its_check(demo_root, local_auth):
    Record(demo_root).log(Identity("admin-1", "admin"), "settings_changed", setting="k", value=10)
    at = as_role("pages/audit.py", demo_root, "admin")
    assert not at.exception
    assert at.success[0].value.startswith("Audit log intact")
    at.selectbox(key="audit_action").set_value("settings_changed").run()
    shown = table(at, "seq", "action")
    assert set(shown["action"]) == {"settings_changed"}


def test_volume_hover_reads_hounsfield_units_and_the_projection_shows_the_truth(demo_root, local_auth):
    at = as_role("pages/case_review.py", demo_root, "radiologist", model="ct3d-v1", cohort="demo3d",
                 review_label=[1], review_methods=["saliency"])
    assert not at.exception
    assert any(s.label == "Window (HU)" for s in at.slider) and any(s.label == "Level (HU)" for s in at.slider)
    figures = [json.loads(f.proto.spec) for f in at.get("plotly_chart")]
    image_hover = figures[0]["data"][0]["hovertemplate"]
    assert "HU" in image_hover and "customdata" in image_hover
    projection = figures[1]
    assert any(t.get("type") == "contour" for t in projection["data"]), "ground truth drawn on the projection"


def test_focus_mode_draws_one_large_view_and_a_strip(demo_root, local_auth):
    at = as_role("pages/case_review.py", demo_root, "radiologist", review_layout="focus",
                 review_methods=["grad_cam", "saliency"])
    assert not at.exception and not at.error
    figures = [json.loads(f.proto.spec) for f in at.get("plotly_chart")]
    heights = sorted(f["layout"]["height"] for f in figures)
    assert heights == [200, 200, 640], "one large view, the image and the other method beneath"
    bars = [t for f in figures for t in f["data"] if t.get("type") == "heatmap" and t.get("showscale")]
    assert len(bars) == 1, "one colour bar for every map"



def test_an_export_is_recorded_with_its_rows_and_hash(demo_root):
    import hashlib

    record = Record(demo_root)
    text = "group,n\noverall,720\n"
    record.log_export(Identity("developer-1", "developer"), "subgroup table", text)
    last = record.audit(action="export").iloc[-1]
    assert last["actor"] == "developer-1"
    assert json.loads(last["objects"]) == {"what": "subgroup table", "rows": 1,
                                           "content": hashlib.sha256(text.encode()).hexdigest()[:16]}


def test_a_suppressed_group_appears_nowhere_in_the_board_view(demo_root, local_auth):
    """The issue's leak: a group under k hidden in the table but named in the ROC legend, the gap banner and the gap
    table, and derivable from the total. Every element of the page is scanned for the hidden groups."""
    from evaluation.suppression import suppression

    at = as_role("pages/subgroups.py", demo_root, "developer", sub_by=["site"], sub_split=["test"])
    sizes = table(at, "group", "n").set_index("group")["n"].drop("overall")
    k = int(sizes.min()) + 1  # exactly one group under k: one more is hidden so the total does not give it away
    hidden = suppression(sizes.to_dict(), k).hidden
    assert len(hidden) == 2
    at = as_role("pages/subgroups.py", demo_root, "board", sub_by=["site"], sub_split=["test"], sub_k_board=k)
    assert not at.exception
    hide = suppression(sizes.to_dict(), k)
    shown = table(at, "group", "n").set_index("group")
    for g in hidden:  # the row says the group exists, and nothing else about it
        assert set(shown.loc[g].drop("notes")) == {f"<{k}"} and shown.loc[g, "notes"].startswith("suppressed")
    texts = [e.value for kind in ("warning", "caption", "markdown", "info", "success") for e in getattr(at, kind)]
    texts += [json.dumps(json.loads(f.proto.spec)["data"]) for f in at.get("plotly_chart")]  # legends, hovers
    texts += [d.value.to_csv() for d in at.dataframe if "notes" not in d.value.columns]  # gaps and the rest
    leaks = [t for t in texts if hide.names_hidden(t)]
    assert not leaks, leaks
    assert not [s.value for s in at.success if "gap(s) whose interval excludes zero" in s.value], \
        "no banner counts gaps the board cannot see"
    assert any(f"{len(hidden) - 1} more so that" in t for t in texts), "the complementary suppression is stated"


# -- sessions follow the account ---------------------------------------------------------------------------------
def test_a_disabled_radiologist_records_no_verdict_after_the_disable(demo_root, local_auth):
    at = as_role("pages/case_review.py", demo_root, "radiologist", model="v1")
    assert not at.exception and not at.error
    before = len(Record(demo_root).verdicts(history=True))
    Users().set_active("radiologist-1", False)  # the operator: glassbox user disable radiologist-1
    _verdict_form(at, "radio:verdict_agreement_").set_value("agree")
    next(b for b in at.button if b.label == "Record verdict").click().run()
    assert not at.exception
    assert len(Record(demo_root).verdicts(history=True)) == before, "nothing recorded after the disable"
    assert at.title[0].value == "Glassbox · sign in" and any("You were signed out" in w.value for w in at.warning)
    ended = Record(demo_root).audit(action="session_ended").iloc[-1]
    assert ended["actor"] == "radiologist-1"


def test_a_demoted_admin_no_longer_opens_the_audit_log(demo_root, local_auth):
    at = as_role("pages/audit.py", demo_root, "admin")
    assert not at.exception and at.dataframe, "the admin sees the log"
    Users().set_role("admin-1", "developer")  # glassbox user role admin-1 --role developer
    at.run()
    assert not at.exception
    assert not at.dataframe and at.title[0].value == "Glassbox · sign in", "the old session shows nothing"


def test_a_password_change_ends_open_sessions_and_an_unchanged_account_keeps_its_own(demo_root, local_auth):
    at = as_role("pages/agreement.py", demo_root, "radiologist")
    at.run()
    assert at.title[0].value != "Glassbox · sign in", "an unchanged account stays signed in across runs"
    Users().set_password("radiologist-1", "a brand new password")
    at.run()
    assert at.title[0].value == "Glassbox · sign in"


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="sign_in_name").set_value(name)
    at.text_input(key="sign_in_password").set_value(password)
    return at.button[0].click().run()


def test_a_password_typed_as_the_user_name_is_never_stored_and_failures_are_aggregated(demo_root, local_auth,
                                                                                      monkeypatch):
    import workspace.access as access

    monkeypatch.setattr(access, "BACKOFF_S", 0.0)  # no wait, so that every attempt is a failure to log
    Users().add("alice", "radiologist", "correct horse battery")
    allow(demo_root)
    at = AppTest.from_file(str(ROOT / "pages" / "home.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = str(demo_root)
    at.run()
    before = len(Record(demo_root).audit())
    secret_text = "correct horse battery"  # typed into the user-name box by mistake
    attempts = 12
    for _ in range(attempts):
        _sign_in(at, secret_text, "x")
    log = Record(demo_root).audit().iloc[before:]
    failed = log[log["action"] == "sign_in_failed"]
    assert secret_text not in log.to_csv() and secret_text.encode() not in Users().path.read_bytes()
    assert set(failed["actor"]) == {failed["actor"].iloc[0]} and failed["actor"].iloc[0].startswith("unknown user #")
    # the 1st, 2nd, 4th and 8th failure are entries: 4 for 12 attempts (one entry per attempt before)
    assert [json.loads(o)["attempts"] for o in failed["objects"]] == [1, 2, 4, 8]
    assert len(failed) < attempts


def test_a_strangers_failures_do_not_lock_the_owner_out_and_slow_the_stranger(demo_root, local_auth):
    users = Users()
    users.add("alice", "radiologist", "correct horse battery")
    assert users.authenticate("alice", "correct horse battery", "alice-browser", "local") is not None
    for _ in range(30):  # a stranger on the same loopback guesses, with a fresh cookie every few tries
        users.authenticate("alice", "guess guess guess", f"stranger-{_ // 5}", "local")
    assert users.locked("alice", "stranger-0", "local"), "the stranger waits"
    assert users.locked("alice", "stranger-99", "local"), "a new cookie on the same network buys no new guesses"
    assert not users.locked("alice", "alice-browser", "local")
    assert users.authenticate("alice", "correct horse battery", "alice-browser", "local") is not None


def test_a_guess_spread_over_many_networks_is_bounded_per_account_but_the_owner_signs_in(tmp_path, monkeypatch):
    import workspace.access as access

    users = Users(tmp_path / "users.sqlite")
    users.add("alice", "radiologist", "correct horse battery")
    assert users.authenticate("alice", "correct horse battery", "alice-browser", "10.0.0.1") is not None
    monkeypatch.setattr(access, "MAX_ACCOUNT_FAILURES", 8)  # fewer argon2 runs than the real 50
    for i in range(8):  # one guess from each of 8 networks, each a fresh browser
        users.authenticate("alice", "guess guess guess", f"b{i}", f"192.0.2.{i}")
    assert users.locked("alice", "b-new", "198.51.100.7"), "a ninth stranger anywhere waits"
    assert not users.locked("bob", "b-new", "198.51.100.7"), "other accounts are not slowed"
    assert users.authenticate("alice", "correct horse battery", "alice-browser", "10.0.0.1") is not None
