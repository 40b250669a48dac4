"""The review record: what reviewers decided about cases, and a log of who did what that no one can quietly change.

One SQLite database per workspace (``<root>/review.sqlite``; ``$GLASSBOX_RECORD_DIR`` puts it elsewhere, e.g. on a
backed-up volume), in WAL mode with ``synchronous=FULL``, so that a verdict the page confirmed survives a killed
server or a power cut. Three tables, all append-only:

- ``verdicts``: per case and model version, a reader's verdict (agree / disagree / unsure with the model), whether
  the explanation was useful or misleading, an optional corrected label, a note and a flag for the ethics board.
  A change of mind is a new row; views take each reader's latest row per case and model.
- ``audit``: every consequential action (sign-in, model and cohort opened, verdicts, exports, user and settings
  changes, sign-offs) with identity, role, UTC time and object hashes. Each entry carries the SHA-256 of the
  previous one (a hash chain), so :meth:`Record.verify` finds the first entry that was edited, deleted or
  reordered. A head file (updated after each commit) holds the newest entry's number and hash, so a cut-off tail is
  found too. It is kept where the operator says: ``$GLASSBOX_AUDIT_HEAD`` (a folder, e.g. on another volume; the
  file is named after the database and a hash of its path), else beside the database (``<db>.head``). A log with entries whose head file
  is missing or unreadable does not verify: "intact" is said only when the tail is known to be whole.
- ``checklist``: the board's answers to the lifecycle questions (stated in the report, inside the hash a board
  member signs); each row's content hash is in its audit entry, so an updated, inserted or deleted answer is named
  by :meth:`Record.verify` just as a verdict is.

A read-only copy of a workspace (an auditor's) opens read-only: everything that only reads works, a write is a
:class:`RecordError`. A file that is not an SQLite database where the record should be is named, never a traceback.

A verdict and its audit entry are written in one transaction: both or neither. The log never holds a patient
identifier: cases appear as keyed hashes (HMAC under the operator's secret), models and cohorts by content hash.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from data_adapters.errors import InvalidInputError, RecordError
from data_adapters.hashing import salted
from data_adapters.identifiers import check_note
from workspace.access import Identity

__all__ = ["AGREEMENT", "EXPLANATION", "Verdict", "Record", "AuditCheck", "record_path", "case_key",
           "spreadsheet_safe", "NOTE_LIMIT"]

AGREEMENT = ("agree", "disagree", "unsure")
EXPLANATION = ("useful", "misleading", "not judged")
#: the hash the first entry of a chain points back to
GENESIS = "0" * 64
NOTE_LIMIT = 2000
MSG_CHOICE = "{field} must be one of {options}, not {value!r}"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    reader TEXT NOT NULL,
    role TEXT NOT NULL,
    case_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    cohort TEXT NOT NULL,
    cohort_hash TEXT NOT NULL,
    agreement TEXT NOT NULL CHECK (agreement IN ('agree', 'disagree', 'unsure')),
    explanation TEXT NOT NULL CHECK (explanation IN ('useful', 'misleading', 'not judged')),
    corrected_label TEXT,
    note TEXT NOT NULL DEFAULT '',
    flag_board INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS verdicts_by_model ON verdicts (model_hash, cohort_hash, case_id);
CREATE TABLE IF NOT EXISTS checklist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    member TEXT NOT NULL,
    role TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    cohort_hash TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    open_items TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    objects TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
#: a signed plain number (``-0042``, ``+1.5``, ``-3e-4``, ``-12%``): text a spreadsheet reads as a number, never runs
_PLAIN_NUMBER = re.compile(r"[+-](?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?%?")


def _formula(v: object) -> bool:
    """Whether a cell would run as a formula: it starts with ``=`` or ``@``, with tab or CR, or with ``+``/``-``
    followed by something other than a plain number (``-0042`` is an id, ``-2+3`` or ``+cmd|...`` is not)."""
    if not isinstance(v, str) or not v.startswith(_FORMULA):
        return False
    return v[0] not in "+-" or not _PLAIN_NUMBER.fullmatch(v)


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells and column names that a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd``,
    ``@SUM``, ``-2+3``) prefixed with a quote; numbers, and text that is a signed plain number (``-0042``), are left
    alone (OWASP CSV injection)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(lambda v: "'" + v if _formula(v) else v)
    if any(_formula(c) for c in out.columns):
        out.columns = ["'" + c if _formula(c) else c for c in out.columns]
    return out


def record_path(root: str | Path) -> Path:
    """Where a workspace's review record lives: ``<root>/review.sqlite``, or under ``$GLASSBOX_RECORD_DIR`` (named
    after the workspace and a hash of its full path, so two workspaces never share one)."""
    root = Path(root).resolve()
    folder = os.environ.get("GLASSBOX_RECORD_DIR")
    if folder:
        tag = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        return Path(folder) / f"{root.name}-{tag}.sqlite"
    return root / "review.sqlite"


def case_key(case_id: str, key: str) -> str:
    """How the audit log names a case: a keyed hash, never the id (which may come from a hospital system)."""
    return "case:" + salted(key, str(case_id), 16)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One reader's judgement of one case under one model version (validated on construction)."""

    case_id: str
    model_version: str
    model_hash: str
    cohort: str
    cohort_hash: str
    agreement: str
    explanation: str = "not judged"
    corrected_label: str | None = None
    note: str = ""
    flag_board: bool = False

    def __post_init__(self) -> None:
        if self.agreement not in AGREEMENT:
            raise InvalidInputError(MSG_CHOICE.format(field="agreement", options=", ".join(AGREEMENT),
                                                      value=self.agreement))
        if self.explanation not in EXPLANATION:
            raise InvalidInputError(MSG_CHOICE.format(field="explanation", options=", ".join(EXPLANATION),
                                                      value=self.explanation))
        if len(self.note) > NOTE_LIMIT:
            raise InvalidInputError(f"note: {len(self.note)} characters; the limit is {NOTE_LIMIT}")
        check_note(self.note)  # a name, date or record number in a note is refused, never stored
        if not self.case_id or not self.model_hash or not self.cohort_hash:
            raise InvalidInputError("a verdict names its case, model hash and cohort hash")


