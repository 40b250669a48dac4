"""Every record verifiable, faults without damage (issue 24): each reproduction of the issue ends in a detection, a
refusal or a named message, never "intact", a served edit, a traceback or a partial file.

Reproductions, each asserted below against the new code (the old code accepted all six silently):
1. the board's checklist answers updated, inserted or deleted in SQLite;
2. a signed report file edited ("83.0%" → "98.0%"), HTML and PDF;
3. cached predictions edited (p → 1 − p), and maps, shards, embeddings, concept vectors;
4. a cohort table with labels flipped and an image path pointing outside the data roots;
5. a missing or garbage audit head file; a file that is not SQLite where the record should be;
6. the demo's facts after its weights were replaced.
Faults: a full disk (ENOSPC) and a read-only workspace, simulated by monkeypatching (tests run as root, so a
``chmod`` cannot make a folder read-only to them).
"""
from __future__ import annotations

import base64
import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workspace.review as review
import workspace.cache as cache
from data_adapters.hashing import MAC_FIELD, derived_key, seal_table
from workspace.keys import identifier_key, integrity_key
from data_adapters.errors import InvalidInputError, RecordError
from tests.helpers import TinyCNN, handle_for, random_png_cohort
from workspace import cli
from benchmarks.calibration.integrity import report_evidence
from workspace import report as report_lib
from workspace.access import Identity
from workspace.review import Record, Verdict
from workspace.cache import ShardStore
from workspace.monitoring import embeddings
from workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[2]
BOARD = Identity("board1", "board")
READER = Identity("dr-a", "radiologist")
SECRET = "k" * 32


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


@pytest.fixture
def record(tmp_path) -> Record:
    return Record(tmp_path, path=tmp_path / "review.sqlite")


def _answered(record: Record) -> Record:
    for q, a in (("representation", "checked against the census"), ("monitoring_plan", "monthly"),
                 ("risk_communication", "leaflet")):
        record.answer(BOARD, model_hash="m" * 64, cohort_hash="c" * 64, question=q, answer=a)
    assert record.verify().ok
    return record


# -- 1. the board's checklist ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("statement, words", [
    ("UPDATE checklist SET answer = 'no gaps found' WHERE id = 2", "checklist answer #2 (monitoring_plan) no longer "
                                                                   "matches"),
    ("UPDATE checklist SET member = 'someone-else' WHERE id = 1", "checklist answer #1"),
    ("INSERT INTO checklist (at, member, role, model_hash, cohort_hash, question, answer, open_items) VALUES "
     "('2026-01-01', 'board1', 'board', 'mmm', 'ccc', 'consent_sources', 'all consented', '')",
     "checklist answer #4 has no audit entry"),
    ("DELETE FROM checklist WHERE id = 3", "checklist answer #3 is gone"),
], ids=["answer-edited", "member-edited", "inserted", "deleted"])
def test_checklist_answers_changed_in_sqlite_are_found(record, statement, words):
    _sql(_answered(record).path, statement)
    check = record.verify()
    assert not check.ok and words in check.reason, check.reason
    assert "TAMPERED" in check.describe()


def test_checklist_entries_written_before_rows_were_hashed_still_verify_and_catch_an_edit(record):
    _answered(record)
    db = sqlite3.connect(record.path)  # an older entry: only the answer's hash, no "row"
    rows = db.execute("SELECT seq, at, actor, role, action, objects FROM audit ORDER BY seq").fetchall()
    prev = review.GENESIS
    for seq, at, actor, role, action, objects in rows:
        o = json.loads(objects)
        o.pop("row", None)
        text = json.dumps(o, sort_keys=True, separators=(",", ":"))
        digest = review._entry_hash(prev, at, actor, role, action, text)
        db.execute("UPDATE audit SET objects = ?, prev = ?, hash = ? WHERE seq = ?", (text, prev, digest, seq))
        prev = digest
    db.commit()
    db.close()
    record._write_head(len(rows), prev)
    assert record.verify().ok
    _sql(record.path, "UPDATE checklist SET answer = 'edited' WHERE id = 1")
    assert "checklist answer #1" in record.verify().reason


# -- 5. the head file and the record file ------------------------------------------------------------------------
def _with_entries(record: Record, n: int = 3) -> Record:
    for i in range(n):
        record.record_verdict(READER, Verdict(case_id=f"c{i}", model_version="v1", model_hash="m" * 64,
                                              cohort="demo", cohort_hash="h" * 64, agreement="agree"),
                              secret=SECRET)
    return record


