"""The review record: verdicts kept (latest wins, history never lost), an audit log whose tampering is found, accounts
with hashed passwords and roles, the worklist's presets and the reader-agreement statistics."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from data_adapters.errors import InvalidInputError
from data_adapters.identifiers import identifier_in_text
from data_adapters.tables import PredictionTable
from evaluation.reader_agreement import kappa, model_vs_reader, reader_pairs
from evaluation.worklist import WorklistFilter, neighbour, select, worklist
from workspace import cli
from workspace.access import ACTIONS, PAGES, ROLES, Identity, Users
from workspace.review import Record, Verdict, case_key

ROOT = Path(__file__).resolve().parents[2]
RADIOLOGIST = Identity("dr-a", "radiologist")
SECRET = "k" * 32


def verdict(case: str = "c1", agreement: str = "agree", **kw) -> Verdict:
    return Verdict(case_id=case, model_version="v1", model_hash="m" * 64, cohort="demo", cohort_hash="h" * 64,
                   agreement=agreement, **kw)


@pytest.fixture
def record(tmp_path) -> Record:
    return Record(tmp_path, path=tmp_path / "review.sqlite")


# -- verdicts ---------------------------------------------------------------------------------------------------
def test_a_change_of_mind_is_a_new_row_and_the_latest_wins(record):
    first = record.record_verdict(RADIOLOGIST, verdict(agreement="agree"), secret=SECRET)
    second = record.record_verdict(RADIOLOGIST, verdict(agreement="disagree", note="missed nodule"), secret=SECRET)
    record.record_verdict(Identity("dr-b", "radiologist"), verdict(agreement="unsure"), secret=SECRET)
    assert second > first
    latest = record.verdicts()
    assert len(latest) == 2
    assert latest.set_index("reader").loc["dr-a", "agreement"] == "disagree"
    history = record.verdicts(history=True)
    assert list(history["agreement"]) == ["agree", "disagree", "unsure"]  # nothing overwritten
    assert record.verify().ok


def test_only_roles_that_read_record_verdicts(record):
    for role in ("developer", "board"):
        with pytest.raises(InvalidInputError, match=f"role '{role}' does not record verdicts"):
            record.record_verdict(Identity("x", role), verdict(), secret=SECRET)
    assert record.verdicts().empty and record.audit().empty


def test_verdict_fields_are_validated_with_the_field_named():
    with pytest.raises(InvalidInputError, match="agreement must be one of agree, disagree, unsure"):
        verdict(agreement="yes")
    with pytest.raises(InvalidInputError, match="explanation must be one of"):
        verdict(explanation="great")
    with pytest.raises(InvalidInputError, match="note: 2001 characters"):
        verdict(note="x" * 2001)


def test_the_log_names_cases_only_by_keyed_hash(record):
    record.record_verdict(RADIOLOGIST, verdict(case="MRN-0048213"), secret=SECRET)
    entry = record.audit().iloc[-1]
    assert entry["action"] == "verdict" and entry["actor"] == "dr-a" and entry["role"] == "radiologist"
    assert "MRN-0048213" not in entry["objects"]
    assert json.loads(entry["objects"])["case"] == case_key("MRN-0048213", SECRET)
    assert case_key("MRN-0048213", SECRET) != case_key("MRN-0048213", "another secret")
    assert b"MRN-0048213" not in record.path.read_bytes().split(b"verdicts")[0]  # header pages only hold schema


def test_notes_that_look_like_identifiers_are_named():
    assert identifier_in_text("pt DOE^JANE seen") == "a name written the DICOM way (FAMILY^GIVEN)"
    assert identifier_in_text("MRN 4821337") == "a long number (a record or accession number?)"
    assert identifier_in_text("born 1961-04-02") == "a calendar date"
    assert identifier_in_text("call jane@example.org") == "an e-mail address"
    assert identifier_in_text("subtle RUL nodule, 8 mm, compare prior") is None


def test_export_names_provenance_and_is_itself_logged(record):
    record.record_verdict(RADIOLOGIST, verdict(note="=HYPERLINK(\"x\")"), secret=SECRET)
    text = record.export_verdicts(Identity("dev", "developer"))
    frame = pd.read_csv(pd.io.common.StringIO(text))
    assert {"model_version", "model_hash", "cohort_hash", "reader", "role", "at"} <= set(frame.columns)
    assert frame.loc[0, "note"].startswith("'=")  # a spreadsheet does not run it
    last = record.audit().iloc[-1]
    assert last["action"] == "export" and json.loads(last["objects"])["what"] == "verdicts"
    with pytest.raises(InvalidInputError, match="does not export"):
        record.export_verdicts(Identity("board-1", "board"))


# -- the audit log: tampering in every way is found --------------------------------------------------------------
def _filled(record: Record, n: int = 6) -> Record:
    for i in range(n):
        record.record_verdict(RADIOLOGIST, verdict(case=f"c{i}", agreement=("agree", "disagree")[i % 2]),
                              secret=SECRET)
    assert record.verify().ok and record.verify().entries == n
    return record


def _sql(record: Record, *statements: str) -> None:
    db = sqlite3.connect(record.path)
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


@pytest.mark.parametrize("statements, first_bad, words", [
    (["UPDATE audit SET actor = 'someone-else' WHERE seq = 3"], 3, "edited"),
    (["DELETE FROM audit WHERE seq = 4"], 4, "deleted"),
    (["DELETE FROM audit WHERE seq = 2", "UPDATE audit SET seq = seq - 1 WHERE seq > 2"], 2, "does not follow"),
    (["DELETE FROM audit WHERE seq >= 5"], 5, "newest were deleted"),  # found through the head file
], ids=["edited", "deleted", "deleted-and-renumbered", "tail-cut-off"])
def test_tampering_is_found_at_the_first_bad_entry(record, statements, first_bad, words):
    _sql(_filled(record), *statements)
    check = record.verify()
    assert not check.ok and check.first_bad == first_bad and words in check.reason


def test_reordered_entries_are_found(record):
    _filled(record)
    db = sqlite3.connect(record.path)
    a, b = (db.execute("SELECT at, actor, role, action, objects, prev, hash FROM audit WHERE seq = ?", (s,)).fetchone()
            for s in (2, 3))
    for seq, row in ((2, b), (3, a)):
        db.execute("UPDATE audit SET at=?, actor=?, role=?, action=?, objects=?, prev=?, hash=? WHERE seq=?",
                   (*row, seq))
    db.commit()
    db.close()
    check = record.verify()
    assert not check.ok and check.first_bad == 2 and "reordered" in check.reason


def test_an_edited_or_deleted_verdict_is_found_through_its_entry(record):
    _sql(_filled(record), "UPDATE verdicts SET agreement = 'agree' WHERE id = 2")
    check = record.verify()
    assert not check.ok and check.first_bad == 2 and "verdict #2" in check.reason and "edited" in check.reason
    _sql(record, "UPDATE verdicts SET agreement = 'disagree' WHERE id = 2", "DELETE FROM verdicts WHERE id = 5")
    check = record.verify()
    assert not check.ok and check.first_bad == 5 and "deleted" in check.reason


def test_cli_audit_verify_exits_1_naming_the_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    record = _filled(Record(tmp_path))
    assert cli.main(["audit", "verify", "--workspace", str(tmp_path)]) == 0
    assert "audit log intact: 6 entries" in capsys.readouterr().out
    _sql(record, "UPDATE audit SET objects = '{}' WHERE seq = 2")
    assert cli.main(["audit", "verify", "--workspace", str(tmp_path)]) == 1
    assert "TAMPERED: entry 2: its content does not match its hash (edited)" in capsys.readouterr().out


# -- never lost: concurrent sessions and a killed server ------------------------------------------------------------
def test_eight_sessions_of_200_verdicts_lose_none(record):
    def session(k: int) -> None:
        who = Identity(f"reader-{k}", "radiologist")
        for i in range(200):
            record.record_verdict(who, verdict(case=f"c{i}", agreement=("agree", "disagree", "unsure")[i % 3]),
                                  secret=SECRET)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(record.verdicts(history=True)) == 1600
    assert record.verdicts().groupby("reader").size().eq(200).all()
    check = record.verify()
    assert check.ok and check.entries == 1600


WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from workspace.access import Identity
from workspace.review import Record, Verdict
record = Record(Path({path!r}).parent, path={path!r})
who = Identity("dr-kill", "radiologist")
for i in range(100000):
    row = record.record_verdict(who, Verdict(case_id=f"c{{i}}", model_version="v1", model_hash="m" * 64,
                                cohort="demo", cohort_hash="h" * 64, agreement="agree"), secret="s")
    print(row, flush=True)  # the page confirms only after this point
"""


