"""Cohort manifests (CSV or Parquet) to a validated :class:`Cohort` and its load report.

A manifest has ``case_id``, ``image`` (a path relative to the manifest), optional ``label`` and ``mask``,
and any attribute columns. Every bad row is rejected with a message naming the row, the field and the
problem; the good rows still load.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PureWindowsPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_adapters.errors import GlassboxError, InvalidInputError
from data_adapters.hashing import MAC_FIELD, json_hash, mac, mac_matches, path_hash, salted, table_mac
from data_adapters.identifiers import (
    UNSAFE_CHARACTERS,
    implausible,
    mask_paths,
    screen_columns,
    unsafe_characters,
)
from data_adapters.preprocessing import convert_channels, fit_image, fits
from data_adapters.readers import read_image, reader_for
from data_adapters.readers.dicom_series import parse_series_ref
from data_adapters.records import Case, CaseTable, Cohort, LoadReport, Preprocessing, Rejection

__all__ = ["load_manifest", "cohort_source", "cluster_column_of", "MANIFEST_NAMES", "LESION_COLUMNS", "save_cohort_table", "open_cohort_table", "check_files", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "IDENTIFIER_COLUMNS",
           "load_image_batch", "peek_fit"]

Progress = Callable[[int, int], None]

REQUIRED_COLUMNS = ("case_id", "image")
OPTIONAL_COLUMNS = ("label", "mask")
#: columns that would carry direct patient identifiers: never loaded, shown, cached or exported
IDENTIFIER_COLUMNS = frozenset({
    "patient_name", "patientname", "name", "mrn", "birth_date", "birthdate",
    "patientbirthdate", "date_of_birth", "dob", "accession", "accession_number", "accessionnumber", "ssn",
    "address", "phone", "email",
})

#: columns that say which patient an image came from: read into ``Case.patient`` as a keyed hash (never shown,
#: cached or exported) so that intervals resample patients, not images
PATIENT_COLUMNS = ("patient_id", "patientid", "patient", "subject_id", "subject")
#: columns that group several images of one lesion (HAM10000's ``lesion_id``): the cluster key when no patient
#: column is present, read the same way (a keyed hash)
LESION_COLUMNS = ("lesion_id", "lesionid", "lesion")
#: file names a cohort folder's manifest may have: a folder holding one of them, given as a cohort, is that manifest
MANIFEST_NAMES = ("manifest.csv", "manifest.parquet")
MSG_CLUSTER = ("{path}: cluster column {column!r} (settings.json cluster_column) is not in the manifest; it has "
               "{present}")
MSG_TWO_MANIFESTS = "{path}: the folder holds both {names}; give the one to use as the cohort"


def cohort_source(path: str | Path) -> Path:
    """What a cohort path names: a folder holding a manifest (:data:`MANIFEST_NAMES`) is that manifest; any other
    path is returned as given (a manifest file, or a DICOM folder, which :func:`load_dicom_folder` checks)."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = [path / n for n in MANIFEST_NAMES if (path / n).is_file()]
    if len(found) > 1:
        raise InvalidInputError(MSG_TWO_MANIFESTS.format(path=path, names=" and ".join(f.name for f in found)))
    return found[0] if found else path


def cluster_column_of(columns: Sequence[str], chosen: str | None = None, *, path: str | Path = "manifest") -> str | None:
    """The column whose values say which images belong together (resampled as one in every interval): the
    operator's ``chosen`` one (must exist), else the first patient column, else the first lesion column."""
    if chosen:
        match = next((c for c in columns if c.strip().lower() == str(chosen).strip().lower()), None)
        if match is None:
            raise InvalidInputError(MSG_CLUSTER.format(path=path, column=chosen, present=list(columns)))
        return match
    for names in (PATIENT_COLUMNS, LESION_COLUMNS):
        match = next((c for c in columns if c.strip().lower() in names), None)
        if match is not None:
            return match
    return None

MSG_NOT_FOUND = "{path}: manifest not found"
MSG_ENCODING = "{path}: manifest is not UTF-8 text (byte {pos}: {why}); save it as UTF-8"
MSG_FORMAT = "{path}: manifest must be .csv or .parquet, got {suffix!r}"
MSG_MISSING_COLUMNS = "{path}: manifest lacks required column(s) {missing}; it has {present}"
MSG_EMPTY = "{path}: manifest has no rows"