@pytest.mark.parametrize("damage, words", [
    ("missing", "is missing"), ("garbage", "is not a Glassbox head"), ("empty-json", "is not a Glassbox head"),
    ("bad-hash", "is not a Glassbox head")])
def test_a_missing_or_garbage_head_is_a_failure_not_intact(record, damage, words):
    _with_entries(record)
    assert record.verify().ok
    if damage == "missing":
        record.head_path.unlink()
    elif damage == "garbage":
        record.head_path.write_bytes(b"\x00\xffgarbage")
    elif damage == "empty-json":
        record.head_path.write_text("{}")
    else:
        record.head_path.write_text(json.dumps({"entries": 3, "hash": "not-hex"}))
    check = record.verify()
    assert not check.ok and words in check.reason and "cut off cannot be told" in check.reason
    assert check.describe().startswith("audit log TAMPERED")


def test_an_empty_record_without_a_head_is_intact(record):
    assert record.verify().ok and record.verify().entries == 0


def test_the_head_is_kept_where_the_operator_says(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_AUDIT_HEAD", str(tmp_path / "elsewhere"))
    record = _with_entries(Record(tmp_path, path=tmp_path / "ws" / "review.sqlite"))
    assert record.head_path.parent == tmp_path / "elsewhere" and record.head_path.is_file()
    assert not (tmp_path / "ws" / "review.sqlite.head").exists()
    # a cut-off tail and a forged head beside the database: the operator's head still names it
    _sql(record.path, "DELETE FROM audit WHERE seq = 3")
    (tmp_path / "ws" / "review.sqlite.head").write_text(json.dumps({"entries": 2, "hash": "0" * 64}))
    check = record.verify()
    assert not check.ok and "newest were deleted" in check.reason
    # entries appended around Glassbox (a forged sign-off) after the head are named too
    record2 = _with_entries(Record(tmp_path, path=tmp_path / "ws2" / "review.sqlite"), 2)
    db = sqlite3.connect(record2.path)
    last = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0]
    text = json.dumps({"report": "r" * 64})
    digest = review._entry_hash(last, "2026-01-01", "board1", "board", "sign_off", text)
    db.execute("INSERT INTO audit VALUES (3, '2026-01-01', 'board1', 'board', 'sign_off', ?, ?, ?)",
               (text, last, digest))
    db.commit()
    db.close()
    assert "not in the head file" in record2.verify().reason


