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


def test_the_false_alarm_claims_catch_a_screen_that_calls_every_capitalised_pair_a_name(monkeypatch):
    """The null simulations can fail: a naive screen (any two capitalised words are a name) alarms on the ordinary
    attributes (``Emergency Department``, ``Royal Free``) and on clinical notes (``Right Upper Lobe``)."""
    import re
    import types

    pair = re.compile(r"[A-Z][a-z]+ [A-Z][a-z]+")
    naive = types.SimpleNamespace(
        identifier_in_text=lambda text: "a name" if pair.search(text) else None,
        screen_columns=lambda frame, columns: {c: "names" for c in columns
                                               if frame[c].astype(str).str.contains(pair).mean() > 0.3})
    monkeypatch.setattr(identifiers, "_screen", lambda old: naive)
    claims = {c.claim: c for c in identifiers.claims(40, seed=1)}
    assert not claims["ordinary attribute columns load (any held back counts)"].passed
    assert not claims["a clinical note with eponyms and capitals is recorded"].passed
