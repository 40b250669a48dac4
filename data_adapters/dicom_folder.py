"""A folder of DICOM files as a cohort: one case per image file or per series of slices, attributes from the
tags, identities hashed.

Patient name, birth date and every other direct identifier are never read into a record. Patient, study and
instance ids become keyed hashes (HMAC-SHA-256 under a secret the operator keeps outside every workspace), so
the same patient links across studies, and no id can be looked up from a hash without the secret: a copied
workspace does not carry it.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from data_adapters.errors import GlassboxError, InvalidInputError
from data_adapters.hashing import json_hash, path_hash, salted
from data_adapters.identifiers import mask_path, mask_paths
from data_adapters.preprocessing import convert_channels, fits
from data_adapters.readers import read_image
from data_adapters.readers.dicom_series import (
    IGNORED_NAMES,
    parse_series_ref,
    series_ref,
)
from data_adapters.records import Case, Cohort, LoadReport, Rejection

try:
    import pydicom
    from pydicom.errors import InvalidDicomError
except ImportError:
    pydicom = None

__all__ = ["salted", "load_dicom_folder"]

Progress = Callable[[int, int], None]
SCHEMA = {"study": "categorical", "sex": "categorical", "age": "numeric",
          "site": "categorical", "scanner": "categorical", "modality": "categorical"}


def _age(text: str) -> int | None:
    m = re.fullmatch(r"(\d{1,3})([DWMY])", text.strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return n if unit == "Y" else n // 12 if unit == "M" else 0


def _attributes(ds, salt: str) -> dict:
    scanner = " ".join(str(ds.get(t, "")).strip() for t in ("Manufacturer", "ManufacturerModelName")).strip()
    return {
        "study": salted(salt, str(ds.get("StudyInstanceUID", ""))) or None,
        "sex": str(ds.get("PatientSex", "")).strip() or None,
        "age": _age(str(ds.get("PatientAge", ""))),
        "site": str(ds.get("InstitutionName", "")).strip() or None,
        "scanner": scanner or None,
        "modality": str(ds.get("Modality", "")).strip() or None,
    }


def _units(entries: list[tuple[int, Path, object]]) -> list[tuple[list[tuple[int, Path, object]], Path]]:
    """Group readable files into cases: a series of several single-frame files is one volume (addressed by its
    folder, or by ``FOLDER/@UID`` where the folder holds other series too); any other file is a case on its own.
    Returns (files, image reference) pairs."""
    by_folder: dict[Path, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for entry in entries:
        _, path, ds = entry
        by_folder[path.parent][str(ds.get("SeriesInstanceUID", "") or path.name)].append(entry)
    units = []
    for folder_series in by_folder.values():
        # a stack: several single-frame slices that say where they lie; slices without a position (secondary
        # captures, key images) have no geometry to stack and are images on their own
        stacks = {uid: group for uid, group in folder_series.items()
                  if len(group) > 1 and all(int(ds.get("NumberOfFrames", 1) or 1) == 1
                                            and ds.get("ImagePositionPatient") is not None
                                            and ds.get("ImageOrientationPatient") is not None for _, _, ds in group)}
        for uid, group in folder_series.items():
            if uid not in stacks:
                units.extend(([entry], entry[1]) for entry in group)
            else:
                parent = group[0][1].parent
                units.append((group, series_ref(parent, uid) if len(folder_series) > 1 else parent))
    return sorted(units, key=lambda u: u[0][0][0])


def _holds_no_dicom(folder: Path, files: Sequence[Path]) -> str:
    """Why a folder with no DICOM file in it is not a cohort, naming what it holds (counts by suffix)."""
    kinds: dict[str, int] = defaultdict(int)
    for p in files:
        kinds[p.suffix.lower() or "(no suffix)"] += 1
    held = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
    tables = sorted(str(p.relative_to(folder)) for p in files if p.suffix.lower() in (".csv", ".parquet"))[:3]
    hint = (f"; if {', '.join(mask_path(t) for t in tables)} is the manifest, give that file as the cohort"
            if tables else "")
    return (f"{folder}: no DICOM file in this folder, so it is not a DICOM cohort; it holds {len(files):,} "
            f"file(s): {held}{hint} (a folder is read as a manifest only when it holds manifest.csv or "
            "manifest.parquet)")


def load_dicom_folder(folder: str | Path, *, salt: str, input_shape: Sequence[int | None] | None = None,
                      channels: str | None = None, progress: Progress | None = None) -> Cohort:
    """Every DICOM image file under ``folder`` (recursively) becomes a case, except that a folder holding one
    series of single-frame slices becomes one volume case; anything else is rejected with the reason."""
    if pydicom is None:
        raise InvalidInputError("reading DICOM folders needs pydicom; install it")
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: DICOM folder not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.name.lower() not in IGNORED_NAMES)
    if not files:
        raise InvalidInputError(f"{folder}: folder is empty; expected DICOM files")
    rejections, entries = [], []
    for i, path in enumerate(files, start=1):
        if not Path(os.path.realpath(path)).is_relative_to(folder):  # a symbolic link out of the cohort's folder
            rel = str(path.relative_to(folder))
            rejections.append(Rejection(row=i, case_id=None, field="image",
                                        reason=f"{mask_path(rel)}: a link to a file outside the cohort's folder "
                                               "(not followed)"))
            continue
        try:
            entries.append((i, path, pydicom.dcmread(path, stop_before_pixels=True)))
        except (InvalidDicomError, OSError, EOFError, ValueError):
            rel = str(path.relative_to(folder))
            rejections.append(Rejection(row=i, case_id=None, field="image", reason=f"{mask_path(rel)}: not a DICOM file"))
    if not entries:
        raise InvalidInputError(_holds_no_dicom(folder, files))
    units = _units(entries)
    cases, seen = [], {}
    for k, (group, where) in enumerate(units):
        if progress:
            progress(k, len(units))
        row, path, ds = group[0]
        is_series = len(group) > 1
        uid = ds.get("SeriesInstanceUID" if is_series else "SOPInstanceUID", str(path))
        case_id = salted(salt, str(uid), 12)
        # messages name files relative to the cohort, and a series among others by its (salted) case id
        rel = mask_path(str((path.parent if is_series else path).relative_to(folder)))
        if parse_series_ref(where):
            rel += f" (series {case_id})"

        def reject(reason: str, _row: int = row, _cid: str = case_id) -> None:
            rejections.append(Rejection(row=_row, case_id=_cid, field="image", reason=mask_paths(reason)))

        if case_id in seen:
            reject(f"{rel}: same {'series' if is_series else 'instance'} as {seen[case_id]}")
            continue
        try:
            image = read_image(where)  # the same read as prediction's, so what loads here predicts there
            shape = convert_channels(channels, image.array, rel).shape if channels else image.shape
        except GlassboxError as e:
            reject(str(e).replace(str(where), rel).replace(str(folder) + "/", ""))
            continue
        if input_shape is not None and not fits(tuple(shape), tuple(input_shape)):
            want = tuple("any" if s is None else s for s in input_shape)
            reject(f"{rel}: image is {tuple(shape)}; the model expects {want} (channels, *spatial)")
            continue
        seen[case_id] = rel
        cases.append(Case(case_id=case_id, image=where, image_hash=path_hash(where), shape=tuple(shape),
                          attributes=_attributes(ds, salt),
                          patient=salted(salt, str(ds.get("PatientID", "")).strip()) or None))
    if progress:
        progress(len(units), len(units))
    rejections.sort(key=lambda r: r.row)
    report = LoadReport(source=str(folder), n_rows=len(files), rejections=tuple(rejections), unit="files",
                        n_cases=len(cases),
                        notes=("rows are files in path order; a series of slices is one case, at its first file's "
                               "row; ids and study columns are salted hashes; PatientID is kept as a keyed hash (never shown) so that "
                               "intervals resample patients, not images",))
    content_hash = json_hash([(c.case_id, c.image_hash, c.attributes) for c in cases])
    return Cohort(name=folder.name, cases=tuple(cases), attribute_schema=dict(SCHEMA), content_hash=content_hash,
                  report=report)
