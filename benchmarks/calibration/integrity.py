"""Integrity: what ``glassbox audit verify`` and ``glassbox verify-report`` claim, simulated with the product's own
record, report seal and caches under random tampering of the kinds an attacker with write access to the workspace
has (issue 24).

- *A tampered review record is never "intact"*: each simulation fills a record (verdicts, the board's checklist
  answers, sign-ins and a sign-off), then makes one random change: a field of a verdict, answer or audit entry
  updated, a row of any of the three tables deleted or inserted, the newest entries cut off, or the head file deleted
  or overwritten. ``Record.verify`` must fail every time (power, nominal 1).
- *An untampered record verifies* (false alarm, nominal 0), also *while it is being written*: three sessions record
  verdicts and checklist answers while ``verify`` runs again and again (each run one simulation); an entry committed
  between two reads, or before its head file moved, must not read as tampering.
- *A sealed report edited anywhere is found, and named by its line*: one random character of a random line of the
  HTML (outside the seal) changed; :func:`workspace.report.verify_report` must say not intact and name that line.
- *An untampered report verifies* (false alarm, nominal 0).
- *An edited cache value is never served*: one random probability of the cached prediction table replaced by 1 − p
  (metadata kept, or the file rewritten without a MAC); the table read back must equal the one computed.

``claims(..., old=True)`` runs the record simulations against the code before this change (``git show`` of
:data:`OLD_COMMIT`): it missed every checklist change and every lost head file.
"""
from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.calibration import Claim

#: the last commit before the checklist, the head file and reports were verified
OLD_COMMIT = "e704c9c376a532cfc6aae9294694c073badd8c40"
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 32
TAMPERS = ("verdict-edit", "verdict-delete", "verdict-insert", "answer-edit", "answer-delete", "answer-insert",
           "audit-edit", "audit-delete", "tail-cut", "head-deleted", "head-garbage")
QUESTIONS = ("representation", "monitoring_plan", "risk_communication", "consent_sources")


def _scratch(prefix: str) -> tempfile.TemporaryDirectory:
    # SQLite fsyncs every commit (synchronous=FULL): in memory where there is a tmpfs, so thousands of records are quick
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(prefix=prefix, dir=shm if shm.is_dir() else None)


def _review(old: bool):
    if not old:
        import workspace.review as review

        return review
    name = "glassbox_old_review"
    if name not in sys.modules:
        source = subprocess.run(["git", "show", f"{OLD_COMMIT}:workspace/review.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
        module = types.ModuleType(name)
        module.__file__ = f"<{OLD_COMMIT[:7]}:workspace/review.py>"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own code from git
    return sys.modules[name]


def _filled(review, folder: Path, rng: random.Random):
    from workspace.access import Identity

    record = review.Record(folder, path=folder / "review.sqlite")
    reader, board = Identity("dr-a", "radiologist"), Identity("board1", "board")
    record.log(reader, "sign_in")
    for i in range(rng.randint(3, 8)):
        record.record_verdict(reader, review.Verdict(
            case_id=f"c{i}", model_version="v1", model_hash="m" * 64, cohort="demo", cohort_hash="h" * 64,
            agreement=rng.choice(review.AGREEMENT), note=rng.choice(["", "faint", "see prior"])), secret=SECRET)
    for q in rng.sample(QUESTIONS, rng.randint(2, 4)):
        record.answer(board, model_hash="m" * 64, cohort_hash="h" * 64, question=q, answer=f"answer to {q}")
    record.sign_off(board, "r" * 64)
    return record


def _tamper(record, kind: str, rng: random.Random) -> None:
    db = sqlite3.connect(record.path)
    table = {"verdict": "verdicts", "answer": "checklist", "audit": "audit"}.get(kind.split("-")[0])
    key = "seq" if table == "audit" else "id"
    ids = [r[0] for r in db.execute(f"SELECT {key} FROM {table}")] if table else []
    target = rng.choice(ids) if ids else None
    if kind == "verdict-edit":
        column = rng.choice(["agreement", "note", "reader", "flag_board", "case_id"])
        value = {"agreement": "disagree", "note": "edited", "reader": "dr-z", "flag_board": 1, "case_id": "c99"}
        current = db.execute(f"SELECT {column} FROM verdicts WHERE id = ?", (target,)).fetchone()[0]
        new = value[column] if current != value[column] else ("agree" if column == "agreement" else 0)
        db.execute(f"UPDATE verdicts SET {column} = ? WHERE id = ?", (new, target))
    elif kind == "answer-edit":
        column = rng.choice(["answer", "open_items", "member", "question"])
        db.execute(f"UPDATE checklist SET {column} = {column} || ' (edited)' WHERE id = ?", (target,))
    elif kind == "audit-edit":
        column = rng.choice(["actor", "objects", "at", "action"])
        db.execute(f"UPDATE audit SET {column} = {column} || 'x' WHERE seq = ?", (target,))
    elif kind.endswith("-delete"):
        db.execute(f"DELETE FROM {table} WHERE {key} = ?", (target,))
    elif kind == "verdict-insert":
        db.execute("INSERT INTO verdicts (at, reader, role, case_id, model_version, model_hash, cohort, cohort_hash, "
                   "agreement, explanation, note, flag_board) SELECT at, reader, role, 'c42', model_version, "
                   "model_hash, cohort, cohort_hash, 'disagree', explanation, note, flag_board FROM verdicts "
                   "WHERE id = ?", (target,))
    elif kind == "answer-insert":
        db.execute("INSERT INTO checklist (at, member, role, model_hash, cohort_hash, question, answer, open_items) "
                   "SELECT at, member, role, model_hash, cohort_hash, question, 'no open items', '' FROM checklist "
                   "WHERE id = ?", (target,))
    elif kind == "tail-cut":
        n = db.execute("SELECT max(seq) FROM audit").fetchone()[0]
        db.execute("DELETE FROM audit WHERE seq > ?", (n - rng.randint(1, 3),))
    db.commit()
    db.close()
    if kind == "head-deleted":
        record.head_path.unlink()
    elif kind == "head-garbage":
        record.head_path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))))