def test_a_killed_server_loses_no_confirmed_verdict(tmp_path):
    path = tmp_path / "review.sqlite"
    Record(tmp_path, path=path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    confirmed = []
    deadline = time.time() + 120
    while len(confirmed) < 60 and time.time() < deadline:
        confirmed.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    confirmed += [int(line) for line in proc.stdout.read().split()]  # printed before the kill landed
    stored = set(Record(tmp_path, path=path).verdicts(history=True)["id"])
    assert len(confirmed) >= 60 and set(confirmed) <= stored
    assert Record(tmp_path, path=path).verify().ok


# -- accounts and roles ------------------------------------------------------------------------------------------
def test_passwords_are_argon2_hashes_and_sign_in_checks_them(tmp_path):
    users = Users(tmp_path / "users.sqlite")
    users.add("alice", "radiologist", "correct horse battery")
    assert b"correct horse battery" not in (tmp_path / "users.sqlite").read_bytes()
    assert oct((tmp_path / "users.sqlite").stat().st_mode)[-3:] == "600"
    db = sqlite3.connect(tmp_path / "users.sqlite")
    assert db.execute("SELECT password FROM users").fetchone()[0].startswith("$argon2id$")
    assert users.authenticate("alice", "correct horse battery") == Identity("alice", "radiologist")
    assert users.authenticate("alice", "wrong password!") is None
    assert users.authenticate("nobody", "correct horse battery") is None
    users.set_active("alice", False)
    assert users.authenticate("alice", "correct horse battery") is None
    with pytest.raises(InvalidInputError, match="at least 10 characters"):
        users.add("bob", "board", "short")
    with pytest.raises(InvalidInputError, match="role must be one of radiologist, developer, board, admin"):
        users.add("bob", "chief", "long enough password")
    with pytest.raises(InvalidInputError, match="user 'alice' exists"):
        users.add("alice", "board", "long enough password")


def test_repeated_failures_lock_an_account_even_against_the_right_password(tmp_path):
    users = Users(tmp_path / "users.sqlite")
    users.add("alice", "radiologist", "correct horse battery")
    for _ in range(5):
        assert users.authenticate("alice", "guess guess guess") is None
    assert users.locked("alice")
    assert users.authenticate("alice", "correct horse battery") is None


def test_roles_open_what_the_issue_says():
    board = Identity("b", "board")
    assert not board.can("see_cases") and board.can("sign_off") and not board.can("record_verdict")
    assert not board.opens("case_review") and board.opens("subgroups") and board.opens("agreement")
    dev = Identity("d", "developer")
    assert dev.opens("compare") and not dev.can("record_verdict") and not dev.can("sign_off")
    assert Identity("r", "radiologist").can("record_verdict") and not Identity("r", "radiologist").opens("compare")
    assert [p for p in PAGES if "admin" not in PAGES[p]] == [] and PAGES["audit"] == ("admin",)
    assert all(set(roles) <= set(ROLES) for roles in (*PAGES.values(), *ACTIONS.values()))


def test_cli_user_commands_record_each_change(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    users = str(tmp_path / "users.sqlite")
    monkeypatch.setattr("sys.stdin", pd.io.common.StringIO("a long enough password\n"))
    assert cli.main(["user", "add", "alice", "--role", "radiologist", "--password-stdin", "--users", users,
                     "--workspace", str(tmp_path)]) == 0
    assert cli.main(["user", "role", "alice", "--role", "board", "--users", users, "--workspace", str(tmp_path)]) == 0
    assert cli.main(["user", "role", "carol", "--role", "board", "--users", users, "--workspace", str(tmp_path)]) == 2
    assert "no user 'carol'" in capsys.readouterr().err
    log = Record(tmp_path).audit()
    assert list(log["action"]) == ["user_added", "role_changed"]
    assert "a long enough password" not in log.to_csv()


# -- the worklist --------------------------------------------------------------------------------------------------
def _frame() -> pd.DataFrame:
    # 6 labelled cases, binary; p of class 1
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(6)], "label": [1, 1, 0, 0, 1, 0],
                         "site": list("AABBAB"), "split": ["test"] * 6,
                         "p_1": [0.95, 0.10, 0.80, 0.30, 0.55, 0.02]}).assign(p_0=lambda f: 1 - f["p_1"])


