"""Screening manifest columns for patient identifiers, by name and by content, before anything is loaded.

A column is held back (not loaded, shown, cached or exported) when its normalised name says it is an identifier
(``Patient Name``, ``patient-name``, ``patient_name_x``, ``first_name``, ``surname``, ``medical_record_number``,
``nhs_number``, ``phone_number``, ``e-mail``, ``zip``, ``referring_physician``, ``accession_no``, ...) or when its
values look like identifiers (e-mail addresses, phone numbers, full calendar dates such as birth dates, long
id-like codes unique per row, free text with many distinct values). The reason is reported, never the values.
The operator may allow a column by name (``settings.json``: ``"allow_columns": ["scan_date"]``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["screen_columns", "normalise_name", "mask_path", "mask_paths", "implausible", "identifier_in_text"]

#: a single token that marks an identifier wherever it appears in a column's name
_TOKENS = frozenset({
    "mrn", "nhs", "ssn", "sin", "dob", "email", "mail", "phone", "telephone", "tel", "mobile", "cell", "fax",
    "address", "street", "zip", "zipcode", "postcode", "postal", "accession", "physician", "doctor", "surname",
    "forename", "firstname", "lastname", "fullname", "patientname", "patientid", "birthdate", "birthday", "birth",
    "insurance", "passport", "licence", "license", "initials", "ip", "uid", "guid",
})
#: tokens that together mark an identifier
_PAIRS = (("medical", "record"), ("record", "number"), ("patient", "id"), ("patient", "number"), ("patient", "no"),
          ("hospital", "number"), ("hospital", "id"), ("health", "number"), ("social", "security"),
          ("case", "number"), ("subject", "id"), ("study", "id"), ("series", "id"))
#: "name" with one of these is not a person's name
_NOT_A_PERSON = frozenset({"site", "scanner", "device", "manufacturer", "model", "protocol", "station",
                           "series", "class", "label", "sequence", "body", "part", "view", "file"})
_FREE_TEXT = frozenset({"note", "notes", "comment", "comments", "remark", "remarks", "history", "report",
                        "findings", "impression", "text", "description"})

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{7,}\d")
_DATE = re.compile(r"(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{8})")
_CODE = re.compile(r"(?=.*\d)[A-Za-z0-9-]{6,}")


def normalise_name(name: str) -> list[str]:
    """``"PatientName"``, ``"patient-name"``, ``" Patient Name "`` → ``["patient", "name"]``."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _by_name(tokens: list[str]) -> str | None:
    joined = "".join(tokens)
    present = set(tokens) | {joined}
    hit = sorted(present & _TOKENS)
    if hit:
        return f"its name ({hit[0]!r}) marks an identifier"
    if "name" in tokens and not (set(tokens) & _NOT_A_PERSON):
        return "its name says it holds a name"
    for a, b in _PAIRS:
        if a in tokens and b in tokens:
            return f"its name ({a} {b}) marks an identifier"
    if set(tokens) & _FREE_TEXT:
        return "its name says it is free text, which can hold identifiers"
    return None


def _share(counts: pd.Series, test) -> float:
    """The share of values (``counts``: distinct value → how many) for which ``test(value)`` holds; each distinct
    value is tested once, so a million-row column of a few thousand values costs a few thousand tests."""
    total = counts.sum()
    if not total:
        return 0.0
    hits = np.fromiter((bool(test(v)) for v in counts.index), bool, len(counts))
    return float(counts.to_numpy()[hits].sum() / total)


