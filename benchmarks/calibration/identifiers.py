"""Identifiers: what the identifier screen claims (issue 24), simulated on synthetic hospital exports and reviewer
notes run through the product's own :func:`data_adapters.identifiers.screen_columns` and
:func:`data_adapters.identifiers.identifier_in_text`.

People come from Faker (an independent generator with its own name lists, not Glassbox's ``person_names.txt``), in
five cased locales (en_US, en_GB, de_DE, es_ES, fr_FR), so a name the shipped list does not hold is part of the test.
Each simulation is one export of 40 images from 20 patients (1–3 images each) whose extra columns are neutrally named
(``who``, ``pn``, ``ref``, ``when``, ``obs``): only the content can give them away.

- *Held back* (power, minimum 0.95 each): a column of personal names; of DICOM person names (``LAST^FIRST``); of
  7-digit record numbers repeated per patient; of birth dates, each export in one of eight common formats; of free
  text where half the rows name someone.
- *Ordinary attributes load* (false alarm, nominal 0.05): sex, age, BMI, site (letters, numbers or hospital names such
  as ``St Mary's``), scanner, body part, view, acquisition month, split, marker, department, reader grade: the export
  counts as one false alarm when any of them is held back.
- *A note naming the patient is refused* (power, minimum 0.8): "discussed with First Last", "pt LAST^FIRST",
  "DOB <date>", "MRN <7 digits>", drawn at random.
- *Clinical notes pass* (false alarm, nominal 0.05): one to three phrases from a bank of radiology findings with
  eponyms (Smith and Jones fractures, circle of Willis, Hodgkin lymphoma, Baker's cyst), capitalised words ("Will
  review", "Mark as misleading", "Right Upper Lobe"), sizes, levels and month-year dates.

``claims(..., old=True)`` runs the same simulations through the screen before this change (``git show`` of
:data:`OLD_COMMIT`): it held back none of the neutrally named identifier columns except e-mail-like dates, and
refused no note that named someone in words.
"""
from __future__ import annotations

import random
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd

from benchmarks.calibration import Claim

#: the last commit before the identifier screen knew names, repeated record numbers and dates in words
OLD_COMMIT = "e704c9c376a532cfc6aae9294694c073badd8c40"
ROOT = Path(__file__).resolve().parents[2]
LOCALES = ("en_US", "en_GB", "de_DE", "es_ES", "fr_FR")
DATE_FORMATS = ("%d %b %Y", "%Y-%m-%d", "%m/%d/%Y", "%B %d, %Y", "%d.%m.%Y", "%d-%b-%y", "%d/%m/%Y", "%b %d %Y")
IDENTIFIER_COLUMNS = ("who", "pn", "ref", "when", "obs")
SITES = (["A", "B", "C"], ["1", "2"], ["St Mary's", "Royal Free", "Queen Elizabeth", "Mount Sinai"],
         ["North", "South", "East"], ["Site 1", "Site 2", "Site 3"])
SCANNERS = ["Acme X1", "GE Revolution", "Siemens SOMATOM Force", "Philips Ingenia 3T", "Canon Aquilion ONE",
            "Hologic Selenia"]
PHRASES = ["{size} mm nodule in the {lobe}, {change} since prior", "Smith fracture of the distal radius",
           "Jones fracture, 5th metatarsal", "Baker's cyst behind the knee", "circle of Willis unremarkable",
           "Hodgkin lymphoma follow-up", "Crohn Disease activity in the terminal ileum", "Kerley B lines",
           "Grad CAM highlights the {lobe}", "Will review with the team", "Mark as misleading", "Right Upper Lobe "
           "collapse", "compare with CT of {month} {year}", "follow-up in {size} months", "BI-RADS 4",
           "T2 FLAIR hyperintensity", "C5-C6 disc protrusion", "explanation focuses on the ECG leads",
           "map agrees with the lesion", "no acute findings", "Fleischner guidance applies", "St Mary's protocol",
           "seen on the Siemens Somatom Force", "repeat on the Borealis Helix", "as on the Philips Ingenia"]
LOBES = ["right upper lobe", "left lower lobe", "lingula", "RUL", "LLL"]
MONTHS = ["January", "March", "June", "Sept", "Dec"]