def test_worklist_presets_pick_and_order_the_right_cases():
    verdicts = pd.DataFrame({"case_id": ["c0", "c2"], "reader": ["dr-a", "dr-b"], "agreement": ["agree", "disagree"],
                             "flag_board": [False, True], "at": ["2026-01-01", "2026-01-02"]})
    other = _frame().assign(p_1=[0.95, 0.70, 0.20, 0.30, 0.55, 0.02]).assign(p_0=lambda f: 1 - f["p_1"])
    table = worklist(_frame(), class_index=1, threshold=0.5, n_classes=2, class_names=["no", "yes"],
                     uncertainty=pd.Series([0.1, 0.2, 0.9, 0.3, 0.8, 0.05], index=[f"c{i}" for i in range(6)]),
                     refer_fraction=0.34, verdicts=verdicts, reader="dr-a",
                     other=PredictionTable(other, task="binary", n_classes=2))
    ids = lambda f: list(select(table, f)["case_id"])  # noqa: E731
    # errors: c1 (FN, p 0.10: confidence 0.8), c2 (FP, p 0.80: confidence 0.6)
    assert ids(WorklistFilter(preset="most confident errors")) == ["c1", "c2"]
    assert ids(WorklistFilter(preset="referred")) == ["c2", "c4"]
    assert ids(WorklistFilter(preset="not yet reviewed")) == ["c1", "c2", "c3", "c4", "c5"]  # dr-a read c0
    assert ids(WorklistFilter(preset="flagged for the board")) == ["c2"]
    flips = select(table, WorklistFilter(preset="flips between versions"))
    assert list(flips["case_id"]) == ["c2", "c1"] and list(flips["flip"]) == ["broken", "broken"]
    assert ids(WorklistFilter(groups=(("site", ("B",)),), sort="probability", descending=True)) == ["c2", "c3", "c5"]
    assert ids(WorklistFilter(probability=(0.5, 1.0), outcomes=("correct",))) == ["c0", "c4"]
    assert table.set_index("case_id").loc["c0", "status"] == "agree"
    assert table.set_index("case_id").loc["c2", ["status", "reviews"]].tolist() == ["not reviewed", 1]
    assert neighbour(["a", "b", "c"], "b", 1) == "c" and neighbour(["a", "b", "c"], "c", 1) == "c"
    assert neighbour(["a", "b"], "zz", -1) == "a"