def _record_claims(sims: int, seed: int, old: bool) -> list[Claim]:
    review = _review(old)
    rng = random.Random(seed)
    found = {k: 0 for k in TAMPERS}
    tried = {k: 0 for k in TAMPERS}
    clean_alarms = 0
    with _scratch("glassbox-integrity-") as tmp:
        for s in range(sims):
            folder = Path(tmp) / f"r{s}"
            folder.mkdir()
            record = _filled(review, folder, rng)
            clean_alarms += not record.verify().ok
            kind = TAMPERS[s % len(TAMPERS)]
            _tamper(record, kind, rng)
            tried[kind] += 1
            found[kind] += not record.verify().ok
    tag = " (old)" if old else ""
    detail = ", ".join(f"{k} {found[k]}/{tried[k]}" for k in TAMPERS)
    return [
        Claim(f"audit verify finds a tampered review record{tag}", "power", 1.0, sum(found.values()), sims,
              f"one random change per record of {len(TAMPERS)} kinds, cycled: {detail}"),
        Claim(f"audit verify passes an untampered record{tag}", "false alarm", 0.0, clean_alarms, sims,
              "3–8 verdicts, 2–4 checklist answers, a sign-in and a sign-off"),
    ]


def report_evidence(sensitivity: float = 0.83) -> dict:
    """A small report's evidence (what :func:`workspace.report.gather` returns), its sensitivity given."""
    from workspace import report as report_lib

    questions = report_lib.CHECKLIST["questions"]
    return {"synthetic": True, "k": 10, "split": "test", "by": [],
            "provenance": {"packages": {}, "model": {"name": "m", "version": "v", "hash": "h" * 64, "task": "binary",
                                                     "classes": ["a", "b"], "preprocessing": "x",
                                                     "card": {"intended_use": "u", "training_data": "t",
                                                              "limitations": []}},
                           "baseline": None, "cohort": {"name": "c", "hash": "c" * 64, "cases": 3, "patients": 0,
                                                        "rejected": 0, "rows": 3}},
            "cohort": {"groups": [], "rejected": []},
            "performance": {"table": [], "gaps": [], "flags": [], "suppression": "", "judgement": "j", "view": "v",
                            "resampling": "r",
                            "clinical": {"sensitivity": sensitivity, "sensitivity_ci": [0.7, 0.9],
                                         "specificity": 0.9, "prevalence": 0.2, "missed_per_1000": 30,
                                         "missed_per_1000_ci": [20.0, 42.0], "false_alarms_per_1000": 80,
                                         "false_alarms_per_1000_ci": [65.0, 97.0], "threshold": 0.5, "rule": "r",
                                         "referral": None}},
            "explanations": {"methods": [], "cases": 0, "summary": [], "words": [], "concepts": [], "examples": []},
            "reviewers": {"verdicts": 0, "readers": 0},
            "checklist": [{**q, "evidence": "e", "answer": "", "open_items": "", "answered_by": ""}
                          for q in questions]}