def _read_table(path: Path) -> pd.DataFrame:
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would block the read forever
        raise InvalidInputError(f"{path}: manifest is not a regular file; give a .csv or .parquet file")
    if not path.is_file():
        raise InvalidInputError(MSG_NOT_FOUND.format(path=path))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several unrelated types
            raise InvalidInputError(f"{path}: not a readable Parquet file ({e})") from e
        return frame.astype(object).where(frame.notna(), "").astype(str)
    if suffix != ".csv":
        raise InvalidInputError(MSG_FORMAT.format(path=path, suffix=suffix))
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(MSG_ENCODING.format(path=path, pos=e.start, why=e.reason)) from e
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as e:
        raise InvalidInputError(MSG_EMPTY.format(path=path)) from e
    except pd.errors.ParserError as e:
        raise InvalidInputError(f"{path}: not a well-formed CSV ({e})") from e


def _candidate(base: Path, ref: str) -> str:
    """``ref`` joined to the manifest folder, not yet resolved. Windows-style separators (``images\\a.png``) are
    read as folders; a drive letter (``C:\\data\\a.png``) is named with the fix."""
    if "\\" in ref and os.sep == "/":
        if PureWindowsPath(ref).drive:
            raise InvalidInputError(f"path {ref!r} is a Windows absolute path (drive {PureWindowsPath(ref).drive}); "
                                    "give images relative to the manifest, e.g. images/a.png")
        ref = ref.replace("\\", "/")
    return ref if os.path.isabs(ref) else os.path.join(base, ref)


def _within(candidate: str, ref: str, roots: Sequence[Path]) -> Path:
    """The candidate resolved (symbolic links followed); it must stay under one of ``roots``."""
    why = unsafe_characters(candidate)
    if why:  # the OS cannot take a NUL, and a bidi control would show another path than the one opened
        raise InvalidInputError(f"path holds {why}; refused")
    resolved = Path(os.path.realpath(candidate))
    if not any(resolved.is_relative_to(r) for r in roots):
        raise InvalidInputError(f"path {ref!r} points outside the data root(s) {', '.join(map(str, roots))}")
    return resolved


def _resolve(base: Path, ref: str, roots: Sequence[Path]) -> Path:
    """``ref`` resolved against the manifest folder; must stay under one of ``roots``."""
    return _within(_candidate(base, ref), ref, roots)


@dataclass(frozen=True)
class FileCheck:
    """What checking one referenced file found: where it resolved, its content hash, its shape (an image's after
    the model's channel conversion), its size and modification time (the cohort table's staleness key), or why it
    was refused."""

    path: str | None = None
    hash: str | None = None
    shape: tuple[int, ...] | None = None
    raw_shape: tuple[int, ...] | None = None
    size: int = -1
    mtime_ns: int = -1
    error: str | None = None


def check_file(job: tuple[str, str], *, roots: Sequence[Path], channels: str | None, pixels: bool) -> FileCheck:
    """Resolve, hash and check one file (``job`` = (candidate path, the manifest's text for it)). ``pixels``: decode
    it (every reader); otherwise read its bytes once, hash them and take the shape from the header where its reader
    can (PNG/JPEG, with chunk CRCs and end markers checked), decoding only what the header cannot settle (DICOM,
    NIfTI, colour given to a ``grey`` model). Never raises: a problem is ``error``."""
    candidate, ref = job
    try:
        path = _within(candidate, ref, roots)
        if not path.exists() and not parse_series_ref(path):
            raise InvalidInputError(f"file not found: {ref}")
        if path.exists() and not (path.is_file() or path.is_dir()):  # never opened: a FIFO would block forever
            raise InvalidInputError(f"{ref}: not a regular file (a FIFO, socket or device); refused without opening")
        shape = None
        if not pixels and path.is_file():
            reader = reader_for(path)
            data = path.read_bytes()
            shape = type(reader).header_shape(path, data)
            digest = hashlib.sha256(data).hexdigest()
            if shape is not None and channels is not None:
                if channels == "grey" and shape[0] == 3:
                    shape = None  # colour or grey saved as colour: only the pixels can tell
                elif shape[0] in (1, 3):
                    shape = ((3 if channels == "rgb" else 1), *shape[1:])
                else:
                    raise InvalidInputError(f"{ref}: {shape[0]} channels; preprocessing.channels {channels!r} takes "
                                            "1 or 3")
            raw = shape
        if shape is None:
            image = read_image(path)
            raw = image.shape
            shape = convert_channels(channels, image.array, ref).shape if channels else image.shape
            digest = path_hash(path)
        stat = path.stat() if path.exists() else path.parent.stat()
        return FileCheck(str(path), digest, tuple(shape), tuple(raw), stat.st_size, stat.st_mtime_ns)
    except GlassboxError as e:
        return FileCheck(error=str(e))
    except OSError as e:
        return FileCheck(error=f"{ref}: cannot be read ({e.strerror or type(e).__name__})")
    except ValueError as e:  # a path the OS cannot take (an embedded NUL), should the row check miss one
        return FileCheck(error=f"image path cannot be used ({e})")


