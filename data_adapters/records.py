"""Typed records: the only things that cross package borders.

Shapes are channel-first without a batch axis: a 2D image is ``(C, H, W)``, a volume ``(C, D, H, W)``.
Records validate themselves on construction, so a malformed one never travels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER

__all__ = [
    "Image", "Case", "CaseTable", "Rejection", "LoadReport", "Cohort", "Preprocessing", "ModelCard", "ModelHandle",
    "Prediction", "Attribution", "ConceptScore", "TASKS", "CHANNELS", "default_version",
]

#: ``binary``: one logit, sigmoid, classes (negative, positive); ``multiclass``: C logits, softmax;
#: ``multilabel``: C logits, independent sigmoids.
TASKS = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded image: float32, channel-first, plus physical spacing per spatial axis (mm, or 1.0) and, where
    the file states one, a default display window ``(center, width)`` in the array's units."""

    array: np.ndarray
    spacing: tuple[float, ...]
    source: str
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.array.dtype != np.float32:
            raise InvalidInputError(f"{self.source}: image array must be float32, got {self.array.dtype}")
        if self.array.ndim not in (3, 4):
            raise InvalidInputError(f"{self.source}: image must be (C,H,W) or (C,D,H,W), got shape {self.array.shape}")
        if len(self.spacing) != self.array.ndim - 1:
            raise InvalidInputError(f"{self.source}: spacing {self.spacing} does not match shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(frozen=True)
class Case:
    """One row of a cohort: an image reference, its content hash, label, attributes and optional mask.

    ``patient``: a keyed hash of the patient the image came from (from a manifest's patient column or DICOM's
    PatientID), never shown; it groups a patient's images so that intervals resample patients."""

    case_id: str
    image: Path
    image_hash: str
    shape: tuple[int, ...]
    label: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    mask: Path | None = None
    patient: str | None = None

    def __post_init__(self) -> None:
        if not self.case_id:
            raise InvalidInputError("case_id must be a non-empty string")
        if self.label is not None and (not isinstance(self.label, int) or self.label < 0):
            raise InvalidInputError(f"case {self.case_id!r}: label must be a non-negative integer, got {self.label!r}")


@dataclass(frozen=True)
class Rejection:
    """Why one manifest row was not loaded. ``row`` is 1-based over data rows (the header is not a row)."""

    row: int
    case_id: str | None
    field: str
    reason: str

    def __str__(self) -> str:
        who = f" (case {self.case_id})" if self.case_id else ""
        return f"row {self.row}{who}, field '{self.field}': {self.reason}"


@dataclass(frozen=True)
class LoadReport:
    """What happened when a cohort was loaded: rows seen, loaded, every rejection, and notes."""

    source: str
    n_rows: int
    rejections: tuple[Rejection, ...] = ()
    notes: tuple[str, ...] = ()
    #: what a row is: a manifest row, or (for a folder of DICOM studies) a file, several of which may make a case
    unit: str = "rows"
    #: cases loaded, where rows and cases differ (a series of slice files is one case)
    n_cases: int | None = None

    @property
    def n_loaded(self) -> int:
        return self.n_rows - len({r.row for r in self.rejections})

    @property
    def n_rejected(self) -> int:
        return len({r.row for r in self.rejections})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"row": r.row, "case_id": r.case_id, "field": r.field, "reason": r.reason} for r in self.rejections],
            columns=["row", "case_id", "field", "reason"],
        )

    def grouped(self, first: int = 5) -> pd.DataFrame:
        """Rejections with the same field and reason as one row: ``rows`` (how many), ``field``, ``reason`` and
        ``first_rows`` (the first few row numbers), most common first: a cohort whose 1000 rows fail alike reads as
        one line, not 1000."""
        groups: dict[tuple[str, str], list[int]] = {}
        for r in self.rejections:
            groups.setdefault((r.field, r.reason), []).append(r.row)
        rows = [{"rows": len(set(at)), "field": f, "reason": why,
                 "first_rows": ", ".join(map(str, sorted(set(at))[:first])) + (", …" if len(set(at)) > first else "")}
                for (f, why), at in groups.items()]
        rows.sort(key=lambda r: (-r["rows"], r["first_rows"]))
        return pd.DataFrame(rows, columns=["rows", "field", "reason", "first_rows"])

    def grouped_lines(self, first: int = 5) -> list[str]:
        """:meth:`grouped` as text lines for the command line."""
        return [f"{g.rows} {self.unit if g.rows != 1 else self.unit.rstrip('s')}, field '{g.field}': {g.reason} "
                f"({'row' if g.rows == 1 else 'rows'} {g.first_rows})" for g in self.grouped(first).itertuples()]

    def summary(self) -> str:
        if self.unit == "rows":
            return f"{self.source}: {self.n_loaded} of {self.n_rows} rows loaded, {self.n_rejected} rejected"
        return (f"{self.source}: {self.n_cases} case(s) from {self.n_rows} {self.unit}; {self.n_rejected} rejected "
                f"(a rejected series counts once)")