def _by_content(values: pd.Series) -> str | None:
    values = values.astype(str).str.strip()
    counts = values[values != ""].value_counts(sort=False)
    n = int(counts.sum())
    if n < 3:
        return None
    if _share(counts, _EMAIL.search) > 0.2:
        return "its values look like e-mail addresses"
    if _share(counts, _DATE.fullmatch) > 0.5:
        return "its values look like calendar dates (a birth or visit date identifies)"
    if _share(counts, _PHONE.fullmatch) > 0.5:
        return "its values look like phone numbers"
    unique = len(counts) / n
    if _share(counts, _CODE.fullmatch) > 0.8 and unique > 0.9 and n >= 10:
        return "its values look like record numbers (id-like codes, one per row)"
    spaced = _share(counts, re.compile(r"\s").search)
    mean_length = float((counts.index.str.len().to_numpy() * counts.to_numpy()).sum() / n)
    if spaced > 0.5 and mean_length > 20 and unique > 0.5:
        return "its values are free text with many distinct values, which can hold identifiers"
    if _share(counts, lambda v: _EMAIL.search(v) or _PHONE.search(v)) > 0.2:
        return "its values contain phone numbers or e-mail addresses"
    return None


def screen_columns(frame: pd.DataFrame, columns: Iterable[str],
                   allow: Iterable[str] = ()) -> dict[str, str]:
    """Column → why it is held back, for every column of ``columns`` that looks like an identifier, by name or
    content, unless the operator allowed it by name (``allow``). Messages never quote a value."""
    allowed = {str(a).strip().lower() for a in allow}
    out = {}
    for column in columns:
        if str(column).strip().lower() in allowed:
            continue
        why = _by_name(normalise_name(column)) or _by_content(frame[column])
        if why:
            out[column] = why
    return out


#: a path component that may carry a person: a long digit run (MRN, date), DICOM's name separator, an e-mail,
#: or two capitalised words (``Smith_John``, ``Doe, Jane``)
_PERSONAL = re.compile(r"\d{5,}|\^|@|[A-Z][a-z]+[ _,]+[A-Z][a-z]+")
_PATHS = re.compile(r"[^\s'\"(),:]*/[^\s'\"(),:]*")


def _component(part: str) -> str:
    if not _PERSONAL.search(part):
        return part
    suffix = "".join(Path(part).suffixes[-2:]) if "." in part else ""
    return "[masked]" + suffix


def mask_path(path: str) -> str:
    """A relative path with each component that may carry a name or an id replaced by ``[masked]`` (a file's
    suffix kept): ``Smith_John_MRN123/IM0001.dcm`` → ``[masked]/IM0001.dcm``."""
    return "/".join(_component(p) for p in str(path).split("/"))


def mask_paths(text: str) -> str:
    """``text`` with :func:`mask_path` applied to every path in it (anything with a ``/``), so a load report never
    shows a PACS export's ``Smith_John_MRN123/``."""
    return _PATHS.sub(lambda m: mask_path(m.group(0)), text)


#: numeric attributes with a known plausible range (by normalised name token)
_RANGES = {"age": (0.0, 130.0), "weight": (0.0, 700.0), "height": (0.0, 280.0), "bmi": (5.0, 120.0)}


def implausible(column: str, value: float) -> str | None:
    """Why ``value`` cannot be a real value of ``column`` (not finite, or outside the plausible range of an age,
    weight, height or BMI), or None."""
    if not math.isfinite(value):
        return f"value {value} is not a finite number"
    for token in normalise_name(column):
        if token in _RANGES:
            low, high = _RANGES[token]
            if not low <= value <= high:
                return f"{value:g} is outside the plausible range {low:g}–{high:g}"
    return None


_LONG_NUMBER = re.compile(r"\d{6,}")
_DICOM_NAME = re.compile(r"[A-Za-z]+\^[A-Za-z]+")


def identifier_in_text(text: str) -> str | None:
    """Why a reviewer's free text (a note) may hold a patient identifier, or None: an e-mail address, a phone
    number, a calendar date, a long number (a record number), a DICOM-style name (``DOE^JANE``). The value itself
    is never quoted."""
    for pattern, what in ((_EMAIL, "an e-mail address"), (_DATE, "a calendar date"), (_PHONE, "a phone number"),
                          (_LONG_NUMBER, "a long number (a record or accession number?)"),
                          (_DICOM_NAME, "a name written the DICOM way (FAMILY^GIVEN)")):
        if pattern.search(text or ""):
            return what
    return None