#: from this many distinct files, a cohort is checked from headers (``check="auto"``) and in worker processes
HEADER_FROM = 2000
PARALLEL_FROM = 2000


def check_files(jobs: Sequence[tuple[str, str]], *, roots: Sequence[Path], channels: str | None, pixels: bool,
                progress: Progress | None = None, workers: int | None = None) -> list[FileCheck]:
    """:func:`check_file` for every job, in worker processes when there are many (``workers``: default the CPU
    count; 1 runs here)."""
    work = partial(check_file, roots=tuple(roots), channels=channels, pixels=pixels)
    n = len(jobs)
    workers = workers or os.cpu_count() or 1
    out: list[FileCheck] = []
    step = max(1, n // 200)
    if workers > 1 and n >= PARALLEL_FROM and "fork" in mp.get_all_start_methods():
        # fork: the workers inherit the loaded readers instead of importing torch again (seconds each)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            for i, result in enumerate(pool.map(work, jobs, chunksize=max(16, n // (workers * 32)))):
                out.append(result)
                if progress and i % step == 0:
                    progress(i, n)
    else:
        for i, job in enumerate(jobs):
            out.append(work(job))
            if progress and i % step == 0:
                progress(i, n)
    return out


def _shape_text(shape: Sequence[int | None]) -> str:
    axes = "C×H×W" if len(shape) == 3 else "C×D×H×W"
    return "×".join("any" if s is None else str(s) for s in shape) + f" ({axes})"


def _column_notes(frame: pd.DataFrame, attributes: list[str], schema: dict[str, str]) -> list[str]:
    """What happened to columns Glassbox does not know: loaded as attributes, with a warning for near-misses of
    its own columns (a ``lable`` column leaves every case unlabelled) and for empty columns."""
    notes = []
    absent = [k for k in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if k not in frame.columns]
    for column in attributes:
        close = difflib.get_close_matches(column.strip().lower(), absent, n=1, cutoff=0.7)
        if close:
            notes.append(f"column {column!r} is not a Glassbox column: did you mean {close[0]!r}? It was loaded as "
                         f"an attribute, so the manifest has no {close[0]!r} column")
    empty = [c for c in attributes if (frame[c].str.strip() == "").all()]
    if empty:
        notes.append(f"column(s) {empty} are empty")
    if attributes:
        kinds = ", ".join(f"{a} ({schema[a]})" for a in attributes)
        notes.append(f"columns beyond {list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)} are loaded as attributes: {kinds}")
    return notes


def _attribute_kind(values: pd.Series) -> str:
    present = values[values != ""]
    if len(present) and pd.to_numeric(present, errors="coerce").notna().all():
        return "numeric"
    return "categorical"


def _label(text: str, class_names: Sequence[str] | None) -> tuple[int | None, str | None]:
    """A label cell as a class index (given as an index or as one of ``class_names``), or why it is not one."""
    if class_names is not None and text in class_names:
        return list(class_names).index(text), None
    try:
        value = float(text)
    except ValueError:
        if class_names is None:
            return None, (f"label {text!r} is a name, not a class index; check the cohort against a model (its "
                          "class_names map names to indices)")
        close = difflib.get_close_matches(text, list(class_names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return None, f"label {text!r} is not one of the model's classes {list(class_names)}{hint}"
    if not value.is_integer():
        return None, f"label {text!r} is not an integer class index"
    label = int(value)
    if label < 0 or (class_names is not None and label >= len(class_names)):
        valid = (f"0..{len(class_names) - 1} ({', '.join(class_names)})" if class_names is not None
                 else "a non-negative integer")
        return None, f"label {label} is outside the classes: expected {valid}"
    return label, None


def load_manifest(
    path: str | Path,
    *,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    input_shape: Sequence[int | None] | None = None,
    roots: Sequence[str | Path] | None = None,
    allow_columns: Sequence[str] = (),
    channels: str | None = None,
    salt: str | None = None,
    progress: Progress | None = None,
    check: str = "auto",
    workers: int | None = None,
    cluster_column: str | None = None,
) -> Cohort:
    """Load and validate a manifest.

    ``class_names`` (from a model) bounds the labels; ``input_shape`` (``(C, *spatial)``, from a model's
    ``Preprocessing.accepts``; ``None`` for an axis the model resamples) fixes the image shape, which otherwise
    is the most common shape in the manifest. ``roots`` are the folders
    images may live under (default: the manifest's folder). Attribute columns that look like identifiers, by
    name or content (:mod:`data_adapters.identifiers`), are not loaded unless named in ``allow_columns``.
    ``channels``: the model's channel conversion (``Preprocessing.channels``), applied before the shape check.
    A ``label`` may be a class index or one of ``class_names`` (the model's order). A patient column
    (:data:`PATIENT_COLUMNS`) becomes ``Case.patient``, an HMAC of the value keyed with ``salt`` (the operator's
    secret; without one, a key made for this call, so the hashes group images but match nothing outside it).
    ``check``: ``pixels`` decodes every image; ``header`` reads each file once, hashes it and takes its shape from
    the header (see :func:`check_file`); ``auto`` (default) decodes under :data:`HEADER_FROM` distinct files.
    ``workers``: processes that check files (default: the CPU count, from :data:`PARALLEL_FROM` files).
    ``cluster_column``: the operator's choice of the column that groups images (settings.json ``cluster_column``);
    by default a patient column, else a lesion column (:func:`cluster_column_of`); the load report names it.
    Raises :class:`InvalidInputError` only when the manifest as a whole is unusable; bad rows go to the load
    report.
    """
    if check not in ("auto", "header", "pixels"):
        raise InvalidInputError(f"check must be auto, header or pixels, got {check!r}")
    path = Path(path).resolve()
    frame = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(MSG_MISSING_COLUMNS.format(path=path, missing=missing, present=list(frame.columns)))
    base = path.parent
    root_paths = [Path(r).resolve() for r in (roots or [base])]
    notes: list[str] = []
    patient_column = cluster_column_of([str(c) for c in frame.columns], cluster_column, path=path)
    key = salt or secrets.token_hex(16)
    candidates = [c for c in frame.columns if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, patient_column)]
    held = {c: "its name marks a direct identifier" for c in candidates if c.strip().lower() in IDENTIFIER_COLUMNS
            and c.strip().lower() not in {a.strip().lower() for a in allow_columns}}
    held |= {c: why for c, why in screen_columns(frame, [c for c in candidates if c not in held],
                                                  allow_columns).items()}
    dropped = list(held)
    for column, why in held.items():
        notes.append(f"column {column!r} was not loaded: {why}; the operator can allow it by name "
                     "(settings.json allow_columns)")
    attributes = [c for c in candidates if c not in dropped]
    if patient_column:
        what = "lesion" if patient_column.strip().lower() in LESION_COLUMNS else "patient"
        how = "chosen by the operator" if cluster_column else f"says which {what} each image came from"
        notes.append(f"cluster column {patient_column!r} ({how}): kept as a keyed hash (never shown), and "
                     f"intervals resample {patient_column!r} clusters, not images; settings.json cluster_column "
                     "chooses another")
    else:
        notes.append("no cluster column (patient_id, lesion_id, ...): intervals treat every image as independent; "
                     "if several images share a patient or lesion, name the column in settings.json cluster_column")
    schema = {a: _attribute_kind(frame[a]) for a in attributes}
    notes.extend(_column_notes(frame, attributes, schema))

    n = len(frame)
    rejections: list[Rejection] = []

    # 1. what each row says, checked without touching a file
    first_seen: dict[str, int] = {}
    staged: list[tuple[int, int | None, str, str | None]] = []  # (row, label, image candidate, mask candidate)
    ids = frame["case_id"].astype(str).str.strip().tolist()
    refs = frame["image"].astype(str).str.strip().tolist()
    labels = frame["label"].astype(str).str.strip().tolist() if "label" in frame else [""] * n
    mask_refs = frame["mask"].astype(str).str.strip().tolist() if "mask" in frame else [""] * n
    label_of: dict[str, tuple[int | None, str | None]] = {}
    # a label or attribute that would display otherwise than stored (a bidi override in a site name): row → field
    displayed_otherwise: dict[int, str] = {}
    for column in [c for c in ("label", *attributes) if c in frame]:
        for row in np.flatnonzero(frame[column].astype(str).str.contains(UNSAFE_CHARACTERS).to_numpy()):
            displayed_otherwise.setdefault(int(row) + 1, column)
    for i, (case_id, ref, text, mref) in enumerate(zip(ids, refs, labels, mask_refs), start=1):
        def reject(field: str, reason: str, _i: int = i, _cid: str = case_id) -> None:
            rejections.append(Rejection(row=_i, case_id=_cid or None, field=field, reason=reason))

        if not case_id:
            reject("case_id", "empty case_id")
            continue
        unsafe = next(((f, why) for f, v in (("case_id", case_id), ("image", ref), ("mask", mref))
                       if (why := unsafe_characters(v))), None)
        if unsafe:  # the value is never echoed: it would display otherwise than it is stored
            rejections.append(Rejection(row=i, case_id=None, field=unsafe[0], reason=f"{unsafe[0]} holds {unsafe[1]}; "
                                        "refused (retype it in plain characters)"))
            continue
        if i in displayed_otherwise:
            column = displayed_otherwise[i]
            value = frame[column].iloc[i - 1]
            reject(column, f"{'label' if column == 'label' else 'attribute ' + repr(column)} holds "
                           f"{unsafe_characters(value)}; refused (retype it in plain characters)")
            continue
        if case_id in first_seen:
            reject("case_id", f"duplicate case_id {case_id!r} (first at row {first_seen[case_id]})")
            continue
        first_seen[case_id] = i
        label = None
        if text:
            if text not in label_of:
                label_of[text] = _label(text, class_names)
            label, why = label_of[text]
            if why:
                reject("label", why)
                continue
        if not ref:
            reject("image", "empty image path")
            continue
        try:
            image_job = _candidate(base, ref)
        except InvalidInputError as e:
            reject("image", str(e))
            continue
        try:
            mask_job = _candidate(base, mref) if mref else None
        except InvalidInputError as e:
            reject("mask", str(e))
            continue
        staged.append((i, label, image_job, mask_job))

    # 2. every distinct file once: resolved, hashed, its shape from the header (or pixels), in parallel
    refs_of = {}
    for i, _, image_job, mask_job in staged:
        refs_of.setdefault(image_job, refs[i - 1])
        if mask_job:
            refs_of.setdefault(mask_job, mask_refs[i - 1])
    jobs = list(refs_of.items())
    pixels = check == "pixels" or (check == "auto" and len(jobs) < HEADER_FROM)
    results = dict(zip(refs_of, check_files(jobs, roots=root_paths, channels=channels, pixels=pixels,
                                             progress=progress, workers=workers)))
    if progress:
        progress(len(jobs), len(jobs))
    if not pixels:
        notes.append(f"{len(jobs)} file(s) checked from their headers without decoding pixels (PNG chunk CRCs and "
                     "JPEG end markers verified; DICOM and NIfTI read in full); a file whose pixels still fail is "
                     "named when it is first predicted")

    def problem(result: FileCheck) -> str:
        return mask_paths((result.error or "").replace(str(base) + "/", ""))

    kept: list[tuple[int, int | None, FileCheck, FileCheck | None]] = []
    for i, label, image_job, mask_job in staged:
        image, mask = results[image_job], results[mask_job] if mask_job else None
        if image.error:
            rejections.append(Rejection(row=i, case_id=ids[i - 1], field="image", reason=problem(image)))
            continue
        if mask is not None:
            if mask.error:
                rejections.append(Rejection(row=i, case_id=ids[i - 1], field="mask", reason=problem(mask)))
                continue
            if not os.path.isfile(mask.path):
                rejections.append(Rejection(row=i, case_id=ids[i - 1], field="mask",
                                            reason=f"file not found: {mask_refs[i - 1]}"))
                continue
            if mask.raw_shape[0] != 1:
                rejections.append(Rejection(row=i, case_id=ids[i - 1], field="mask", reason=(
                    f"mask has {mask.raw_shape[0]} channels; a mask is one channel of labels (0 background), "
                    "not a colour image")))
                continue
            if mask.raw_shape[1:] != image.raw_shape[1:]:
                rejections.append(Rejection(row=i, case_id=ids[i - 1], field="mask", reason=(
                    f"mask is {'×'.join(map(str, mask.raw_shape[1:]))}, image is "
                    f"{'×'.join(map(str, image.raw_shape[1:]))}")))
                continue
        kept.append((i, label, image, mask))

    # 3. the shape the cohort must have, then the table (columns, not a million records)
    if input_shape is not None:
        expected = tuple(None if s is None else int(s) for s in input_shape)
        why = "the model expects"
    else:
        counts = Counter(r[2].shape for r in kept)
        expected = counts.most_common(1)[0][0] if counts else None
        why = "most images in this cohort are"
    implausible_values = _implausible(frame, attributes, schema, [r[0] for r in kept])
    accepted = []
    fitting = {}
    for i, label, image, mask in kept:
        if expected is not None:
            if image.shape not in fitting:
                fitting[image.shape] = fits(image.shape, expected)
            if not fitting[image.shape]:
                rejections.append(Rejection(row=i, case_id=ids[i - 1], field="image", reason=(
                    f"image is {_shape_text(image.shape)}; {why} {_shape_text(expected)}")))
                continue
        accepted.append((i, label, image, mask))

    if implausible_values:
        shown = "; ".join(implausible_values[:5]) + (f"; and {len(implausible_values) - 5} more"
                                                     if len(implausible_values) > 5 else "")
        notes.append(f"{len(implausible_values)} implausible attribute value(s): {shown}")
    rejections.sort(key=lambda r: r.row)
    report = LoadReport(source=str(path), n_rows=n, rejections=tuple(rejections), notes=tuple(notes))
    rows = [r[0] - 1 for r in accepted]
    patients = None
    if patient_column:
        raw = frame[patient_column].astype(str).str.strip().iloc[rows]
        unique = {v: (salted(key, v) if v else None) for v in raw.unique()}
        patients = raw.map(unique).tolist()
    table = pd.DataFrame({
        "case_id": [ids[i] for i in rows],
        "image": [r[2].path for r in accepted],
        "image_hash": [r[2].hash for r in accepted],
        "shape": ["x".join(map(str, r[2].shape)) for r in accepted],
        "label": pd.array([r[1] for r in accepted], dtype="Int64"),
        "mask": [r[3].path if r[3] else None for r in accepted],
        "patient": patients if patients is not None else [None] * len(rows),
        "_image_size": [r[2].size for r in accepted], "_image_mtime": [r[2].mtime_ns for r in accepted],
        "_mask_hash": [r[3].hash if r[3] else None for r in accepted],
        "_mask_size": [r[3].size if r[3] else -1 for r in accepted],
        "_mask_mtime": [r[3].mtime_ns if r[3] else -1 for r in accepted]})
    for a in attributes:
        table[f"a:{a}"] = _attribute_values(frame[a].iloc[rows], schema[a], a).to_numpy()
    cases = CaseTable(table, schema)
    return Cohort(name=name or path.parent.name, cases=cases, attribute_schema=schema,
                  content_hash=content_hash_of(cases), report=report)


def _attribute_values(column: pd.Series, kind: str, name: str) -> pd.Series:
    """A manifest column as the table holds it: numeric as float64 (NaN missing or implausible), else strings
    (None missing)."""
    text = column.astype(str).str.strip()
    if kind == "numeric":
        values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype("float64")
        unique = values.dropna().unique()
        bad = [v for v in unique if implausible(name, float(v))]
        return values.where(~values.isin(bad), np.nan) if bad else values
    return text.astype(object).where(text != "", None)


def _implausible(frame: pd.DataFrame, attributes: Sequence[str], schema: dict[str, str],
                 rows: Sequence[int]) -> list[str]:
    """``row N: <column> <why>; kept as missing`` for every implausible numeric value of the kept ``rows``, in row
    order (each distinct value judged once)."""
    found = []
    chosen = np.asarray(rows, dtype=int) - 1
    for order, a in enumerate(attributes):
        if schema[a] != "numeric":
            continue
        text = frame[a].astype(str).str.strip().iloc[chosen]
        values = pd.to_numeric(text.where(text != "", None), errors="coerce")
        whys = {v: implausible(a, float(v)) for v in values.dropna().unique()}
        whys = {v: w for v, w in whys.items() if w}
        if not whys:
            continue
        for row, v in zip(np.asarray(rows)[values.isin(list(whys)).to_numpy()], values[values.isin(list(whys))]):
            found.append((int(row), order, f"row {int(row)}: {a} {whys[v]}; kept as missing"))
    return [text for _, _, text in sorted(found)]


def content_hash_of(cases: CaseTable) -> str:
    """The cohort's content hash: every case's id, image hash, label, attributes and mask hash (the same value a
    cohort of :class:`Case` records always had, so caches and recorded verdicts keep their keys)."""
    t = cases.table
    columns = []
    for name, kind in cases.schema.items():
        values = t[f"a:{name}"].tolist()
        if kind == "numeric":
            columns.append([None if v != v else (int(v) if float(v).is_integer() else v) for v in values])
        else:
            columns.append([None if v is None or v != v else v for v in values])
    names = list(cases.schema)
    attr_rows = [dict(zip(names, vals)) for vals in zip(*columns)] if columns else [{}] * len(t)
    mask_hashes = t["_mask_hash"].tolist() if "_mask_hash" in t else [None] * len(t)
    labels = [None if v is pd.NA or v != v else int(v) for v in t["label"].tolist()]
    return json_hash([(cid, h, lab, att, mh if isinstance(mh, str) and mh else None) for cid, h, lab, att, mh in
                      zip(t["case_id"].tolist(), t["image_hash"].tolist(), labels, attr_rows, mask_hashes)])


def peek_fit(path: str | Path, *, class_names: Sequence[str], input_shape: Sequence[int | None],
             channels: str | None = None, rows: int = 3) -> bool | None:
    """Whether a model can take this manifest, judged from its first ``rows`` rows without loading the cohort
    (labels among ``class_names``, images that fit after the channel conversion); None when it cannot tell
    cheaply (a DICOM folder, an unreadable manifest). A folder holding a manifest is that manifest."""
    try:
        path = cohort_source(path)
    except GlassboxError:
        return None
    if not path.is_file():
        return None
    try:
        frame = _read_table(path)
    except GlassboxError:
        return None
    base = path.resolve().parent
    for row in frame.head(rows).to_dict("records"):
        text = str(row.get("label", "")).strip()
        if text and _label(text, class_names)[1]:
            continue
        try:
            image = read_image(_resolve(base, str(row.get("image", "")).strip(), [base]))
            shape = convert_channels(channels, image.array).shape if channels else image.shape
        except GlassboxError:
            continue
        if fits(tuple(shape), tuple(input_shape)):
            return True
    return False


def load_image_batch(cases: Sequence[Case], pre: Preprocessing | None = None) -> np.ndarray:
    """Decode the images of ``cases`` into one float32 array ``(N, C, *spatial)``; with a model's
    preprocessing ``pre``, each on that model's grid (see :func:`fit_image`)."""
    if pre is None:
        return np.stack([read_image(c.image).array for c in cases])
    return np.stack([fit_image(pre, read_image(c.image)) for c in cases])


#: the cohort table's layout; a table written by another layout is checked again, never read. Layout 2 carries a
#: keyed MAC over its rows and its metadata (content hash, schema, load report)
TABLE_FORMAT = "glassbox-cohort-table-2"
_TABLE_MAC = MAC_FIELD
log = logging.getLogger("glassbox.cache")


def _table_seal(table: pa.Table, meta_text: bytes, key: str) -> str:
    return mac(key, table_mac(table, key).encode() + b"\x00" + meta_text)


def save_cohort_table(cohort: Cohort, path: str | Path, *, key: str) -> None:
    """Write a manifest cohort (its :class:`CaseTable`, schema, load report and content hash) as one Parquet file,
    so an unchanged cohort re-opens without a file being read (:func:`open_cohort_table`). ``key``: the operator's
    cache key; the file carries a MAC under it over every row and its metadata, so an edited label, path or hash
    is found on open."""
    if not isinstance(cohort.cases, CaseTable):
        raise InvalidInputError(f"cohort {cohort.name!r} is not held as a table")
    report = cohort.report
    meta = {"format": TABLE_FORMAT, "name": cohort.name, "schema": cohort.attribute_schema,
            "content_hash": cohort.content_hash,
            "report": {"source": report.source, "n_rows": report.n_rows, "notes": list(report.notes),
                       "rejections": [[r.row, r.case_id, r.field, r.reason] for r in report.rejections]}}
    table = pa.Table.from_pandas(cohort.cases.table, preserve_index=False)
    text = json.dumps(meta).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"glassbox": text,
                                           _TABLE_MAC: _table_seal(table, text, key).encode()})
    pq.write_table(table, path)


