"""Quick run of the identifiers area of the calibration suite (benchmarks/calibration/identifiers.py): every claim
holds at a small count, and the screen before issue 24 fails its power claims under the same simulation."""
from __future__ import annotations

import pytest

pytest.importorskip("faker")

from benchmarks.calibration import identifiers  # noqa: E402


def test_every_identifier_claim_holds():
    claims = identifiers.claims(40, seed=1)
    assert len(claims) == 8
    assert all(c.passed for c in claims), [c.line() for c in claims if not c.passed]


def test_the_old_screen_misses_names_record_numbers_and_dates():
    old = {c.claim: c for c in identifiers.claims(40, seed=1, old=True)}
    for claim in ("a column of personal names is held back", "a column of DICOM person names (LAST^FIRST) is held back",
                  "a column of 7-digit MRNs repeated per patient is held back"):
        assert not old[claim].passed and old[claim].measured < 0.1, old[claim].line()
    assert old["a column of birth dates (one of 8 formats) is held back"].measured < 0.9
