"""Cohort manifests (CSV or Parquet) to a validated :class:`Cohort` and its load report.

A manifest has ``case_id``, ``image`` (a path relative to the manifest), optional ``label`` and ``mask``,
and any attribute columns. Every bad row is rejected with a message naming the row, the field and the
problem; the good rows still load.
"""
from __future__ import annotations

import difflib
import os
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path, PureWindowsPath

import numpy as np
import pandas as pd

from data_adapters.errors import GlassboxError, InvalidInputError
from data_adapters.hashing import file_hash, json_hash, path_hash, salted
from data_adapters.identifiers import implausible, mask_paths, screen_columns
from data_adapters.preprocessing import convert_channels, fit_image, fits
from data_adapters.readers import read_image
from data_adapters.readers.dicom_series import parse_series_ref
from data_adapters.records import Case, Cohort, LoadReport, Preprocessing, Rejection

__all__ = ["load_manifest", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "IDENTIFIER_COLUMNS"]

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

MSG_NOT_FOUND = "{path}: manifest not found"
MSG_ENCODING = "{path}: manifest is not UTF-8 text (byte {pos}: {why}); save it as UTF-8"
MSG_FORMAT = "{path}: manifest must be .csv or .parquet, got {suffix!r}"
MSG_MISSING_COLUMNS = "{path}: manifest lacks required column(s) {missing}; it has {present}"
MSG_EMPTY = "{path}: manifest has no rows"


def _read_table(path: Path) -> pd.DataFrame:
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


