"""The trust calibration claims hold at a small simulation count, and the same simulations catch the code before
this change (a vanished map correlated as 0 and passed; a 9% hit rate passed against chance alone)."""
from __future__ import annotations

import subprocess

import pytest

from benchmarks.calibration.trust import OLD_COMMIT, ROOT, claims


def test_trust_claims_hold():
    found = claims(40, seed=2)
    assert len(found) == 6
    for c in found:
        assert c.passed, c.line()
    vanished = found[0]
    assert vanished.hits == 0 and "could not judge 40" in vanished.design


def test_the_simulation_fails_the_old_trust_code():
    if subprocess.run(["git", "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"], cwd=ROOT).returncode:
        pytest.skip("the old commit is not in this checkout's history")
    old = {c.claim: c for c in claims(40, seed=2, old=True)}
    vanished = old["randomisation passes a map that vanishes on the randomised model (old)"]
    assert not vanished.passed and vanished.measured == 1.0
    demo = old["pointing game passes with true hit rate at the demo's 9% (1 of 11) (old)"]
    assert not demo.passed and demo.measured > 0.4
    boundary = old["pointing game passes with true hit rate at the reference less its margin (0.701) (old)"]
    assert not boundary.passed