def _concurrent_claims(sims: int, old: bool) -> list[Claim]:
    import threading

    from workspace.access import Identity

    review = _review(old)
    stop = threading.Event()
    with _scratch("glassbox-concurrent-") as tmp:
        record = review.Record(Path(tmp), path=Path(tmp) / "review.sqlite")

        def session(k: int) -> None:
            i = 0
            while not stop.is_set():
                record.record_verdict(Identity(f"dr-{k}", "radiologist"), review.Verdict(
                    case_id=f"c{i}", model_version="v1", model_hash="m" * 64, cohort="demo", cohort_hash="h" * 64,
                    agreement="agree"), secret=SECRET)
                if i % 5 == 0:
                    record.answer(Identity(f"board-{k}", "board"), model_hash="m" * 64, cohort_hash="h" * 64,
                                  question=QUESTIONS[i % len(QUESTIONS)], answer=f"answer {i}")
                i += 1
                stop.wait(0.01)  # a busy ward, not a flood: the log stays small enough to check hundreds of times

        threads = [threading.Thread(target=session, args=(k,), daemon=True) for k in range(3)]
        for t in threads:
            t.start()
        alarms = 0
        try:
            for _ in range(sims):
                alarms += not record.verify().ok
        finally:
            stop.set()
            for t in threads:
                t.join()
        entries = len(record.audit())
    tag = " (old)" if old else ""
    return [Claim(f"audit verify passes a record while it is being written{tag}", "false alarm", 0.0, alarms, sims,
                  f"3 sessions writing verdicts and answers during the checks ({entries} entries by the end)")]


def _report_claims(sims: int, seed: int) -> list[Claim]:
    from workspace.access import Identity
    from workspace.report import ReportData, _html_seal, render_html, verify_report
    from workspace.review import Record

    rng = random.Random(seed + 1)
    named = caught = clean_alarms = 0
    with _scratch("glassbox-report-") as tmp:
        record = Record(Path(tmp), path=Path(tmp) / "review.sqlite")
        data = ReportData(evidence=report_evidence(rng.random()), figures={}, generated_at="now", generated_by="ops")
        record.sign_off(Identity("board1", "board"), data.content_hash)
        html = render_html(data, record)
        _seal, body = _html_seal(html)
        lines = html.split("\n")
        seal_line = next(i for i, x in enumerate(lines) if x.startswith('<meta name="glassbox-seal"'))
        out = Path(tmp) / "report.html"
        for _ in range(sims):
            out.write_text(html)
            clean_alarms += not verify_report(out, record).ok
            i = rng.choice([k for k, x in enumerate(lines) if k != seal_line and x.strip()])
            j = rng.randrange(len(lines[i]))
            replacement = rng.choice([c for c in "0123456789abcdefXYZ%." if c != lines[i][j]])
            edited = lines[:i] + [lines[i][:j] + replacement + lines[i][j + 1:]] + lines[i + 1:]
            out.write_text("\n".join(edited))
            check = verify_report(out, record)
            caught += not check.ok
            line_in_body = i + 1 - (i > seal_line)  # the seal line is not part of the sealed document
            named += any(c.startswith(f"line {line_in_body} ") for c in check.changes)
    design = f"one random character of a random line of a sealed {len(lines)}-line HTML report"
    return [Claim("verify-report finds an edited HTML report", "power", 1.0, caught, sims, design),
            Claim("verify-report names the edited line", "power", 1.0, named, sims, design),
            Claim("verify-report passes an untampered report", "false alarm", 0.0, clean_alarms, sims,
                  "the report as written, signed by one board member")]


def _cache_claims(sims: int, seed: int) -> list[Claim]:
    import workspace.cache as cache

    rng = np.random.default_rng(seed + 2)
    served_edit = 0
    with _scratch("glassbox-cache-") as tmp:
        path = Path(tmp) / "predictions.parquet"
        for s in range(sims):
            n = int(rng.integers(5, 200))
            p = rng.random(n)
            frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "p_0": 1 - p, "p_1": p})
            cache.atomic_write(path, lambda t: cache.write_frame(frame, t))
            meta = pq.read_schema(path).metadata
            edited = frame.copy()
            k = int(rng.integers(n))
            edited.loc[k, ["p_0", "p_1"]] = [p[k], 1 - p[k]]
            table = pa.Table.from_pandas(edited, preserve_index=False)
            pq.write_table(table.replace_schema_metadata(meta) if s % 2 == 0 else table, path)
            got = cache.cached_frame(path, lambda f=frame: f, frame["case_id"].tolist())
            served_edit += not np.allclose(got["p_1"].to_numpy(), p)
    return [Claim("an edited cached prediction is never served", "power", 1.0, sims - served_edit, sims,
                  "one probability per table set to 1 − p; MAC metadata kept (half) or dropped (half)")]


def claims(sims: int, seed: int = 0, *, old: bool = False) -> list[Claim]:
    import logging

    logging.getLogger("glassbox.cache").setLevel(logging.ERROR)  # each discarded entry warns; thousands here
    try:
        if old:
            return [*_record_claims(sims, seed, old=True), *_concurrent_claims(sims, old=True)]
        return [*_record_claims(sims, seed, old=False), *_concurrent_claims(sims, old=False),
                *_report_claims(sims, seed), *_cache_claims(sims, seed)]
    finally:
        logging.getLogger("glassbox.cache").setLevel(logging.NOTSET)