class CaseTable(Sequence):
    """A cohort's cases as columns (one row per case), read as :class:`Case` records one at a time.

    A million cases as a million frozen dataclasses cost seconds to build and hundreds of megabytes; as a table
    they load from Parquet in a fraction of a second, and a :class:`Case` is made only for the case asked for.
    Columns: ``case_id``, ``image``, ``image_hash``, ``shape`` (``"1x64x64"``), ``label`` (Int64), ``mask``
    (path or None), ``patient`` (keyed hash or None) and one ``a:<name>`` column per attribute (numeric as
    float64 with NaN for missing, categorical as strings with None)."""

    COLUMNS = ("case_id", "image", "image_hash", "shape", "label", "mask", "patient")

    def __init__(self, table: pd.DataFrame, schema: dict[str, str]) -> None:
        self.table = table.reset_index(drop=True)
        self.schema = dict(schema)
        self._index: dict[str, int] | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_cases(cls, cases: Sequence[Case], schema: dict[str, str]) -> CaseTable:
        columns: dict[str, list] = {
            "case_id": [c.case_id for c in cases], "image": [str(c.image) for c in cases],
            "image_hash": [c.image_hash for c in cases], "shape": ["x".join(map(str, c.shape)) for c in cases],
            "label": pd.array([c.label for c in cases], dtype="Int64"),
            "mask": [str(c.mask) if c.mask else None for c in cases],
            "patient": [c.patient for c in cases]}
        for name, kind in schema.items():
            values = [c.attributes.get(name) for c in cases]
            columns[f"a:{name}"] = (pd.array([np.nan if v is None else float(v) for v in values], dtype="float64")
                                    if kind == "numeric" else pd.array(values, dtype=object))
        return cls(pd.DataFrame(columns), schema)

    def __len__(self) -> int:
        return len(self.table)

    def _shape(self, text: str) -> tuple[int, ...]:
        if text not in self._shapes:
            self._shapes[text] = tuple(int(v) for v in text.split("x"))
        return self._shapes[text]

    def _case(self, i: int) -> Case:
        row = self.table.iloc[i]
        attributes = {}
        for name, kind in self.schema.items():
            v = row[f"a:{name}"]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                attributes[name] = None
            elif kind == "numeric":
                attributes[name] = int(v) if float(v).is_integer() else float(v)
            else:
                attributes[name] = v
        label = row["label"]
        return Case(case_id=row["case_id"], image=Path(row["image"]), image_hash=row["image_hash"],
                    shape=self._shape(row["shape"]), label=None if pd.isna(label) else int(label),
                    attributes=attributes, mask=Path(row["mask"]) if _present(row["mask"]) else None,
                    patient=row["patient"] if _present(row["patient"]) else None)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self._case(k) for k in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._case(i)

    def __iter__(self):
        return (self._case(i) for i in range(len(self)))

    @property
    def ids(self) -> list[str]:
        return self.table["case_id"].tolist()

    def position(self, case_id: str) -> int | None:
        if self._index is None:
            self._index = {cid: i for i, cid in enumerate(self.table["case_id"].tolist())}
        return self._index.get(case_id)

    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame({"case_id": self.table["case_id"], "label": self.table["label"].astype("Int64")})
        for name, kind in self.schema.items():
            column = self.table[f"a:{name}"]
            out[name] = column if kind == "numeric" else column.astype(object).where(column.notna(), None)
        return out


def _present(value: Any) -> bool:
    """A table cell that holds a value (not None, NaN or empty)."""
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)))