def _outside(paths: pd.Series, roots: Sequence[Path]) -> pd.Series:
    """Which of ``paths`` (absolute, as the table holds them) lie under none of ``roots``."""
    inside = pd.Series(False, index=paths.index)
    text = paths.astype(str)
    for root in roots:
        r = os.path.realpath(root).rstrip(os.sep)
        inside |= text.eq(r) | text.str.startswith(r + os.sep)
    return ~inside


def open_cohort_table(path: str | Path, *, key: str, roots: Sequence[Path] | None = None,
                      workers: int = 16) -> Cohort | None:
    """The cohort :func:`save_cohort_table` wrote, if its MAC under ``key`` holds, every image and mask it names lies
    under one of ``roots`` (when given) and still has the size and modification time it had when checked
    (``os.stat``, in threads); None when the file is missing, unreadable, of another layout, edited (its MAC
    fails, logged), points outside the roots (logged) or any file changed (the caller checks the manifest
    again)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        parquet = pq.read_table(path)
        text = parquet.schema.metadata[b"glassbox"]
        sealed = parquet.schema.metadata.get(_TABLE_MAC)
        meta = json.loads(text)
    except Exception:  # noqa: BLE001 - any unreadable table is rebuilt from the manifest
        return None
    if meta.get("format") != TABLE_FORMAT:
        return None
    if not mac_matches(key, table_mac(parquet, key).encode() + b"\x00" + text, sealed):
        log.warning("cohort table %s: its keyed MAC does not match its rows and metadata (edited, or written "
                    "without the operator's key); the cohort is checked again from its manifest", path.name)
        return None
    table = parquet.to_pandas()
    if roots is not None:
        named = pd.concat([table["image"], table.loc[table["mask"].notna(), "mask"]])
        outside = _outside(named, roots)
        if outside.any():
            log.warning("cohort table %s names %d file(s) outside the data roots; the cohort is checked again from "
                        "its manifest", path.name, int(outside.sum()))
            return None
    stats = pd.concat([
        table[["image", "_image_size", "_image_mtime"]].set_axis(["path", "size", "mtime"], axis=1),
        table.loc[table["mask"].notna(), ["mask", "_mask_size", "_mask_mtime"]].set_axis(["path", "size", "mtime"],
                                                                                           axis=1)])
    stats = stats.drop_duplicates("path")

    def now(p: str) -> tuple[int, int]:
        try:
            st = os.stat(p)
        except OSError:
            return -2, -2
        return st.st_size, st.st_mtime_ns

    paths = stats["path"].tolist()
    if len(paths) > 256:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            current = list(pool.map(now, paths, chunksize=256))
    else:
        current = [now(p) for p in paths]
    sizes = np.fromiter((c[0] for c in current), np.int64, len(current))
    times = np.fromiter((c[1] for c in current), np.int64, len(current))
    if not (np.array_equal(sizes, stats["size"].to_numpy(np.int64))
            and np.array_equal(times, stats["mtime"].to_numpy(np.int64))):
        return None
    r = meta["report"]
    report = LoadReport(source=r["source"], n_rows=r["n_rows"], notes=tuple(r["notes"]),
                        rejections=tuple(Rejection(row=a, case_id=b, field=c, reason=d) for a, b, c, d in
                                         r["rejections"]))
    return Cohort(name=meta["name"], cases=CaseTable(table, meta["schema"]), attribute_schema=meta["schema"],
                  content_hash=meta["content_hash"], report=report)
