"""Screening manifest columns for patient identifiers, by name and by content, before anything is loaded.

A column is held back (not loaded, shown, cached or exported) when its normalised name says it is an identifier
(``Patient Name``, ``patient-name``, ``patient_name_x``, ``first_name``, ``surname``, ``medical_record_number``,
``nhs_number``, ``phone_number``, ``e-mail``, ``zip``, ``referring_physician``, ``accession_no``, ...) or when its
values look like identifiers (e-mail addresses, phone numbers, full calendar dates such as birth dates, long
id-like codes unique per row, free text with many distinct values). The reason is reported, never the values.
The operator may allow a column by name (``settings.json``: ``"allow_columns": ["scan_date"]``).

What a hospital export holds and the content screen looks for: personal names (a given name from the shipped list
``person_names.txt``, a title such as ``Dr Patel``, an initial with a family name; a column of two-to-four
capitalised words with some listed names, so names the list lacks go with them), DICOM person names
(``DOE^JANE``), record numbers (6–10 digit ids, whether unique per row or repeated per patient), and dates in any
common form (``12 Mar 1961``, ``1961-03-12``, ``03/12/1961``, ``March 12, 1961``; checked with dateutil, so
``12.34.56`` is not a date). The same tests screen a reviewer's note (:func:`identifier_in_text`,
:func:`check_note`), which also refuses two capitalised words mid-sentence that are not clinical words or scanner
names (``discussed with Nurten Linke``). Names in scripts without case (Chinese, Arabic) are not recognised. Text
that changes how it displays (bidirectional overrides such as U+202E, other control or invisible formatting
characters, NUL bytes) is refused in ids, paths, labels and attribute values (:func:`unsafe_characters`). The
measured rates are in ``benchmarks/calibration/identifiers.py``.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from dateutil import parser as date_parser

from data_adapters.errors import InvalidInputError

__all__ = ["screen_columns", "normalise_name", "mask_path", "mask_paths", "implausible", "identifier_in_text",
           "check_note", "unsafe_characters", "UNSAFE_CHARACTERS", "person_name_in", "is_date", "person_names",
           "NAMES_FILE"]

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
_NUMERIC_DATE = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})|\d{8}"
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"(?:3[01]|[12]\d|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:\d{4}|'?\d{2})"
_TEXT_DATE = (rf"{_DAY}[\s/.-]*(?:of\s+)?{_MONTH}[\s/.,-]*{_YEAR}|"
              rf"{_MONTH}[\s/.-]*{_DAY}(?:,\s*|\s+|[/.-]){_YEAR}")
#: a date in any common form: candidates by pattern, each confirmed a real calendar date by dateutil
_DATE = re.compile(rf"(?<![\w.])(?:{_NUMERIC_DATE}|{_TEXT_DATE})(?![\w])", re.IGNORECASE)
#: an id-like code (letters and digits, at least one digit; joined by ``-`` or ``_`` as in HAM10000's
#: ``HAM_0000118``), not a year and month (``2026-01``, a window)
_CODE = re.compile(r"(?=.*\d)(?!\d{4}[-/.]\d{1,2}$)[A-Za-z0-9_-]{6,}")
#: a record number: 6–10 digits, optionally after a short prefix (``MRN 4821337``, ``H-00042137``)
_RECORD_NUMBER = re.compile(r"(?:[A-Za-z]{1,4}[-#: ]?)?\d{6,10}")
_DICOM_NAME = re.compile(r"[A-Za-z][A-Za-z'-]*\^[A-Za-z][A-Za-z'-]*")
_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.?\s+[A-Z][a-z'’-]+")
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['’-])*")  # letters of any script, with apostrophes and hyphens
#: a capitalised word after one of these is a place (``St Mary's``, ``Mount Sinai``), not a person
_PLACE_BEFORE = frozenset({"st", "saint", "san", "santa", "santo", "sao", "mount", "mt", "queen", "king", "prince",
                           "princess", "lady", "port", "fort", "lake", "cape"})
#: a value naming a facility is not a person even when a word of it is a given name (``Alfred Hospital``)
_FACILITY = re.compile(r"\b(?:hospital|clinic|centre|center|infirmary|institute|university|medical|health|trust|"
                       r"college|foundation)\b", re.IGNORECASE)
#: where the name list lives (shipped beside this module; no download)
NAMES_FILE = Path(__file__).with_name("person_names.txt")


@lru_cache(maxsize=1)
def person_names() -> tuple[frozenset[str], frozenset[str]]:
    """``(given, family)`` names from :data:`NAMES_FILE`, lower-case."""
    given, family = set(), set()
    for line in NAMES_FILE.read_text(encoding="utf-8").splitlines():
        kind, sep, words = line.partition(":")
        if sep and kind.strip() in ("given", "family"):
            (given if kind.strip() == "given" else family).update(w.lower() for w in words.split())
    return frozenset(given), frozenset(family)


def _capitalised(word: str) -> bool:
    return word[:1].isupper() and (word[1:].islower() or (word.isupper() and len(word) >= 3))


#: capitalised words that follow a capitalised word in clinical text without making a name (``Crohn Disease``)
_CLINICAL_AFTER = frozenset({
    "disease", "syndrome", "lymphoma", "sarcoma", "tumour", "tumor", "fracture", "sign", "lobe", "lobes", "line",
    "lines", "grade", "stage", "type", "classification", "score", "criteria", "view", "views", "protocol", "sequence",
    "scan", "study", "series", "phase", "contrast", "window", "level", "lesion", "nodule", "mass", "cyst", "node",
    "nodes", "artery", "vein", "duct", "ligament", "muscle", "bone", "lung", "liver", "kidney", "brain", "heart",
    "left", "right", "upper", "lower", "middle", "anterior", "posterior", "lateral", "medial", "cam", "map", "maps",
    "model", "ai", "ct", "mri", "mr", "pet", "us", "xr", "cr", "dx", "report", "unit", "ward", "hospital", "clinic",
    "team", "board", "trial", "and", "or", "of", "the", "with"})
#: capitalised words that start a pair in clinical text without making a name (``Right Upper``, ``Grad CAM``)
_CLINICAL_BEFORE = _CLINICAL_AFTER | frozenset({
    "no", "new", "small", "large", "mild", "moderate", "severe", "stable", "prior", "compare", "follow", "see",
    "grad", "integrated", "guided", "occlusion", "smooth", "gradient", "saliency", "explanation", "model", "agree",
    "disagree", "unsure", "misleading", "useful", "please", "note", "possible", "probable", "likely", "suspected",
    "bilateral", "diffuse", "focal", "chest", "abdomen", "pelvis", "head", "neck", "spine", "breast", "hip", "knee",
    # scanner makers and models (``the Siemens Somatom``, ``a Borealis Helix``)
    "siemens", "philips", "canon", "toshiba", "hologic", "fujifilm", "agfa", "carestream", "samsung", "konica",
    "hitachi", "mindray", "esaote", "somatom", "magnetom", "biograph", "ingenia", "achieva", "aquilion", "vantage",
    "revolution", "discovery", "signa", "optima", "lightspeed", "vereos", "selenia", "acme", "borealis"})
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")


def _capitalised_pair(text: str) -> bool:
    """Two capitalised words in a row in the middle of a sentence (``discussed with Nurten Linke``), neither a
    clinical word: a name the list does not know. A pair after a place word (``St``, ``Mount``) does not count."""
    matches = list(_WORD.finditer(text))
    for k in range(1, len(matches) - 1):
        a, b = matches[k], matches[k + 1]
        first, second = a.group(), b.group()
        if not (_capitalised(first) and _capitalised(second)) or first.isupper() or second.isupper():
            continue
        if text[a.end():b.start()].strip(" -") or _SENTENCE_END.search(text[:a.start()]):
            continue  # not adjacent, or the first word starts a sentence
        before = matches[k - 1].group().lower()
        if before in _PLACE_BEFORE or first.lower() in _CLINICAL_BEFORE or second.lower() in _CLINICAL_AFTER:
            continue
        return True
    return False


def _listed_word(text: str) -> bool:
    """Whether a capitalised word of ``text`` (not after a place word) is a listed given or family name."""
    given, family = person_names()
    words = _WORD.findall(str(text))
    return any(_capitalised(w) and w.lower() in (given | family) and (not i or words[i - 1].lower() not in
                                                                       _PLACE_BEFORE) for i, w in enumerate(words))


def person_name_in(text: str) -> bool:
    """Whether ``text`` holds a personal name: a capitalised given name from the list (``Jane``, ``JANE``), a title
    with a name (``Dr Okafor``), an initial beside a listed family name (``J. Smith``, ``Smith J``), or a DICOM
    person name (``DOE^JANE``). A capitalised word after ``St``/``Mount``/``Queen`` (a place) does not count, nor a
    value naming a facility (``Alfred Hospital``)."""
    text = str(text or "")
    if _DICOM_NAME.search(text) or _TITLE.search(text):
        return True
    if _FACILITY.search(text):
        return False
    given, family = person_names()
    words = [m.group() for m in _WORD.finditer(text)]
    for i, word in enumerate(words):
        if not _capitalised(word):
            continue
        before = words[i - 1].lower() if i else ""
        if before in _PLACE_BEFORE:
            continue
        low = word.lower().rstrip("'’s") if word.lower().endswith(("'s", "’s")) else word.lower()
        if low in given:
            return True
        if low in family:
            after = words[i + 1] if i + 1 < len(words) else ""
            if (len(before) == 1 and words[i - 1].isupper()) or (len(after) == 1 and after.isupper()):
                return True
    return False


def _name_shaped(text: str) -> bool:
    """Two to four capitalised words of letters only (``Nurten Linke-Benthin``, ``José Mari Torre-Quirós``): the
    shape of a name, whether or not the list knows it. A column of such values with some listed names is a names
    column."""
    words = str(text).replace("-", " ").split()
    return 2 <= len(words) <= 4 and all(
        w[:1].isupper() and w.replace("'", "").replace("’", "").rstrip(".").isalpha() for w in words)


def is_date(text: str, *, whole: bool = False) -> bool:
    """Whether ``text`` holds (``whole``: is) a calendar date in a common form, confirmed by dateutil."""
    text = str(text or "")
    found = [_DATE.fullmatch(text.strip())] if whole else list(_DATE.finditer(text))
    for match in found:
        if match is None:
            continue
        try:
            date_parser.parse(match.group().replace("of ", " "), fuzzy=False)
        except (ValueError, OverflowError):
            continue
        return True
    return False


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


#: distinct values of one column whose content is tested; beyond this a seeded random sample of them (the shares
#: are then ratio estimates, weighted by each value's count), so a million distinct free-text cells cost seconds
SAMPLE_DISTINCT = 20_000


def _by_content(values: pd.Series) -> str | None:
    values = values.astype(str).str.strip()
    counts = values[values != ""].value_counts(sort=False)
    n = int(counts.sum())
    if n < 3:
        return None
    distinct = len(counts)
    unique = distinct / n
    if distinct > SAMPLE_DISTINCT:
        counts = counts.sample(n=SAMPLE_DISTINCT, random_state=0)
    if _share(counts, _EMAIL.search) > 0.2:
        return "its values look like e-mail addresses"
    if _share(counts, lambda v: is_date(v, whole=True)) > 0.5:
        return "its values look like calendar dates (a birth or visit date identifies)"
    if _share(counts, _RECORD_NUMBER.fullmatch) > 0.8 and distinct >= 3 and unique >= 0.05:
        return ("its values look like record numbers (6–10 digit ids; repeated per patient, "
                f"{unique:.0%} distinct)")
    if _share(counts, _PHONE.fullmatch) > 0.5:
        return "its values look like phone numbers"
    if _share(counts, _CODE.fullmatch) > 0.8 and n >= 10 and (unique > 0.9 or (unique >= 0.3 and distinct >= 10)):
        return f"its values look like record numbers (id-like codes, {unique:.0%} distinct)"
    if _share(counts, _DICOM_NAME.search) > 0.2:
        return "its values look like DICOM person names (FAMILY^GIVEN)"
    if _share(counts, person_name_in) > 0.3 or (
            distinct >= 5 and _share(counts, _name_shaped) > 0.8 and _share(counts, _listed_word) > 0.1):
        return "its values look like personal names"
    spaced = _share(counts, re.compile(r"\s").search)
    mean_length = float((counts.index.str.len().to_numpy() * counts.to_numpy()).sum() / counts.sum())
    if spaced > 0.5 and mean_length > 20 and unique > 0.5:
        return "its values are free text with many distinct values, which can hold identifiers"
    if _share(counts, lambda v: _EMAIL.search(v) or _PHONE.search(v)) > 0.2:
        return "its values contain phone numbers or e-mail addresses"
    if pd.to_numeric(pd.Series(counts.index), errors="coerce").isna().any():
        share = _share(counts, identifier_in_text)
        if share > 0.1:
            return f"{share:.0%} of its values hold a name, a date or a record number"
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


def identifier_in_text(text: str) -> str | None:
    """Why a reviewer's free text (a note) may hold a patient identifier, or None: an e-mail address, a calendar
    date (any common form), a phone number, a long number (a record number), a DICOM-style name (``DOE^JANE``), a
    personal name (:func:`person_name_in`). The value itself is never quoted."""
    text = str(text or "")
    checks = ((_EMAIL.search, "an e-mail address"), (is_date, "a calendar date"), (_PHONE.search, "a phone number"),
              (_LONG_NUMBER.search, "a long number (a record or accession number?)"),
              (_DICOM_NAME.search, "a name written the DICOM way (FAMILY^GIVEN)"),
              (person_name_in, "a personal name"), (_capitalised_pair, "what looks like a personal name"))
    for test, what in checks:
        if test(text):
            return what
    return None


MSG_NOTE = ("note: it seems to hold {what}; patient identifiers are never stored. Remove it and record again "
            "(describe the finding, not the patient)")


def check_note(text: str) -> None:
    """Raise :class:`InvalidInputError` (never quoting the note) when a reviewer's note may hold an identifier."""
    what = identifier_in_text(text)
    if what:
        raise InvalidInputError(MSG_NOTE.format(what=what))


#: bidirectional controls: they make text display in another order than it is stored (``case\u202egnp.exe``)
_BIDI = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})


#: what :func:`unsafe_characters` names, as one pattern (for whole columns at once): NUL and other C0/C1 controls
#: but tab, bidi controls, zero-width and other invisible formatting characters
UNSAFE_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e"
                               "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def unsafe_characters(text: str) -> str | None:
    """What in ``text`` (an id or a path) would display differently from what is stored, or None: a NUL byte, a
    bidirectional control (U+202E RIGHT-TO-LEFT OVERRIDE), another control character or an invisible formatting
    character (U+200B ZERO WIDTH SPACE). The text itself is never quoted."""
    for ch in str(text):
        code = ord(ch)
        if code == 0:
            return "a NUL byte"
        if code in _BIDI:
            return (f"a bidirectional control character (U+{code:04X} {unicodedata.name(ch, '')}), which makes "
                    "text display in another order than it is stored")
        kind = unicodedata.category(ch)
        if kind == "Cc":
            return f"a control character (U+{code:04X})"
        if kind == "Cf":
            return f"an invisible formatting character (U+{code:04X} {unicodedata.name(ch, '')})"
    return None