def _screen(old: bool) -> types.ModuleType:
    if not old:
        from data_adapters import identifiers
        return identifiers
    text = subprocess.run(["git", "show", f"{OLD_COMMIT}:data_adapters/identifiers.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    module = types.ModuleType("identifiers_old")
    exec(compile(text, "identifiers_old.py", "exec"), module.__dict__)  # noqa: S102 - our own code, as committed
    return module


def _export(fake, rng: random.Random) -> pd.DataFrame:
    patients = []
    while len(patients) < 40:
        person = {"first": fake.first_name(), "last": fake.last_name(), "mrn": str(rng.randrange(10 ** 6, 10 ** 7)),
                  "born": fake.date_of_birth(minimum_age=18, maximum_age=95)}
        patients += [person] * rng.randint(1, 3)
    patients = patients[:40]
    fmt = rng.choice(DATE_FORMATS)
    return pd.DataFrame({
        "who": [f"{p['first']} {p['last']}" for p in patients],
        "pn": [f"{p['last'].upper()}^{p['first'].upper()}" for p in patients],
        "ref": [p["mrn"] for p in patients],
        "when": [p["born"].strftime(fmt) for p in patients],
        "obs": [f"discussed with {p['first']} {p['last']}" if rng.random() < 0.5 else rng.choice(
            ["stable", "no change", "larger than before"]) for p in patients],
        "sex": [rng.choice("FM") for _ in patients],
        "age": [str(rng.randint(18, 95)) for _ in patients],
        "bmi": [f"{rng.uniform(16, 40):.1f}" for _ in patients],
        "site": [rng.choice(sites) for sites in [rng.choice(SITES)] for _ in patients],
        "scanner": [rng.choice(SCANNERS) for _ in patients],
        "body_part": [rng.choice(["CHEST", "ABDOMEN", "HEAD"]) for _ in patients],
        "view": [rng.choice(["PA", "AP", "LAT"]) for _ in patients],
        "acquired_month": [f"2026-{rng.randint(1, 12):02d}" for _ in patients],
        "split": [rng.choice(["train", "test"]) for _ in patients],
        "marker": [str(rng.randint(0, 1)) for _ in patients],
        "department": [rng.choice(["Emergency Department", "Outpatients", "Inpatients"]) for _ in patients],
        "reader_grade": [rng.choice(["Consultant", "Registrar", "Fellow"]) for _ in patients],
    })


def _note_with_identifier(fake, rng: random.Random) -> str:
    first, last = fake.first_name(), fake.last_name()
    return rng.choice([f"discussed with {first} {last}", f"pt {last.upper()}^{first.upper()} seen",
                       f"DOB {fake.date_of_birth().strftime(rng.choice(DATE_FORMATS))}",
                       f"MRN {rng.randrange(10 ** 6, 10 ** 7)}, compare prior"])


def _clinical_note(rng: random.Random) -> str:
    phrases = [rng.choice(PHRASES).format(size=rng.randint(2, 30), lobe=rng.choice(LOBES),
                                          change=rng.choice(["unchanged", "larger", "smaller"]),
                                          month=rng.choice(MONTHS), year=rng.randint(2015, 2026))
               for _ in range(rng.randint(1, 3))]
    return ". ".join(p[0].upper() + p[1:] for p in phrases) + "."


def claims(sims: int, seed: int = 0, *, old: bool = False) -> list[Claim]:
    from faker import Faker

    screen = _screen(old)
    rng = random.Random(seed)
    fakes = {loc: Faker(loc) for loc in LOCALES}
    for k, fake in enumerate(fakes.values()):
        fake.seed_instance(seed * 7919 + k)
    held = dict.fromkeys(IDENTIFIER_COLUMNS, 0)
    false_columns = refused = false_notes = 0
    for _ in range(sims):
        fake = fakes[rng.choice(LOCALES)]
        frame = _export(fake, rng)
        found = screen.screen_columns(frame, frame.columns)
        for column in IDENTIFIER_COLUMNS:
            held[column] += column in found
        false_columns += any(c not in IDENTIFIER_COLUMNS for c in found)
        refused += screen.identifier_in_text(_note_with_identifier(fake, rng)) is not None
        false_notes += screen.identifier_in_text(_clinical_note(rng)) is not None
    design = "40 images of 20 patients, Faker people in 5 locales" + (" (old screen)" if old else "")
    what = {"who": "personal names", "pn": "DICOM person names (LAST^FIRST)",
            "ref": "7-digit MRNs repeated per patient", "when": "birth dates (one of 8 formats)",
            "obs": "free text naming someone in half the rows"}
    out = [Claim(f"a column of {what[c]} is held back", "power", 0.95, held[c], sims, design)
           for c in IDENTIFIER_COLUMNS]
    out.append(Claim("ordinary attribute columns load (any held back counts)", "false alarm", 0.05, false_columns,
                     sims, design))
    out.append(Claim("a note naming the patient (name, PN, date of birth, MRN) is refused", "power", 0.8, refused,
                     sims, "one note per simulation, Faker people in 5 locales" + (" (old screen)" if old else "")))
    out.append(Claim("a clinical note with eponyms and capitals is recorded", "false alarm", 0.05, false_notes, sims,
                     "1–3 phrases from a bank of 25 findings" + (" (old screen)" if old else "")))
    return out


if __name__ == "__main__":
    from benchmarks.calibration import table

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(table(claims(n)))
    print(table(claims(n, old=True)))
