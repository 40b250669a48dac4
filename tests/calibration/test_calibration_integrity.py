"""The integrity claims hold at a small simulation count (every tampering found, nothing untampered flagged, an edited
cache never served), and the same simulation catches the code before this change (checklist edits and lost head
files read as intact)."""
from __future__ import annotations

import subprocess

import pytest

from benchmarks.calibration.integrity import OLD_COMMIT, ROOT, TAMPERS, claims


def test_integrity_claims_hold():
    found = claims(len(TAMPERS), seed=1)
    assert len(found) == 7
    for c in found:
        assert c.passed, c.line()
    assert found[0].hits == len(TAMPERS) and found[1].hits == 0


def test_the_simulation_fails_the_old_record_code():
    if subprocess.run(["git", "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"], cwd=ROOT).returncode:
        pytest.skip("the old commit is not in this checkout's history")
    tampered, clean, _concurrent = claims(len(TAMPERS), seed=1, old=True)
    assert not tampered.passed and tampered.hits == len(TAMPERS) - 5  # 3 checklist kinds and 2 head kinds missed
    assert "answer-edit 0/1" in tampered.design and "head-deleted 0/1" in tampered.design
    assert clean.passed