def test_a_file_that_is_not_sqlite_is_named(tmp_path, monkeypatch, capsys):
    path = tmp_path / "review.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RecordError, match="is not a readable SQLite review record"):
        Record(tmp_path, path=path)
    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    bad = review.record_path(tmp_path / "ws")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00" * 4096 + b"garbage")
    assert cli.main(["audit", "verify", "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert "is not a readable SQLite review record" in err and "Traceback" not in err


def test_a_read_only_record_verifies_and_exports_but_refuses_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    _with_entries(Record(tmp_path / "ws"))
    monkeypatch.setattr(review, "_writable", lambda _path: False)
    review._READY.clear()
    ro = Record(tmp_path / "ws")
    assert ro.read_only and ro.verify().ok and len(ro.verdicts()) == 3
    with pytest.raises(RecordError, match="read-only"):
        ro.log(READER, "sign_in")
    assert cli.main(["audit", "verify", "--workspace", str(tmp_path / "ws")]) == 0
    assert "audit log intact: 3 entries" in capsys.readouterr().out
    assert cli.main(["audit", "export", "--workspace", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr()
    assert "verdict" in out.out and "not itself recorded" in out.err
    with pytest.raises(RecordError, match="no review record at .* read-only"):
        Record(tmp_path / "other")


# -- 3. caches carry a keyed MAC ---------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path):
    return random_png_cohort(tmp_path / "cohort", 6, seed=1)


def test_edited_predictions_are_discarded_recomputed_and_logged(tmp_path, small, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    first = ws.predictions(handle, small).frame
    path = ws.prediction_path(handle, small)
    table = pq.read_table(path)
    edited = first.copy()
    edited[["p_0", "p_1", "p_2"]] = 1 - edited[["p_0", "p_1", "p_2"]].to_numpy()
    # the attacker keeps the file's metadata (its MAC), or writes a fresh file without one: both are caught
    for write in (lambda: pq.write_table(pa.Table.from_pandas(edited, preserve_index=False)
                                         .replace_schema_metadata(table.schema.metadata), path),
                  lambda: edited.to_parquet(path, index=False)):
        write()
        caplog.clear()
        with caplog.at_level("WARNING", logger="glassbox.cache"):
            again = ws.predictions(handle, small).frame
        assert "keyed MAC does not match" in caplog.text
        np.testing.assert_allclose(again[["p_0", "p_1", "p_2"]], first[["p_0", "p_1", "p_2"]])
    # a table sealed under another operator's secret is not served either
    other = pa.Table.from_pandas(edited, preserve_index=False)
    pq.write_table(seal_table(other, derived_key("another operator's secret", "cache-mac")), path)
    np.testing.assert_allclose(ws.predictions(handle, small).frame[["p_0"]], first[["p_0"]])


def test_a_map_with_a_recomputed_digest_is_still_caught_by_its_mac(tmp_path, small, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    cases = list(small.cases[:2])
    fresh = ws.attributions(handle, cases, "saliency", 1)
    path = sorted((ws.cache / "attributions").rglob("*.npz"))[0]
    with np.load(path) as z:
        array, meta = -z["array"], json.loads(str(z["meta"]))
    meta["sha256"] = cache.digest(array)  # the digest is public: an attacker recomputes it
    with open(path, "wb") as f:
        np.savez(f, array=array, meta=np.array(json.dumps(meta)))
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = ws.attributions(handle, cases, "saliency", 1)
    assert "keyed MAC does not match" in caplog.text
    for a, b in zip(fresh, again):
        np.testing.assert_allclose(a.array, b.array, rtol=1e-4, atol=1e-9)


def test_a_shard_with_edited_rows_is_not_read(tmp_path, small, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    maps = Workspace(tmp_path / "ws").attributions(handle, list(small.cases[:2]), "saliency", 1)
    shards = ShardStore(tmp_path / "shards")
    meta = shards.write("s0", maps, ["k0", "k1"])
    assert shards.read("k0", maps[0].case_id) is not None
    body = json.loads(meta.read_text())
    np.save(tmp_path / "shards" / "s0.npy", -np.load(tmp_path / "shards" / "s0.npy"))
    body["rows"][0]["sha256"] = cache.digest(-maps[0].array)
    meta.write_text(json.dumps(body))
    os.utime(meta, ns=(1, 1))  # the index notices the change by modification time
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        assert shards.read("k0", maps[0].case_id) is None
    assert "keyed MAC does not match" in caplog.text


# -- 4. the cohort table ----------------------------------------------------------------------------------------
def _cohort_table(ws: Workspace) -> Path:
    (table,) = sorted((ws.cache / "cohorts").glob("*.parquet"))
    return table


def test_a_cohort_table_with_flipped_labels_is_rebuilt_and_keeps_the_manifests_hash(tmp_path, caplog):
    random_png_cohort(tmp_path / "ws" / "cohorts" / "c", 80, seed=2, n_classes=2)
    ws = Workspace(tmp_path / "ws")
    manifest = ws.cohort_paths()["c"]
    first = ws.load_cohort(manifest)
    path = _cohort_table(ws)
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.loc[:66, "label"] = 1 - frame.loc[:66, "label"]  # 67 labels flipped, metadata (and its hash) kept
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False)
                   .replace_schema_metadata(table.schema.metadata), path)
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = ws.load_cohort(manifest)
    assert "keyed MAC does not match" in caplog.text
    assert again.content_hash == first.content_hash
    assert [c.label for c in again.cases] == [c.label for c in first.cases]
    # the manifest itself edited the same way: a new content hash (labels are in it)
    text = manifest.read_text().splitlines()
    flipped = [text[0]] + [",".join([*r.split(",")[:2], str(1 - int(r.split(",")[2])), r.split(",")[3]])
                           if i < 67 else r for i, r in enumerate(text[1:])]
    manifest.write_text("\n".join(flipped) + "\n")
    assert ws.load_cohort(manifest).content_hash != first.content_hash


def test_a_cohort_table_path_pointing_outside_the_data_roots_is_not_followed(tmp_path, caplog):
    random_png_cohort(tmp_path / "ws" / "cohorts" / "c", 4, seed=3, n_classes=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = Workspace(tmp_path / "ws")
    manifest = ws.cohort_paths()["c"]
    first = ws.load_cohort(manifest)
    path = _cohort_table(ws)
    frame = pq.read_table(path).to_pandas()
    secret = outside / "other.png"
    shutil.copyfile(first.cases[0].image, secret)
    frame.loc[0, "image"] = str(secret)
    st = secret.stat()
    frame.loc[0, "_image_size"], frame.loc[0, "_image_mtime"] = st.st_size, st.st_mtime_ns
    # even with a valid MAC (an attacker holding the key), the path is checked against the roots on open
    from data_adapters.cohort import _table_seal

    text = pq.read_table(path).schema.metadata[b"glassbox"]
    sealed = pa.Table.from_pandas(frame, preserve_index=False)
    key = integrity_key()
    sealed = sealed.replace_schema_metadata({**sealed.schema.metadata, b"glassbox": text,
                                             MAC_FIELD: _table_seal(sealed, text, key).encode()})
    pq.write_table(sealed, path)
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = ws.load_cohort(manifest)
    assert "outside the data roots" in caplog.text
    assert again.cases[0].image != secret and again.cases[0].image.is_relative_to(manifest.parent.resolve())


def test_a_cohort_table_of_the_older_layout_is_rebuilt_cleanly(tmp_path):
    random_png_cohort(tmp_path / "ws" / "cohorts" / "c", 4, seed=4, n_classes=2)
    ws = Workspace(tmp_path / "ws")
    manifest = ws.cohort_paths()["c"]
    first = ws.load_cohort(manifest)
    path = _cohort_table(ws)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"glassbox"])
    meta["format"] = "glassbox-cohort-table-1"
    pq.write_table(table.replace_schema_metadata({b"glassbox": json.dumps(meta).encode()}), path)
    assert ws.load_cohort(manifest).content_hash == first.content_hash
    assert json.loads(pq.read_table(path).schema.metadata[b"glassbox"])["format"] == "glassbox-cohort-table-2"


# -- faults: a full disk and a read-only workspace ----------------------------------------------------------------
def _full_disk(monkeypatch):
    real = os.replace

    def no_space(src, dst):  # the data was written to the temp file; the disk filled before the rename
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", no_space)
    return real


def test_a_full_disk_is_named_and_leaves_the_old_file_intact_and_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "table.csv"
    out.write_text("old,content\n")
    _full_disk(monkeypatch)
    with pytest.raises(RecordError, match="could not be written: the disk is full"):
        cache.write_file(out, "new,content\n" * 1000)
    assert out.read_text() == "old,content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_write_that_fails_midway_leaves_no_partial_file(tmp_path):
    out = tmp_path / "maps.npz"
    out.write_bytes(b"old")

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RecordError, match="the disk is full"):
        cache.atomic_write(out, half)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["maps.npz"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_out_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, capsys, suffix):
    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    _with_entries(Record(tmp_path / "ws"))
    out = tmp_path / f"verdicts{suffix}"
    out.write_bytes(b"kept")
    _full_disk(monkeypatch)
    if suffix == ".csv":
        code = cli.main(["audit", "export", "--workspace", str(tmp_path / "ws"), "--out", str(out)])
    else:
        with pytest.raises(RecordError, match="the disk is full"):
            cli._write_table(pd.DataFrame({"a": [1, 2]}), out)
        code = 2
    assert code == 2 and out.read_bytes() == b"kept"
    err = capsys.readouterr().err
    assert "Traceback" not in err and (suffix != ".csv" or "the disk is full" in err)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_caches_in_a_read_only_workspace_are_computed_and_served_not_kept(tmp_path, small, monkeypatch, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    expected = ws.predictions(handle, small).frame
    shutil.rmtree(ws.cache)

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(cache.Path, "mkdir", read_only)
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        got = ws.predictions(handle, small).frame
        maps = ws.attributions(handle, list(small.cases[:2]), "saliency", 1)
    np.testing.assert_allclose(got[["p_0", "p_1", "p_2"]], expected[["p_0", "p_1", "p_2"]])
    assert len(maps) == 2 and "the file system is read-only" in caplog.text
    assert not ws.cache.exists()


def test_an_empty_secret_file_is_refused_by_name(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("\n")
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(secret))
    with pytest.raises(InvalidInputError, match=r"secret file .* holds 0 characters"):
        identifier_key()


# -- 6. the demo's facts ---------------------------------------------------------------------------------------
def test_the_demos_facts_go_stale_when_its_weights_are_replaced(tmp_path):
    from workspace.demo import DEMO_VERSION, demo_facts, demo_is_built

    weights = tmp_path / "models" / "v1" / "weights.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"the shipped weights")
    import hashlib

    (tmp_path / "demo.json").write_text(json.dumps({
        "version": DEMO_VERSION, "checks_passed": True, "weights": {"v1": {
            "sha256": hashlib.sha256(b"the shipped weights").hexdigest(), "source": "shipped"}},
        "checks": [{"sentence": "v1 relies on the marker", "holds": True, "asserted": True}]}))
    assert demo_is_built(tmp_path) and demo_facts(tmp_path)["checks"][0]["holds"]
    weights.write_bytes(b"other weights")
    facts = demo_facts(tmp_path)
    assert not demo_is_built(tmp_path) and not facts["checks_passed"]
    assert "v1's weights changed since the checks were measured" in facts["stale"][0]
    assert not any(c["holds"] for c in facts["checks"]) and "STALE" in facts["checks"][0]["sentence"]
    weights.unlink()
    assert "missing" in demo_facts(tmp_path)["stale"][0]


# -- 2. kept reports ---------------------------------------------------------------------------------------------
_evidence = report_evidence


@pytest.fixture
def signed(tmp_path):
    record = Record(tmp_path, path=tmp_path / "review.sqlite")
    data = report_lib.ReportData(evidence=_evidence(), figures={}, generated_at="now", generated_by="ops")
    record.sign_off(BOARD, data.content_hash)
    return record, data


def test_an_edited_html_report_is_named_by_section_and_line(tmp_path, signed):
    record, data = signed
    out = report_lib.write_report(data, tmp_path / "report.html", record)
    check = report_lib.verify_report(out, record)
    assert check.ok and "signed by board1 (board)" in check.describe() and "audit entry 1 holds it" in check.describe()
    text = out.read_text()
    assert "83.0%" in text and "Signed by <b>board1</b>" in text
    out.write_text(text.replace("83.0%", "98.0%"))
    check = report_lib.verify_report(out, record)
    assert not check.ok and len(check.changes) == 1
    assert "(section performance): edited" in check.changes[0] and "98.0%" in check.changes[0]


def test_a_report_without_a_seal_or_with_a_forged_one_is_not_intact(tmp_path, signed):
    record, data = signed
    out = report_lib.write_report(data, tmp_path / "report.html", record)
    text = out.read_text()
    out.write_text(re.sub(r'<meta name="glassbox-seal"[^\n]*\n', "", text))
    assert "carries no Glassbox seal" in report_lib.verify_report(out, record).changes[0]
    # the seal rewritten to match the edit: its MAC fails (the attacker lacks the operator's key)
    edited = text.replace("83.0%", "98.0%")
    body = re.sub(r'<meta name="glassbox-seal"[^\n]*\n', "", edited)
    token = re.search(r'content="([^"]+)"', text).group(1)
    seal = json.loads(base64.b64decode(token))
    seal.update(document=report_lib.hashlib.sha256(body.encode()).hexdigest(),
                lines=[report_lib._line_hash(x) for x in body.split("\n")])
    forged = base64.b64encode(json.dumps(seal).encode()).decode()
    out.write_text(edited.replace(token, forged))
    check = report_lib.verify_report(out, record)
    assert not check.ok and "MAC does not hold" in check.changes[0]


def test_a_stated_signature_that_is_not_in_the_audit_log_is_named(tmp_path, signed):
    record, data = signed
    out = report_lib.write_report(data, tmp_path / "report.html", record)
    other = Record(tmp_path, path=tmp_path / "other.sqlite")  # another workspace's record
    other.log(READER, "sign_in")
    check = report_lib.verify_report(out, other)
    assert not check.ok and "the record given is another workspace's" in check.describe()
    # the right record, its sign-off entry replaced by a sign-off of another report and the chain rebuilt after it
    mine = Record(tmp_path, path=tmp_path / "mine.sqlite")
    mine.log(READER, "sign_in")
    mine.sign_off(BOARD, data.content_hash)
    kept = report_lib.write_report(data, tmp_path / "kept.html", mine)
    assert report_lib.verify_report(kept, mine).ok
    db = sqlite3.connect(mine.path)
    prev = db.execute("SELECT hash FROM audit WHERE seq = 1").fetchone()[0]
    text = json.dumps({"report": "x" * 64})
    digest = review._entry_hash(prev, "2026-01-01", "board1", "board", "sign_off", text)
    db.execute("UPDATE audit SET at = '2026-01-01', objects = ?, hash = ? WHERE seq = 2", (text, digest))
    db.commit()
    db.close()
    mine._write_head(2, digest)
    assert mine.verify().ok, "the chain itself was rebuilt consistently"
    check = report_lib.verify_report(kept, mine)
    assert not check.ok and "NOT on record (audit entry 2 is not that sign-off)" in check.describe()


def test_cli_verify_report_exits_0_intact_and_1_naming_the_change(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    record = Record(tmp_path / "ws")
    data = report_lib.ReportData(evidence=_evidence(), figures={}, generated_at="now", generated_by="ops")
    record.sign_off(BOARD, data.content_hash)
    out = report_lib.write_report(data, tmp_path / "report.html", record)
    assert cli.main(["verify-report", str(out), "--workspace", str(tmp_path / "ws")]) == 0
    assert "report file intact" in capsys.readouterr().out
    out.write_text(out.read_text().replace("83.0%", "98.0%"))
    assert cli.main(["verify-report", str(out), "--workspace", str(tmp_path / "ws")]) == 1
    assert "line" in capsys.readouterr().out
    assert cli.main(["verify-report", str(tmp_path / "none.pdf")]) == 2
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler's pdftotext names the page and line")
def test_an_edited_pdf_report_is_named_by_page_and_line(tmp_path, signed):
    record, data = signed
    out = report_lib.write_report(data, tmp_path / "report.pdf", record)
    check = report_lib.verify_report(out, record)
    assert check.ok and check.kind == "pdf" and "audit entry 1 holds it" in check.describe()
    raw = out.read_bytes()
    assert report_lib._pdf_text_pages(raw) is not None  # readers still read the sealed file
    # any byte changed before the seal is found
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0x01
    out.write_bytes(bytes(flipped))
    assert not report_lib.verify_report(out, record).ok
    # a PDF made again with "98.0%" and the original seal appended: named by page and line
    seal = raw[raw.rindex(b"\n%GLASSBOX-SEAL "):]
    made = report_lib.pdf_bytes(report_lib.render_html(report_lib.ReportData(
        evidence=_evidence(0.98), figures={}, generated_at="now", generated_by="ops"), record))
    body = made[:made.rindex(b"\n%GLASSBOX-SEAL ")]
    xref = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", body).group(1)
    out.write_bytes(body + re.sub(rb"startxref\n\d+", b"startxref\n" + xref, seal))
    check = report_lib.verify_report(out, record)
    assert not check.ok and any("page 1" in c and "98.0%" in c for c in check.changes), check.changes


def test_a_report_written_to_a_full_disk_leaves_the_kept_one_intact(tmp_path, signed, monkeypatch):
    record, data = signed
    out = report_lib.write_report(data, tmp_path / "report.html", record)
    before = out.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(RecordError, match="the disk is full"):
        report_lib.write_report(data, out, record)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir() if "report" in p.name] == ["report.html"]


def _read_only_mount_works(folder: Path) -> bool:
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {folder} {folder} && mount -o "
                               f"remount,bind,ro {folder} && ! touch {folder}/probe"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_really_read_only_workspace_verifies_reads_and_computes_without_keeping(tmp_path):
    """A read-only bind mount (a mount namespace of its own): audit verify, cached reads and a cache miss work."""
    from tests.helpers import torchscript_binary_model

    root = tmp_path / "ws"
    random_png_cohort(root / "cohorts" / "c", 6, size=12, n_classes=2)
    torchscript_binary_model(root / "models" / "m", 12)
    if not _read_only_mount_works(root):
        pytest.skip("no mount namespace here to make a read-only workspace")
    env = {k: v for k, v in os.environ.items() if k != "GLASSBOX_RECORD_DIR"}  # the record inside the workspace
    _with_entries(Record(root, path=root / "review.sqlite"))
    from data_adapters.models import load_model

    ws = Workspace(root)  # the predictions cached before the copy was made read-only
    handle = load_model(root / "models" / "m")
    ws.predictions(handle, ws.cohort_for(handle, ws.resolve_cohort("c")))
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    commands = [["audit", "verify"], ["predict", "--model", "m", "--cohort", "c"],
                ["uncertainty", "--model", "m", "--cohort", "c", "--method", "tta", "--out", f"{tmp_path}/u.csv"]]
    program = ("import sys; from workspace.cli import main; "
               f"sys.exit(max(main([*c, '--workspace', {str(root)!r}]) for c in {commands!r}))")
    script = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && {sys.executable} -c \"{program}\""
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "audit log intact: 3 entries" in done.stdout and "k5," in done.stdout
    assert "Traceback" not in done.stderr and "the result is used without being cached" in done.stderr
    assert (tmp_path / "u.csv").is_file()
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before, "nothing was written"


FULL_DISK = r'''
import json, os, sys
from pathlib import Path
from data_adapters.errors import RecordError
from workspace.access import Identity
from workspace.cli import main
from workspace.review import Record
disk = Path(sys.argv[1])
record = Record(disk / "ws")
for i in range(5):
    record.log(Identity("dr-a", "radiologist"), "sign_in", n=i)
(disk / "audit.csv").write_text("kept\n")
fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the last byte, unbuffered
for size in (65536, 4096, 512, 1):
    try:
        while True:
            os.write(fd, b"\0" * size)
    except OSError:
        pass
os.close(fd)
out = {"export": main(["audit", "export", "--workspace", str(disk / "ws"), "--out", str(disk / "audit.csv")])}
try:
    for i in range(200):
        record.log(Identity("dr-a", "radiologist"), "sign_in", note="x" * 2000)
    out["log"] = "no error"
except RecordError as e:
    out["log"] = str(e)
out["kept"] = (disk / "audit.csv").read_text()
out["left"] = sorted(p.name for p in disk.iterdir())
os.remove(disk / "filler")
out["verify"] = Record(disk / "ws").verify().ok
print("RESULT " + json.dumps(out))
'''


def test_a_really_full_disk_names_the_failure_keeps_the_old_file_and_the_record(tmp_path):
    """A 1 MiB tmpfs filled to the last byte (a mount namespace of its own): an export, a record write."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {disk}"],
                               capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is None or probe.returncode:
        pytest.skip("no mount namespace here to make a small disk")
    env = {**os.environ, "GLASSBOX_RECORD_DIR": str(disk)}
    script = f"mount -t tmpfs -o size=1m tmpfs {disk} && {sys.executable} -c '{FULL_DISK}' {disk}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["export"] == 2 and "the disk is full" in done.stderr and "Traceback" not in done.stderr
    assert result["kept"] == "kept\n", "the earlier file is intact"
    assert not [n for n in result["left"] if ".tmp" in n], "no partial file remains"
    assert "the disk is full" in result["log"] and "nothing was saved" in result["log"]
    assert result["verify"], "the record is whole after the failed writes"


def test_an_edited_stored_threshold_is_refitted_not_served(tmp_path, caplog):
    from tests.evaluation.test_operating_point import _as_cohort, _cohort, _Fixed

    ws = _Fixed(tmp_path)
    handle = handle_for(TinyCNN(2, 1, 2), task="binary", n_classes=2)
    val, preds = _cohort(0, {"valid": 80}, seed=7)
    ws.preds = {"reference": preds}
    point = ws.operating_point(handle, _as_cohort("reference", val), 1)
    path = tmp_path / "operating_points" / f"{handle.weights_hash[:40]}.json"
    entries = json.loads(path.read_text())
    (key,) = entries
    entries[key]["threshold"] = 0.01  # every case called positive: sensitivity 1.0 in the next report
    path.write_text(json.dumps(entries))
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = ws.operating_point(handle, _as_cohort("reference", val), 1)
    assert again.threshold == point.threshold and "keyed MAC does not match" in caplog.text


def test_edited_embeddings_are_recomputed_not_served(tmp_path, small, caplog):
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    first = embeddings(ws, handle, small)
    (path,) = (ws.cache / "embeddings").glob("*.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["probabilities"] = 1 - arrays["probabilities"]
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # the old MAC kept
    with caplog.at_level("WARNING", logger="glassbox.cache"):
        again = embeddings(ws, handle, small)
    assert "keyed MAC does not match" in caplog.text
    np.testing.assert_allclose(again["probabilities"], first["probabilities"], rtol=1e-5)
    with np.load(path) as z:
        assert "mac" in z.files and np.allclose(z["probabilities"], first["probabilities"], rtol=1e-5)