@dataclass(frozen=True)
class Cohort:
    """A set of cases, their attribute schema (name → 'categorical' | 'numeric'), a content hash and a load report.

    ``cases`` is a tuple of :class:`Case`, or for a manifest a :class:`CaseTable` (the same cases, held as columns
    so that a million-case cohort opens in a second)."""

    name: str
    cases: Sequence[Case]
    attribute_schema: dict[str, str]
    content_hash: str
    report: LoadReport

    def __post_init__(self) -> None:
        ids = pd.Series(self.case_ids)
        if not ids.is_unique:
            raise InvalidInputError(f"cohort {self.name!r}: case ids are not unique")

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def case_ids(self) -> list[str]:
        """Every case id in order (without making a :class:`Case` per row)."""
        if isinstance(self.cases, CaseTable):
            return self.cases.ids
        return [c.case_id for c in self.cases]

    @property
    def image_hashes(self) -> list[str]:
        """Every case's image content hash, in order."""
        if isinstance(self.cases, CaseTable):
            return self.cases.table["image_hash"].tolist()
        return [c.image_hash for c in self.cases]

    def case(self, case_id: str) -> Case:
        if isinstance(self.cases, CaseTable):
            i = self.cases.position(case_id)
            if i is not None:
                return self.cases[i]
        else:
            for c in self.cases:
                if c.case_id == case_id:
                    return c
        raise InvalidInputError(f"cohort {self.name!r} has no case {case_id!r}")

    def _patients(self) -> list[str | None]:
        if isinstance(self.cases, CaseTable):
            return [v if _present(v) else None for v in self.cases.table["patient"].tolist()]
        return [c.patient for c in self.cases]

    @property
    def n_patients(self) -> int | None:
        """Distinct patients where the cohort says which patient each image came from, else None."""
        keys = {p for p in self._patients() if p}
        return len(keys) if keys else None

    def frame(self) -> pd.DataFrame:
        """One row per case: ``case_id``, ``label`` and one column per attribute (no paths). Where patients are
        known, ``_cluster``: an integer per patient (by first appearance; not the hash, and never shown) that the
        statistics resample by; a case without a patient key is its own cluster. Built once per cohort (a copy is
        returned, so a caller may change it)."""
        cached = self.__dict__.get("_frame")
        if cached is None:
            cached = self._build_frame()
            object.__setattr__(self, "_frame", cached)
        return cached.copy()

    def _build_frame(self) -> pd.DataFrame:
        if isinstance(self.cases, CaseTable):
            frame = self.cases.frame()
        else:
            rows = [{"case_id": c.case_id, "label": c.label, **c.attributes} for c in self.cases]
            frame = pd.DataFrame(rows, columns=["case_id", "label", *self.attribute_schema])
            frame["label"] = frame["label"].astype("Int64")
        patients = self._patients()
        if any(patients):
            keys = pd.Series(patients, dtype=object)
            own = "\0" + frame["case_id"].astype(str)
            frame[CLUSTER] = pd.factorize(keys.where(keys.notna() & (keys != ""), own))[0]
        return frame