@dataclasses.dataclass(frozen=True)
class AuditCheck:
    """What :meth:`Record.verify` found: ``ok``, the number of entries, the first bad entry and why, the head."""

    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str = ""
    head: str = GENESIS

    def describe(self) -> str:
        if self.ok:
            return (f"audit log intact: {self.entries} entries, each chained to the one before; head "
                    f"{self.head[:16]} (keep this elsewhere to detect a cut-off tail later)")
        where = f"entry {self.first_bad}: " if self.first_bad is not None else ""
        return f"audit log TAMPERED: {where}{self.reason}"


def _writable(path: Path) -> bool:
    """Whether this process may write the record at ``path`` (and its folder, for the WAL files)."""
    folder = path.parent if path.parent.exists() else next((p for p in path.parents if p.exists()), path.parent)
    return os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def head_folder() -> Path | None:
    """Where the operator keeps audit head files (``$GLASSBOX_AUDIT_HEAD``), or None: beside the database."""
    folder = os.environ.get("GLASSBOX_AUDIT_HEAD")
    return Path(folder) if folder else None


def _entry_hash(prev: str, at: str, actor: str, role: str, action: str, objects: str) -> str:
    # the entry's own number is left out: a moved entry then shows as a broken link (reordered), not as an edit
    text = json.dumps([prev, at, actor, role, action, objects], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


#: databases whose tables this process has already made sure of
_READY: set[Path] = set()

VERDICT_FIELDS = ("at", "reader", "role", "case_id", "model_version", "model_hash", "cohort", "cohort_hash",
                  "agreement", "explanation", "corrected_label", "note", "flag_board")


def _verdict_hash(fields: dict) -> str:
    """The content hash of one verdict row, kept in its audit entry: an edited verdict no longer matches it."""
    values = [None if pd.isna(fields[k]) else (int(fields[k]) if k == "flag_board" else str(fields[k]))
              for k in VERDICT_FIELDS]
    return hashlib.sha256(json.dumps(values, separators=(",", ":")).encode()).hexdigest()[:32]


CHECKLIST_FIELDS = ("at", "member", "role", "model_hash", "cohort_hash", "question", "answer", "open_items")


def _answer_hash(fields: dict) -> str:
    """The content hash of one checklist row (every field), kept in its audit entry."""
    values = [None if fields[k] is None else str(fields[k]) for k in CHECKLIST_FIELDS]
    return hashlib.sha256(json.dumps(values, separators=(",", ":")).encode()).hexdigest()[:32]


def _legacy_answer_hash(answer: str, open_items: str) -> str:
    # entries written before whole rows were hashed: the answer and open items only
    return hashlib.sha256(f"{answer}\x00{open_items}".encode()).hexdigest()[:16]


class Record:
    """A workspace's review record (verdicts and audit log). Safe to use from several threads and processes at
    once: every write is one ``BEGIN IMMEDIATE`` transaction, which SQLite serialises."""

    def __init__(self, root: str | Path, *, path: str | Path | None = None, head: str | Path | None = None) -> None:
        """``head``: the folder the audit head file is kept in (default ``$GLASSBOX_AUDIT_HEAD``, else beside the
        database)."""
        self.path = Path(path) if path is not None else record_path(root)
        self._head_folder = Path(head) if head is not None else head_folder()
        self.read_only = not _writable(self.path)
        if self.read_only and not self.path.exists():
            raise RecordError(f"there is no review record at {self.path}, and its folder is read-only, so none can "
                              "be made")
        if self.read_only:
            with self._connect() as db:  # names a file that is not a record
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        elif self.path not in _READY or not self.path.exists():  # pages make a Record per run: create tables once
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RecordError(f"the folder of the review record {self.path} could not be made "
                                  f"({e.strerror or e})") from e
            with self._connect() as db:
                db.executescript(_SCHEMA)
            _READY.add(self.path)

    @property
    def head_path(self) -> Path:
        if self._head_folder is None:
            return self.path.with_name(self.path.name + ".head")
        # one folder holds the heads of many records: each named after its database and a hash of its full path
        tag = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:8]
        return self._head_folder / f"{self.path.name}-{tag}.head"

    def _failure(self, e: Exception) -> RecordError:
        """A named error for what SQLite (or pandas reading through it) raised."""
        text = str(e)
        if "not a database" in text or "malformed" in text or "file is encrypted" in text:
            return RecordError(f"{self.path} is not a readable SQLite review record ({text}): the file was replaced "
                               "or damaged; restore it from a backup (nothing was read from it or saved to it)")
        if "readonly" in text or "read-only" in text:
            return RecordError(f"the review record {self.path} is read-only ({text}): it can be read and verified, "
                               "not written; nothing was saved")
        with contextlib.suppress(OSError):
            if ("disk I/O error" in text or "full" in text) and shutil.disk_usage(self.path.parent).free < 1 << 20:
                text = "database or disk is full"
        if "disk is full" in text or "database or disk is full" in text:
            return RecordError(f"the review record {self.path} could not be written: the disk is full; nothing was "
                               "saved")
        if "disk I/O error" in text:
            return RecordError(f"the review record {self.path} could not be used: disk I/O error (a full disk or a "
                               "failing drive); nothing was saved")
        return RecordError(f"the review record {self.path.name} could not be used ({text}); nothing was saved")

    def _open(self, read_only: bool) -> sqlite3.Connection:
        if read_only:  # an auditor's read-only copy, or a full disk: no WAL index to write, no schema to create
            uri = self.path.resolve().as_uri()
            try:
                db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                db = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=60, isolation_level=None)
            db.execute("PRAGMA busy_timeout=60000")
            return db
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed verdict is on disk before the page says so
            db.execute("PRAGMA busy_timeout=60000")
        except sqlite3.Error:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _connect(self, *, read: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; ``read``: for reading only, so that where the WAL files cannot be made (a full disk, a
        folder that turned read-only) it reads the database read-only instead of failing."""
        try:
            try:
                db = self._open(self.read_only)
            except sqlite3.OperationalError as e:
                text = str(e)
                if not (read and any(w in text for w in ("disk I/O", "full", "readonly", "unable to open"))):
                    raise
                db = self._open(True)
        except sqlite3.Error as e:
            raise self._failure(e) from e
        try:
            yield db
        except (sqlite3.Error, pd.errors.DatabaseError) as e:
            raise self._failure(e) from e
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise RecordError(f"the review record {self.path} is read-only (a read-only copy of the workspace): it "
                              "can be read and verified, not written; nothing was saved")
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.Error as e:
            raise RecordError(f"the review record {self.path.name} could not be written ({e}); nothing was "
                              "saved") from e

    # -- the audit log ----------------------------------------------------------------------------------------
    @staticmethod
    def _append(db: sqlite3.Connection, identity: Identity, action: str, objects: dict) -> tuple[int, str]:
        last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        at = now()
        text = json.dumps(objects, sort_keys=True, separators=(",", ":"), default=str)
        digest = _entry_hash(prev, at, identity.name, identity.role, action, text)
        db.execute("INSERT INTO audit (seq, at, actor, role, action, objects, prev, hash) VALUES (?,?,?,?,?,?,?,?)",
                   (seq, at, identity.name, identity.role, action, text, prev, digest))
        return seq, digest

    def _write_head(self, seq: int, digest: str) -> None:
        head = {"entries": seq, "hash": digest}
        if self.head_path.exists():
            with contextlib.suppress(ValueError, OSError, AttributeError, TypeError):
                if int(json.loads(self.head_path.read_text()).get("entries", 0)) > seq:
                    return  # a later append already moved the head on
        tmp = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}.{id(head)}")
        try:
            self.head_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(head))
            os.replace(tmp, self.head_path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            # the entry is committed; only its head is behind, and verify will say so
            raise RecordError(f"entry {seq} was saved, but the audit head {self.head_path} could not be written "
                              f"({e.strerror or e}); `glassbox audit verify` will fail until it is") from e

    def _read_head(self) -> tuple[int, str] | str:
        """The head file's (entries, hash), or why it cannot be read."""
        try:
            head = json.loads(self.head_path.read_text())
            entries, digest = int(head["entries"]), str(head["hash"])
        except FileNotFoundError:
            return f"the audit head file {self.head_path} is missing"
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            return f"the audit head file {self.head_path} is not a Glassbox head ({type(e).__name__})"
        if entries < 0 or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            return f"the audit head file {self.head_path} is not a Glassbox head (entries {entries}, hash {digest[:16]!r})"
        return entries, digest

    def log(self, identity: Identity, action: str, **objects) -> int:
        """Append one entry; returns its number. ``objects`` are hashes and counts, never patient identifiers."""
        with self._transaction() as db:
            seq, digest = self._append(db, identity, action, objects)
        self._write_head(seq, digest)
        return seq

    def chain_root(self) -> str:
        """The hash of the log's first entry (GENESIS when empty): which record a kept report's sign-offs are in."""
        with self._connect(read=True) as db:
            row = db.execute("SELECT hash FROM audit WHERE seq = 1").fetchone()
        return row[0] if row else GENESIS

    def audit(self, *, actor: str | None = None, action: str | None = None, since: str | None = None) -> pd.DataFrame:
        """The log as a table, oldest first, optionally filtered by actor, action and start time (ISO date)."""
        clauses, params = [], []
        for column, value in (("actor", actor), ("action", action)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since:
            clauses.append("at >= ?")
            params.append(since)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect(read=True) as db:
            return pd.read_sql_query(f"SELECT * FROM audit {where} ORDER BY seq", db, params=params)

    def verify(self) -> AuditCheck:
        """Walk the chain from the first entry: each must follow the one before (numbers without gaps, ``prev``
        equal to the previous entry's hash) and hash to what it says; the newest must reach the head file's."""
        head = self._read_head()  # before the snapshot: the head never runs ahead of the entries read below
        with self._connect(read=True) as db:
            db.execute("BEGIN")  # one snapshot of all three tables: a verdict recorded meanwhile is not half seen
            rows = db.execute("SELECT seq, at, actor, role, action, objects, prev, hash FROM audit ORDER BY seq"
                              ).fetchall()
            db.row_factory = sqlite3.Row
            verdicts = {int(r["id"]): dict(r) for r in db.execute("SELECT * FROM verdicts ORDER BY id")}
            answers = {int(r["id"]): dict(r) for r in db.execute("SELECT * FROM checklist ORDER BY id")}
            db.execute("COMMIT")
        prev, expected = GENESIS, 1
        for seq, at, actor, role, action, objects, link, digest in rows:
            if seq != expected:
                return AuditCheck(False, len(rows), expected,
                                  f"missing (entries {expected}–{seq - 1} were deleted)" if seq > expected
                                  else "numbered out of order", prev)
            if link != prev:
                return AuditCheck(False, len(rows), seq, "does not follow the entry before it (an entry before it "
                                                         "was deleted or replaced, or entries were reordered)", prev)
            if _entry_hash(link, at, actor, role, action, objects) != digest:
                return AuditCheck(False, len(rows), seq, "its content does not match its hash (edited)", prev)
            prev, expected = digest, expected + 1
        if isinstance(head, str) and rows and self._head_reaches(rows):
            head = self._read_head()  # the first entry was committed just before its head was written: caught up
            if not isinstance(head, str) and head[0] > len(rows):
                head = (len(rows), rows[-1][7])  # written on since: it reached these entries (checked just above)
        if isinstance(head, str):
            if rows or self.head_path.exists():
                return AuditCheck(False, len(rows), None,
                                  f"{head}: whether the newest entries were cut off cannot be told (keep the head where "
                                  "the operator says, $GLASSBOX_AUDIT_HEAD, and restore it from there)", prev)
        else:
            entries, digest = head
            if entries > len(rows):
                return AuditCheck(False, len(rows), len(rows) + 1,
                                  f"missing: the head says {entries} entries, the log holds {len(rows)} (the newest "
                                  "were deleted)", prev)
            if entries and rows[entries - 1][7] != digest:
                return AuditCheck(False, len(rows), entries, "does not match the head file's hash (rewritten)", prev)
            if entries < len(rows) and not self._head_reaches(rows):
                return AuditCheck(False, len(rows), entries + 1,
                                  f"not in the head file: the head says {entries} entries, the log holds {len(rows)} "
                                  "(entries were added around Glassbox, or the head is an old copy)", prev)
        return (self._verify_verdicts(rows, verdicts) or self._verify_answers(rows, answers)
                or AuditCheck(True, len(rows), None, "", prev))

    def _head_reaches(self, rows: list, wait_s: float = 2.0) -> bool:
        """Whether the head file catches up with the entries read (an append commits before it moves the head, so
        entries just added are in the head within moments; entries added around Glassbox never are)."""
        deadline = time.monotonic() + wait_s
        while True:
            head = self._read_head()
            if not isinstance(head, str) and (head[0] > len(rows) or (head[0] == len(rows)
                                                                      and rows[-1][7] == head[1])):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _verify_answers(self, rows: list, answers: dict[int, dict]) -> AuditCheck | None:
        """Every checklist row must match the content hash its audit entry holds, and every answer entry must find
        its row: an updated, inserted or deleted answer of the board is named by its audit entry."""
        logged = {}
        for seq, _at, _actor, _role, action, objects, _prev, _hash in rows:
            if action == "checklist_answer":
                o = json.loads(objects)
                logged[int(o["answer"])] = (seq, o)
        head = rows[-1][7] if rows else GENESIS
        for row_id, fields in answers.items():
            if row_id not in logged:
                return AuditCheck(False, len(rows), None, f"checklist answer #{row_id} has no audit entry (inserted "
                                                          "around the log)", head)
            seq, o = logged[row_id]
            if "row" in o:
                same = _answer_hash(fields) == o["row"]
            else:
                same = (_legacy_answer_hash(str(fields["answer"]), str(fields["open_items"])) == o.get("content")
                        and fields["question"] == o.get("question")
                        and str(fields["model_hash"])[:16] == o.get("model")
                        and str(fields["cohort_hash"])[:16] == o.get("cohort"))
            if not same:
                return AuditCheck(False, len(rows), seq, f"checklist answer #{row_id} ({fields['question']}) no longer "
                                                         "matches the content hash its entry holds (the answer was "
                                                         "edited)", head)
        for row_id, (seq, _) in sorted(logged.items()):
            if row_id not in answers:
                return AuditCheck(False, len(rows), seq, f"checklist answer #{row_id} is gone from the checklist "
                                                         "table (deleted)", head)
        return None

    def _verify_verdicts(self, rows: list, verdicts: dict[int, dict]) -> AuditCheck | None:
        """Every verdict row must match the content hash its audit entry holds, and every verdict entry must find
        its row: an edited or deleted verdict is named by its audit entry."""
        logged = {}
        for seq, _at, _actor, _role, action, objects, _prev, _hash in rows:
            if action == "verdict":
                o = json.loads(objects)
                logged[int(o["verdict"])] = (seq, o.get("content"))
        for row_id, fields in verdicts.items():
            if row_id not in logged:
                return AuditCheck(False, len(rows), None, f"verdict #{row_id} has no audit entry (inserted "
                                                          "around the log)", rows[-1][7] if rows else GENESIS)
            seq, content = logged[row_id]
            if _verdict_hash(fields) != content:
                return AuditCheck(False, len(rows), seq, f"verdict #{row_id} no longer matches the content hash "
                                                         "its entry holds (the verdict was edited)", rows[-1][7])
        for row_id, (seq, _) in sorted(logged.items()):
            if row_id not in verdicts:
                return AuditCheck(False, len(rows), seq, f"verdict #{row_id} is gone from the verdicts table "
                                                         "(deleted)", rows[-1][7])
        return None

    # -- verdicts ---------------------------------------------------------------------------------------------
    def record_verdict(self, identity: Identity, verdict: Verdict, *, secret: str) -> int:
        """Store a verdict and its audit entry in one transaction; returns the verdict's row id. Raises
        :class:`InvalidInputError` when the identity's role may not record verdicts."""
        if not identity.can("record_verdict"):
            raise InvalidInputError(f"role {identity.role!r} does not record verdicts (radiologists do)")
        v = verdict
        fields = {"at": now(), "reader": identity.name, "role": identity.role, "case_id": v.case_id,
                  "model_version": v.model_version, "model_hash": v.model_hash, "cohort": v.cohort,
                  "cohort_hash": v.cohort_hash, "agreement": v.agreement, "explanation": v.explanation,
                  "corrected_label": v.corrected_label, "note": v.note, "flag_board": int(v.flag_board)}
        with self._transaction() as db:
            cursor = db.execute(f"INSERT INTO verdicts ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                                tuple(fields.values()))
            row = int(cursor.lastrowid)
            seq, digest = self._append(db, identity, "verdict", {
                "verdict": row, "case": case_key(v.case_id, secret), "model": v.model_hash[:16],
                "cohort": v.cohort_hash[:16], "agreement": v.agreement, "explanation": v.explanation,
                "corrected": v.corrected_label is not None, "flag_board": bool(v.flag_board),
                "content": _verdict_hash(fields)})
        self._write_head(seq, digest)
        return row

    def verdicts(self, *, model_hash: str | None = None, cohort_hash: str | None = None, reader: str | None = None,
                 history: bool = False) -> pd.DataFrame:
        """Verdicts, oldest first. By default each reader's latest per case and model (what views show);
        ``history`` keeps every row (what was changed, and when)."""
        clauses, params = [], []
        for column, value in (("model_hash", model_hash), ("cohort_hash", cohort_hash), ("reader", reader)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect(read=True) as db:
            frame = pd.read_sql_query(f"SELECT * FROM verdicts {where} ORDER BY id", db, params=params)
        frame["flag_board"] = frame["flag_board"].astype(bool)
        if not history and len(frame):
            frame = frame.drop_duplicates(["reader", "case_id", "model_hash", "cohort_hash"], keep="last")
        return frame.reset_index(drop=True)

    # -- the board: lifecycle answers and sign-off ----------------------------------------------------------------
    def answer(self, identity: Identity, *, model_hash: str, cohort_hash: str, question: str, answer: str,
               open_items: str = "") -> int:
        """The board's own answer to one lifecycle question for this model and cohort (append-only; the latest
        counts), with its audit entry, in one transaction."""
        if not identity.can("sign_off"):
            raise InvalidInputError(f"role {identity.role!r} does not answer the board's checklist (the board does)")
        for text, field in ((answer, "answer"), (open_items, "open items")):
            if len(text) > NOTE_LIMIT:
                raise InvalidInputError(f"{field}: {len(text)} characters; the limit is {NOTE_LIMIT}")
            try:  # stated in the report: a name, date or record number is refused like a verdict's note
                check_note(text)
            except InvalidInputError as e:
                raise InvalidInputError(f"checklist {field} to {question!r}: {str(e).removeprefix('note: ')}") \
                    from None
        fields = {"at": now(), "member": identity.name, "role": identity.role, "model_hash": model_hash,
                  "cohort_hash": cohort_hash, "question": question, "answer": answer, "open_items": open_items}
        with self._transaction() as db:
            row = int(db.execute(
                f"INSERT INTO checklist ({', '.join(CHECKLIST_FIELDS)}) VALUES ({', '.join('?' * len(fields))})",
                tuple(fields[k] for k in CHECKLIST_FIELDS)).lastrowid)
            seq, digest = self._append(db, identity, "checklist_answer", {
                "answer": row, "question": question, "model": model_hash[:16], "cohort": cohort_hash[:16],
                "content": _legacy_answer_hash(answer, open_items), "row": _answer_hash(fields)})
        self._write_head(seq, digest)
        return row

    def answers(self, *, model_hash: str, cohort_hash: str) -> pd.DataFrame:
        """The latest answer to each question for this model and cohort."""
        with self._connect(read=True) as db:
            frame = pd.read_sql_query("SELECT * FROM checklist WHERE model_hash = ? AND cohort_hash = ? ORDER BY id",
                                      db, params=(model_hash, cohort_hash))
        return frame.drop_duplicates("question", keep="last").reset_index(drop=True)

    def sign_off(self, identity: Identity, report_hash: str, **objects) -> int:
        """A board member signs one report, named by its content hash (with the model and cohort hashes it was
        made from); the audit log is the record of it."""
        if not identity.can("sign_off"):
            raise InvalidInputError(f"role {identity.role!r} does not sign off reports (board members do)")
        return self.log(identity, "sign_off", report=report_hash, **objects)

    def signoffs(self, report_hash: str | None = None) -> pd.DataFrame:
        """Sign-offs (who, role, when, which report), oldest first; only those of ``report_hash`` when given."""
        log = self.audit(action="sign_off")
        if log.empty:
            return pd.DataFrame(columns=["at", "actor", "role", "report"])
        log["report"] = [json.loads(o).get("report", "") for o in log["objects"]]
        if report_hash:
            log = log[log["report"] == report_hash]
        return log[["at", "actor", "role", "report"]].reset_index(drop=True)

    def export_verdicts(self, identity: Identity, **filters) -> str:
        """The verdicts as CSV to keep (every row, with provenance: model version and hash, cohort and hash, reader,
        role, UTC time), after an audit entry naming who exported what (and the file's hash)."""
        text = self.verdicts_csv(identity, **filters)
        self.log_export(identity, "verdicts", text, **filters)
        return text

    def verdicts_csv(self, identity: Identity, **filters) -> str:
        """The verdict rows ``identity`` may export (history included), as CSV with provenance, safe to open in a
        spreadsheet: a reader's own rows only, so that reads stay independent (another reader's verdicts and
        notes never reach them); every reader's for the developer and the admin. Raises
        :class:`InvalidInputError` for a role that exports no case-level verdicts."""
        if not identity.can("export_verdicts"):
            raise InvalidInputError(f"role {identity.role!r} does not export case-level verdicts")
        if not identity.can("export_all_verdicts"):
            filters = {**filters, "reader": identity.name}
        return spreadsheet_safe(self.verdicts(history=True, **filters)).to_csv(index=False)

    def log_export(self, identity: Identity, what: str, text: str, **filters) -> int:
        """Record that ``identity`` exported ``what`` (its content hash and row count)."""
        return self.log(identity, "export", what=what, rows=max(text.count("\n") - 1, 0),
                        content=hashlib.sha256(text.encode()).hexdigest()[:16],
                        **{k: (v[:16] if isinstance(v, str) else v) for k, v in filters.items() if v})