# -- reader agreement ----------------------------------------------------------------------------------------------
def test_kappa_equals_scikit_learn_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    a = rng.choice(["agree", "disagree", "unsure"], 80, p=[0.6, 0.3, 0.1])
    b = np.where(rng.random(80) < 0.7, a, rng.choice(["agree", "disagree", "unsure"], 80))
    assert abs(kappa(a, b)[0] - cohen_kappa_score(a, b)) < 1e-12
    verdicts = pd.DataFrame({"reader": ["r1"] * 80 + ["r2"] * 80, "case_id": [f"c{i}" for i in range(80)] * 2,
                             "model_hash": "m", "agreement": np.concatenate([a, b])})
    pairs = reader_pairs(verdicts, n_boot=400)
    row = pairs.iloc[0]
    assert abs(row["kappa"] - cohen_kappa_score(a, b)) < 1e-12 and row["cases"] == 80
    assert row["kappa_lo"] < row["kappa"] < row["kappa_hi"] and 0.3 < row["kappa"] < 0.9


def test_model_vs_reader_by_group_known_answer():
    verdicts = pd.DataFrame({"case_id": ["c0", "c1", "c2", "c3"], "reader": "r", "agreement":
                             ["agree", "agree", "disagree", "unsure"], "explanation":
                             ["useful", "misleading", "not judged", "useful"], "corrected_label": [None, None, "yes",
                                                                                                     None],
                             "flag_board": [False, False, True, False]})
    table = model_vs_reader(verdicts, _frame(), "site").set_index("group")
    assert table.loc["overall", "agree"] == 0.5 and table.loc["overall", "n"] == 4
    assert table.loc["A", "agree"] == 1.0 and table.loc["B", "agree"] == 0.0  # c0, c1 in A; c2, c3 in B
    assert table.loc["overall", "explanation_useful"] == pytest.approx(2 / 3)
    assert table.loc["B", "corrected"] == 1 and table.loc["B", "flagged"] == 1
    assert table.loc["overall", "agree_lo"] < 0.5 < table.loc["overall", "agree_hi"]
