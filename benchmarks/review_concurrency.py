"""Verdicts are never lost: 8 simultaneous sessions × 200 verdicts each, as threads (Streamlit's sessions share one
process) and as processes (several servers or CLI runs on one record), each verdict committed with its audit entry
in one transaction (WAL, synchronous=FULL). Prints the time, verdicts per second, whether every verdict and entry
is there and the chain intact, and the ratio against the naive way (a new connection per verdict with the default
rollback journal, which is what a first SQLite implementation does).

    python benchmarks/review_concurrency.py [--sessions 8] [--verdicts 200]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workspace.access import Identity  # noqa: E402
from workspace.review import Record, Verdict  # noqa: E402


def session(path: str, k: int, n: int) -> None:
    record = Record(Path(path).parent, path=path)
    who = Identity(f"reader-{k}", "radiologist")
    for i in range(n):
        record.record_verdict(who, Verdict(case_id=f"c{i}", model_version="v1", model_hash="m" * 64, cohort="demo",
                                           cohort_hash="h" * 64, agreement=("agree", "disagree", "unsure")[i % 3]),
                              secret="s")


def naive(path: str, k: int, n: int) -> None:
    """One connection per verdict, rollback journal, no audit: the baseline."""
    for i in range(n):
        db = sqlite3.connect(path, timeout=60)
        db.execute("INSERT INTO v (reader, case_id, agreement) VALUES (?, ?, ?)", (f"reader-{k}", f"c{i}", "agree"))
        db.commit()
        db.close()


def run(kind: str, target, path: str, sessions: int, n: int) -> float:
    start = time.perf_counter()
    workers = ([threading.Thread(target=target, args=(path, k, n)) for k in range(sessions)] if kind == "threads"
               else [mp.Process(target=target, args=(path, k, n)) for k in range(sessions)])
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--verdicts", type=int, default=200)
    args = p.parse_args()
    total = args.sessions * args.verdicts
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("threads", "processes"):
            path = str(Path(tmp) / f"{kind}.sqlite")
            Record(tmp, path=path)
            seconds = run(kind, session, path, args.sessions, args.verdicts)
            record = Record(tmp, path=path)
            stored, check = len(record.verdicts(history=True)), record.verify()
            base = str(Path(tmp) / f"naive-{kind}.sqlite")
            db = sqlite3.connect(base)
            db.execute("CREATE TABLE v (reader TEXT, case_id TEXT, agreement TEXT)")
            db.close()
            naive_s = run(kind, naive, base, args.sessions, args.verdicts)
            print(f"{kind:9s} {args.sessions} sessions × {args.verdicts} verdicts: {seconds:.2f} s "
                  f"({total / seconds:.0f} verdicts/s with their audit entries); stored {stored}/{total}, "
                  f"audit entries {check.entries}, chain {'intact' if check.ok else 'BROKEN'}; naive (connection "
                  f"per verdict, rollback journal, no audit) {naive_s:.2f} s: ratio {naive_s / seconds:.2f}×")
            if stored != total or not check.ok:
                raise SystemExit("verdicts lost or chain broken")


if __name__ == "__main__":
    main()