INTENSITIES = ("none", "minmax", "zscore", "range")
#: ``grey``: a one-channel model takes greyscale saved as RGB (identical channels; real colour is refused);
#: ``luminance``: a one-channel model takes colour images converted to grey (ITU-R BT.601 weights), asked for
#: explicitly because colour is often diagnostic; ``rgb``: a three-channel model takes greyscale images repeated
#: into three channels.
CHANNELS = ("grey", "luminance", "rgb")


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: input channels, spatial size, intensity normalisation, and optionally a geometry
    step that brings other images onto that grid: ``spacing`` (resample to this voxel size in mm, then pad or
    crop to ``spatial_size``) or ``resize`` (stretch to ``spatial_size``). Without one, images must already be
    ``spatial_size``. ``intensity`` is ``none``, ``minmax`` (per image, to 0..1), ``zscore`` (per image) or
    ``range`` (``intensity_range`` = (a_min, a_max, b_min, b_max): a fixed window, clipped, e.g. HU → 0..1).

    Applied identically for prediction and for attribution (see ``data_adapters.preprocessing``).
    """

    in_channels: int
    spatial_size: tuple[int, ...]
    intensity: str = "none"
    intensity_range: tuple[float, float, float, float] | None = None
    resize: bool = False
    spacing: tuple[float, ...] | None = None
    channels: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.resize, bool):
            raise InvalidInputError(f"preprocessing.resize must be true or false, got {self.resize!r}")
        if self.channels is not None:
            if self.channels not in CHANNELS:
                raise InvalidInputError(f"preprocessing.channels {self.channels!r} is not one of {CHANNELS}")
            want = 3 if self.channels == "rgb" else 1
            if self.in_channels != want:
                raise InvalidInputError(f"preprocessing.channels {self.channels!r} converts images to {want} "
                                        f"channel(s), but in_channels is {self.in_channels}")
        if self.intensity not in INTENSITIES:
            raise InvalidInputError(f"preprocessing.intensity {self.intensity!r} is not one of {INTENSITIES}")
        if (self.intensity == "range") != (self.intensity_range is not None and len(self.intensity_range) == 4):
            raise InvalidInputError("preprocessing.intensity 'range' needs intensity_range [a_min, a_max, b_min, "
                                    "b_max], and intensity_range needs intensity 'range'")
        if self.spacing is not None and (len(self.spacing) != len(self.spatial_size) or min(self.spacing) <= 0):
            raise InvalidInputError(f"preprocessing.spacing {self.spacing} must give one positive size (mm) per "
                                    f"axis of spatial_size {self.spatial_size}")
        if self.in_channels < 1 or len(self.spatial_size) not in (2, 3) or min(self.spatial_size) < 1:
            raise InvalidInputError(
                f"preprocessing needs in_channels >= 1 and a 2D or 3D spatial_size, got "
                f"in_channels={self.in_channels}, spatial_size={self.spatial_size}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.spatial_size)

    @property
    def resamples(self) -> bool:
        return self.resize or self.spacing is not None

    @property
    def accepts(self) -> tuple[int | None, ...]:
        """The image shapes this model takes as read: ``None`` marks an axis of any size (resampled)."""
        channels = None if self.channels else self.in_channels
        if self.resamples:
            return (channels, *([None] * len(self.spatial_size)))
        return (channels, *self.spatial_size)

    def describe(self) -> str:
        shape = "×".join(map(str, self.input_shape))
        steps = [f"{len(self.spatial_size)}D input {shape} (channels × spatial)"]
        if self.spacing is not None:
            steps.append(f"resampled to {' × '.join(f'{s:g}' for s in self.spacing)} mm, then padded/cropped")
        elif self.resize:
            steps.append("resized to fit")
        if self.channels:
            steps.append({"grey": "greyscale saved as colour read as one channel",
                          "luminance": "colour converted to grey (luminance)",
                          "rgb": "colour images passed through unchanged, greyscale ones repeated into three "
                                 "channels"}[self.channels])
        steps.append(f"intensity '{self.intensity}'" + (f" {list(self.intensity_range)}" if self.intensity_range
                                                         else ""))
        return ", ".join(steps)


@dataclass(frozen=True)
class ModelCard:
    """The model's own account of itself, shown to every user and kept in reports."""

    intended_use: str = "not stated"
    training_data: str = "not stated"
    limitations: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model, ready for inference: module in eval mode plus everything needed to use it honestly."""

    name: str
    version: str
    module: torch.nn.Module
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    task: str
    weights_hash: str
    card: ModelCard
    source: str
    explain_layer: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidInputError(f"model {self.name!r}: task {self.task!r} is not one of {TASKS}")
        if len(self.class_names) < 2 and self.task != "multilabel":
            raise InvalidInputError(f"model {self.name!r}: needs at least two class names, got {self.class_names}")
        if len(set(self.class_names)) != len(self.class_names):
            raise InvalidInputError(f"model {self.name!r}: class names are not unique: {self.class_names}")
        if self.task == "binary" and len(self.class_names) != 2:
            raise InvalidInputError(f"model {self.name!r}: a binary model has exactly two class names")

    @property
    def spatial_dims(self) -> int:
        return len(self.preprocessing.spatial_size)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def hookable(self) -> bool:
        """Whether forward hooks can be put on the model's layers (Grad-CAM, TCAV, Monte Carlo dropout, in-place
        activations switched off): every Python module can; a TorchScript archive (``torch.jit.ScriptModule``)
        cannot. The one place this is asked."""
        return not isinstance(self.module, torch.jit.ScriptModule)

    @property
    def judged_by_top_class(self) -> bool:
        """A single-label model of more than two classes: its outcome for a case is its top class against the label
        (binary and multi-label models: each class at its own threshold)."""
        return self.task == "multiclass" and self.n_classes > 2

    @property
    def stated_threshold(self) -> float | None:
        """The model's own operating threshold for its positive class, where its card states one
        (``card.operating_threshold`` in ``model.json``; binary models only): it takes precedence over a threshold
        fitted on a cohort (``evaluation.operating_point``)."""
        text = self.card.extra.get("operating_threshold")
        if text is None or self.task != "binary":
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"model {self.name!r}: card.operating_threshold must be a number in [0, 1], "
                                    f"got {text!r}")
        return value

    def class_index(self, target: int | str) -> int:
        """The index of a class given by index or by name; raises with the valid options."""
        if isinstance(target, str) and target in self.class_names:
            return self.class_names.index(target)
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= int(target) < self.n_classes:
            return int(target)
        raise InvalidInputError(
            f"model {self.label}: target {target!r} is not a class; classes are "
            + ", ".join(f"{i}={n!r}" for i, n in enumerate(self.class_names))
        )


def default_version(handles: Mapping[str, ModelHandle | None]) -> str | None:
    """Which of a workspace's versions (name → loaded handle, ``None`` for one that failed to load; in the caller's
    order of preference) the app opens on: the first whose layers take hooks (:attr:`ModelHandle.hookable`), so
    that the default methods (Grad-CAM, TCAV) run, never a TorchScript archive that happens to be listed before
    it; else the first that loads; else the first listed."""
    names = list(handles)
    return (next((n for n in names if handles[n] is not None and handles[n].hookable), None)
            or next((n for n in names if handles[n] is not None), None)
            or next(iter(names), None))


@dataclass(frozen=True)
class Prediction:
    """Per-class probabilities for one case (sum to 1 for single-label tasks), plus uncertainty figures."""

    case_id: str
    probabilities: tuple[float, ...]
    uncertainty: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not all(0.0 <= p <= 1.0 and math.isfinite(p) for p in self.probabilities):
            raise InvalidInputError(f"case {self.case_id!r}: probabilities must lie in [0, 1]")


@dataclass(frozen=True, eq=False)
class Attribution:
    """One saliency map: same shape as the model input ``(C, *spatial)``, float32 in memory and on disk."""

    case_id: str
    model_hash: str
    method: str
    params: dict[str, Any]
    target: int
    array: np.ndarray
    seconds: float
    convergence_delta: float | None = None

    def __post_init__(self) -> None:
        if self.array.ndim not in (3, 4):
            raise InvalidInputError(f"attribution for {self.case_id!r} must be (C,H,W) or (C,D,H,W), got {self.array.shape}")

    def spatial_map(self, signed: bool = True) -> np.ndarray:
        """The map summed over channels, ``(*spatial)``; absolute values first unless ``signed``."""
        a = self.array.astype(np.float32)
        return a.sum(axis=0) if signed else np.abs(a).sum(axis=0)


@dataclass(frozen=True)
class ConceptScore:
    """A TCAV result (Kim et al., ICML 2018) for one concept, layer and class.

    ``score``: mean over ``runs`` runs (each with its own concept sample of ``sample`` images, its own random sample
    and its own CAV) of the fraction of the class's inputs whose score rises along the CAV; ``spread``: its standard
    deviation over runs; ``null_score``/``null_spread``: mean and spread of the same statistic for ``references``
    reference concepts drawn from the random pool and run the same way. ``sensitivity``: the mean cosine between the
    inputs' class gradients and the CAV (the tested statistic), ``null_sensitivity``/``null_sensitivity_spread``:
    the references'; ``effect`` = sensitivity − null_sensitivity with its interval ``[effect_lo, effect_hi]``;
    ``p_value``: two-sided rank of the sensitivity against the references (never below ``p_floor`` =
    1/(references + 1)), ``p_adjusted`` after Holm across every concept and layer tested together;
    ``cav_accuracy``: mean leave-one-out accuracy of the runs' CAVs (below the gate the layer cannot tell the
    concept apart and it is never significant); ``reference_accuracy``: the same for the references (about 0.5).
    ``causal_*``: where the concept can be taken away from real cases, what was done and the mean change of the
    class probability with its interval (NaN when there is no causal check); ``agreement``: a sentence saying whether
    TCAV and the causal check agree (empty without one), ``agreement_kind`` the same in one word: "agrees",
    "disagrees" or "unclear" (the check too uncertain to confirm or contradict; empty without a check).
    """

    concept: str
    layer: str
    target: int
    score: float
    spread: float
    null_score: float
    null_spread: float
    p_value: float
    p_adjusted: float
    cav_accuracy: float
    runs: int
    significant: bool
    verdict: str
    sensitivity: float = float("nan")
    null_sensitivity: float = float("nan")
    null_sensitivity_spread: float = float("nan")
    effect: float = float("nan")
    effect_lo: float = float("nan")
    effect_hi: float = float("nan")
    references: int = 0
    p_floor: float = float("nan")
    sample: int = 0
    reference_accuracy: float = float("nan")
    causal_check: str = ""
    causal_shift: float = float("nan")
    causal_lo: float = float("nan")
    causal_hi: float = float("nan")
    agreement: str = ""
    agreement_kind: str = ""