def _resolve(base: Path, ref: str, roots: Sequence[Path]) -> Path:
    """``ref`` resolved against the manifest folder; must stay under one of ``roots``. Windows-style separators
    (``images\\a.png``) are read as folders; a drive letter (``C:\\data\\a.png``) is named with the fix."""
    if "\\" in ref and os.sep == "/":
        if PureWindowsPath(ref).drive:
            raise InvalidInputError(f"path {ref!r} is a Windows absolute path (drive {PureWindowsPath(ref).drive}); "
                                    "give images relative to the manifest, e.g. images/a.png")
        ref = ref.replace("\\", "/")
    p = Path(ref)
    resolved = (p if p.is_absolute() else base / p).resolve()
    if not any(resolved.is_relative_to(r) for r in roots):
        raise InvalidInputError(f"path {ref!r} points outside the data root(s) {', '.join(map(str, roots))}")
    return resolved


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
    Raises :class:`InvalidInputError` only when the manifest as a whole is unusable; bad rows go to the load
    report.
    """
    path = Path(path).resolve()
    frame = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(MSG_MISSING_COLUMNS.format(path=path, missing=missing, present=list(frame.columns)))
    base = path.parent
    root_paths = [Path(r).resolve() for r in (roots or [base])]
    notes: list[str] = []
    patient_column = next((c for c in frame.columns if c.strip().lower() in PATIENT_COLUMNS), None)
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
        notes.append(f"column {patient_column!r} says which patient each image came from: kept as a keyed hash "
                     "(never shown), and intervals resample patients, not images")
    schema = {a: _attribute_kind(frame[a]) for a in attributes}
    notes.extend(_column_notes(frame, attributes, schema))

    rejections: list[Rejection] = []
    implausible_values: list[str] = []
    staged: list[tuple[int, dict]] = []
    first_seen: dict[str, int] = {}
    n = len(frame)
    for i, row in enumerate(frame.to_dict("records"), start=1):
        if progress:
            progress(i - 1, n)
        case_id = str(row["case_id"]).strip()

        def reject(field: str, reason: str, _i: int = i, _cid: str = case_id) -> None:
            rejections.append(Rejection(row=_i, case_id=_cid or None, field=field, reason=reason))

        if not case_id:
            reject("case_id", "empty case_id")
            continue
        if case_id in first_seen:
            reject("case_id", f"duplicate case_id {case_id!r} (first at row {first_seen[case_id]})")
            continue
        first_seen[case_id] = i

        label = None
        text = str(row.get("label", "")).strip()
        if text:
            label, why = _label(text, class_names)
            if why:
                reject("label", why)
                continue

        ref = str(row["image"]).strip()
        if not ref:
            reject("image", "empty image path")
            continue
        try:
            image_path = _resolve(base, ref, root_paths)
            if not image_path.exists() and not parse_series_ref(image_path):
                raise InvalidInputError(f"file not found: {ref}")
            image = read_image(image_path)
            shape = convert_channels(channels, image.array, ref).shape if channels else image.shape
        except GlassboxError as e:
            reject("image", mask_paths(str(e).replace(str(base) + "/", "")))
            continue

        mask_path = None
        mref = str(row.get("mask", "")).strip()
        if mref:
            try:
                mask_path = _resolve(base, mref, root_paths)
                if not mask_path.is_file():
                    raise InvalidInputError(f"file not found: {mref}")
                mask = read_image(mask_path)
            except GlassboxError as e:
                reject("mask", mask_paths(str(e).replace(str(base) + "/", "")))
                continue
            if mask.shape[1:] != image.shape[1:]:
                reject("mask", f"mask is {'×'.join(map(str, mask.shape[1:]))}, image is "
                               f"{'×'.join(map(str, image.shape[1:]))}")
                continue

        attrs = {}
        for a in attributes:
            v = str(row[a]).strip()
            attrs[a] = None if v == "" else (float(v) if schema[a] == "numeric" else v)
            if schema[a] == "numeric" and attrs[a] is not None:
                why = implausible(a, attrs[a])
                if why:
                    implausible_values.append(f"row {i}: {a} {why}; kept as missing")
                    attrs[a] = None
                elif float(attrs[a]).is_integer():
                    attrs[a] = int(attrs[a])
        who = str(row[patient_column]).strip() if patient_column else ""
        staged.append((i, dict(case_id=case_id, image=image_path, image_hash=path_hash(image_path),
                               shape=tuple(shape), label=label, attributes=attrs, mask=mask_path,
                               patient=salted(key, who) if who else None)))
    if progress:
        progress(n, n)

    if input_shape is not None:
        expected = tuple(None if s is None else int(s) for s in input_shape)
        why = "the model expects"
    else:
        counts = Counter(s["shape"] for _, s in staged)
        expected = counts.most_common(1)[0][0] if counts else None
        why = "most images in this cohort are"
    cases = []
    for i, s in staged:
        if expected is not None and not fits(s["shape"], expected):
            rejections.append(Rejection(
                row=i, case_id=s["case_id"], field="image",
                reason=f"image is {_shape_text(s['shape'])}; {why} {_shape_text(expected)}"))
            continue
        cases.append(Case(**s))

    if implausible_values:
        shown = "; ".join(implausible_values[:5]) + (f"; and {len(implausible_values) - 5} more"
                                                     if len(implausible_values) > 5 else "")
        notes.append(f"{len(implausible_values)} implausible attribute value(s): {shown}")
    rejections.sort(key=lambda r: r.row)
    report = LoadReport(source=str(path), n_rows=n, rejections=tuple(rejections), notes=tuple(notes))
    content_hash = json_hash([(c.case_id, c.image_hash, c.label, c.attributes,
                               file_hash(c.mask) if c.mask else None) for c in cases])
    return Cohort(name=name or path.parent.name, cases=tuple(cases), attribute_schema=schema,
                  content_hash=content_hash, report=report)


def peek_fit(path: str | Path, *, class_names: Sequence[str], input_shape: Sequence[int | None],
             channels: str | None = None, rows: int = 3) -> bool | None:
    """Whether a model can take this manifest, judged from its first ``rows`` rows without loading the cohort
    (labels among ``class_names``, images that fit after the channel conversion); None when it cannot tell
    cheaply (a DICOM folder, an unreadable manifest)."""
    path = Path(path)
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
