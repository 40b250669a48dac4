"""A folder of DICOM files as a cohort: one case per image file, attributes from the tags, identities hashed.

Patient name, birth date and every other direct identifier are never read into a record. Patient, study and
instance ids become salted hashes (the salt belongs to the workspace), so the same patient links across studies
inside one workspace but not across workspaces, and no id can be looked up from a hash without the salt.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from data_adapters.errors import GlassboxError, InvalidInputError
from data_adapters.hashing import file_hash, json_hash
from data_adapters.readers import read_image
from data_adapters.records import Case, Cohort, LoadReport, Rejection

try:
    import pydicom
    from pydicom.errors import InvalidDicomError
except ImportError:
    pydicom = None

Progress = Callable[[int, int], None]
SCHEMA = {"patient": "categorical", "study": "categorical", "sex": "categorical", "age": "numeric",
          "site": "categorical", "scanner": "categorical", "modality": "categorical"}


def salted(salt: str, value: str, length: int = 16) -> str:
    """A salted, truncated SHA-256 of an identifier; empty stays empty."""
    if not value:
        return ""
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:length]


def _age(text: str) -> int | None:
    m = re.fullmatch(r"(\d{1,3})([DWMY])", text.strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return n if unit == "Y" else n // 12 if unit == "M" else 0


def load_dicom_folder(folder: str | Path, *, salt: str, input_shape: Sequence[int] | None = None,
                      progress: Progress | None = None) -> Cohort:
    """Every file under ``folder`` (recursively) that is a DICOM image becomes a case; the rest are rejected."""
    if pydicom is None:
        raise InvalidInputError("reading DICOM folders needs pydicom; install it")
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: DICOM folder not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InvalidInputError(f"{folder}: folder is empty; expected DICOM files")
    rejections, cases, seen = [], [], {}
    for i, path in enumerate(files, start=1):
        if progress:
            progress(i - 1, len(files))
        rel = str(path.relative_to(folder))
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            rejections.append(Rejection(row=i, case_id=None, field="image", reason=f"{rel}: not a DICOM file"))
            continue
        case_id = salted(salt, str(ds.get("SOPInstanceUID", rel)), 12)
        if case_id in seen:
            rejections.append(Rejection(row=i, case_id=case_id, field="image",
                                        reason=f"{rel}: same instance as file {seen[case_id]}"))
            continue
        try:
            image = read_image(path)
        except GlassboxError as e:
            rejections.append(Rejection(row=i, case_id=case_id, field="image",
                                        reason=str(e).replace(str(folder) + "/", "")))
            continue
        if input_shape is not None and tuple(image.shape) != tuple(input_shape):
            rejections.append(Rejection(row=i, case_id=case_id, field="image",
                                        reason=f"{rel}: image is {image.shape}; the model expects {tuple(input_shape)}"))
            continue
        seen[case_id] = rel
        scanner = " ".join(str(ds.get(t, "")).strip() for t in ("Manufacturer", "ManufacturerModelName")).strip()
        attributes = {
            "patient": salted(salt, str(ds.get("PatientID", ""))) or None,
            "study": salted(salt, str(ds.get("StudyInstanceUID", ""))) or None,
            "sex": str(ds.get("PatientSex", "")).strip() or None,
            "age": _age(str(ds.get("PatientAge", ""))),
            "site": str(ds.get("InstitutionName", "")).strip() or None,
            "scanner": scanner or None,
            "modality": str(ds.get("Modality", "")).strip() or None,
        }
        cases.append(Case(case_id=case_id, image=path, image_hash=file_hash(path), shape=image.shape,
                          attributes=attributes))
    if progress:
        progress(len(files), len(files))
    report = LoadReport(source=str(folder), n_rows=len(files), rejections=tuple(rejections),
                        notes=("rows are files in path order; ids and patient/study columns are salted hashes",))
    content_hash = json_hash([(c.case_id, c.image_hash, c.attributes) for c in cases])
    return Cohort(name=folder.name, cases=tuple(cases), attribute_schema=dict(SCHEMA), content_hash=content_hash,
                  report=report)
