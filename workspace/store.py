"""A workspace folder: where its models, cohorts and caches are, and names resolved to them.

Layout::

    <root>/models/<version>/model.json (+ weights)       model versions offered by the app
    <root>/cohorts/<name>/manifest.csv (+ images)          cohorts offered by the app
    <root>/cache/cohorts/<key>.parquet                      a checked manifest (the cohort table), keyed by its bytes
    <root>/cache/predictions/<model>-<cohort>.parquet       per-case probabilities
    <root>/cache/attributions/<key[:2]>/<key>.npz           one saliency map, float32, keyed by content hashes

How entries are written, sealed, checked and locked is :mod:`workspace.cache`; the capabilities built on the
workspace (comparison, monitoring, trust, region test, concepts, uncertainty) are service modules beside it that
take a :class:`Workspace`.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_adapters.cohort import cohort_source, load_image_batch, load_manifest, open_cohort_table, save_cohort_table
from data_adapters.dicom_folder import load_dicom_folder
from data_adapters.errors import InvalidInputError, RecordError
from data_adapters.hashing import file_hash, json_hash, mac, mac_matches, salted
from data_adapters.models import SPEC_NAME, load_model
from data_adapters.models.monai_bundle import is_bundle
from data_adapters.records import Attribution, Case, Cohort, ModelHandle
from data_adapters.tables import PredictionTable, probability_columns
from evaluation.operating_point import OperatingPoint
from explainers.inference import predict_cases
from explainers.saliency import SALIENCY_METHODS, explain, explain_layer
from workspace import cache
from workspace.keys import identifier_key, integrity_key
from workspace.settings import Settings, load_settings, operator_roots

__all__ = ["DEFAULT_HOME", "Progress", "Workspace", "allowed_workspace", "allowed_workspaces", "default_workspace",
           "operator_model_roots"]

#: how a long computation reports progress: ``progress(done, total)``
Progress = Callable[[int, int], None]
log = logging.getLogger("glassbox.cache")
DEFAULT_HOME = Path(os.environ.get("GLASSBOX_HOME", Path.cwd() / ".glassbox"))


def default_workspace() -> Path:
    """``$GLASSBOX_WORKSPACE``, else the demo workspace under ``$GLASSBOX_HOME`` (default ``./.glassbox``)."""
    return Path(os.environ.get("GLASSBOX_WORKSPACE", DEFAULT_HOME / "demo"))


def _env_paths(name: str) -> list[Path]:
    return [Path(p) for p in os.environ.get(name, "").split(os.pathsep) if p]


def allowed_workspaces() -> list[Path]:
    """The workspaces the app may open: the operator's decision, made when the server starts (``glassbox serve
    --workspace A --workspace B`` sets ``$GLASSBOX_WORKSPACES``); else the one default workspace. A browser user
    chooses among these and nothing typed in the browser adds to them."""
    return [p.resolve() for p in (_env_paths("GLASSBOX_WORKSPACES") or [default_workspace()])]


def allowed_workspace(chosen: str | Path | None) -> Path:
    """``chosen`` if it is one of :func:`allowed_workspaces`, else the first of them."""
    allowed = allowed_workspaces()
    if chosen:
        resolved = Path(chosen).resolve()
        if resolved in allowed:
            return resolved
    return allowed[0]


def operator_model_roots() -> list[Path]:
    """Model roots the operator configured outside the browser (``glassbox serve --model-root``, i.e.
    ``$GLASSBOX_MODEL_ROOTS``): the only folders whose MONAI bundles the app lets run config code. Each must be
    an absolute folder, never ``/`` (``workspace.settings.operator_roots``)."""
    return operator_roots("GLASSBOX_MODEL_ROOTS")


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or bool(Path(text).suffix)


class Workspace:
    """Models, cohorts and caches under one folder. Cheap to construct; holds no loaded state."""

    def __init__(self, root: str | Path, *, trust_own_models: bool = True) -> None:
        """``trust_own_models``: whether this workspace's ``models/`` and its ``settings.json`` ``model_roots``
        may hold MONAI bundles whose config code runs. True for the operator's command line; the app passes
        False, so that only the roots the operator gave ``glassbox serve`` are trusted."""
        self.root = Path(root)
        self.cache = self.root / "cache"
        self.trust_own_models = trust_own_models

    def model_paths(self) -> dict[str, Path]:
        """Model version folder name → folder, for every ``models/*/model.json`` and MONAI bundle folder."""
        folder = self.root / "models"
        if not folder.is_dir():
            return {}
        return {p.name: p for p in sorted(folder.iterdir())
                if p.is_dir() and ((p / SPEC_NAME).is_file() or is_bundle(p))}

    @property
    def model_roots(self) -> list[Path]:
        """Folders whose models are trusted to run config code (MONAI bundles): ``$GLASSBOX_MODEL_ROOTS``
        (``os.pathsep``-separated, set by the operator), and, when this workspace trusts its own models (the
        command line), its ``models/`` and the ``model_roots`` listed in its ``settings.json``."""
        if not self.trust_own_models:
            return operator_model_roots()
        return [self.root / "models", *self.settings.model_roots, *operator_model_roots()]

    def load_model(self, path: str | Path) -> ModelHandle:
        """A model folder (``model.json`` or MONAI bundle), bundles only from :attr:`model_roots`."""
        remedy = (f"add its parent folder to \"model_roots\" in {self.root / 'settings.json'}" if self.trust_own_models
                  else "the operator can start the server with `glassbox serve --model-root` on its parent folder")
        return load_model(path, roots=self.model_roots, remedy=remedy)

    def cohort_paths(self) -> dict[str, Path]:
        """Cohort name → manifest for every ``cohorts/*/manifest.csv`` (or ``.parquet``); a ``cohorts/*`` folder
        without a manifest is a DICOM-folder cohort and maps to the folder itself."""
        folder = self.root / "cohorts"
        if not folder.is_dir():
            return {}
        out = {}
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            manifests = [sub / "manifest.csv", sub / "manifest.parquet"]
            out[sub.name] = next((m for m in manifests if m.is_file()), sub)
        return out

    @property
    def settings(self) -> Settings:
        """``settings.json`` checked against its schema (``workspace.settings``): a string where a list of roots is
        wanted, a misspelt key, a rule like ``sensitivity=2`` or bad JSON is refused by name, never guessed."""
        return load_settings(self.root)

    def _settings(self) -> dict:
        return self.settings.raw

    @property
    def data_roots(self) -> list[Path]:
        """Folders a manifest's images may live in besides the manifest's own folder: ``data_roots`` in
        ``settings.json`` and ``$GLASSBOX_DATA_ROOTS`` (``os.pathsep``-separated). Paths anywhere else are
        rejected per row."""
        return [*self.settings.data_roots, *operator_roots("GLASSBOX_DATA_ROOTS")]

    def operating_point(self, handle: ModelHandle, cohort: Cohort, class_index: int) -> OperatingPoint:
        """The model version's threshold for ``class_index``, the same on every page, command, monitor window and
        report (``evaluation.operating_point``): the operator's fixed one or the model's own, else the one stored
        for this model hash (``operating_points/<hash>.json``, with its provenance), else fitted on ``cohort``'s
        validation split and stored. A fallback fit (no validation split) is stored too, with its warning, and
        replaced once a cohort with a validation split is opened."""
        from evaluation.operating_point import fit_operating_point

        settings = self._settings().get("operating_point") or {}
        if "threshold" in settings or handle.stated_threshold is not None:
            return fit_operating_point(cohort.frame(), pd.DataFrame(columns=["case_id"]), class_index,
                                       settings=settings, model_hash=handle.weights_hash,
                                       model_threshold=handle.stated_threshold)
        path = self.root / "operating_points" / f"{handle.weights_hash[:40]}.json"
        key = json_hash("operating-point-v1", class_index, settings.get("rule", "youden"), settings.get("split"))

        def stored() -> OperatingPoint | None:
            try:
                entry = json.loads(path.read_text()).get(key) if path.is_file() else None
                if entry and not mac_matches(integrity_key(), cache.rows_text([{k: v for k, v in entry.items()
                                                                             if k != "mac"}]), entry.get("mac")):
                    # an edited threshold is refitted
                    cache.discard(path, f"the stored operating point {cache.MSG_BAD_MAC}")
                    return None
                return OperatingPoint.from_record(entry) if entry else None
            except (json.JSONDecodeError, OSError, AttributeError, InvalidInputError) as e:
                cache.discard(path, f"unreadable operating point ({type(e).__name__})")
                return None

        have = stored()
        if have is not None and have.source == "validation":
            return have
        fitted = fit_operating_point(cohort.frame(), self.predictions(handle, cohort), class_index,
                                     settings=settings, model_hash=handle.weights_hash,
                                     cohort_hash=cohort.content_hash, cohort=cohort.name)
        if not fitted.better_than(have):
            return have
        with cache.lock(path):  # check, lock, re-check, atomic write
            have = stored()
            if have is not None and not fitted.better_than(have):
                return have
            entries = json.loads(path.read_text()) if path.is_file() else {}
            record = fitted.record()
            entries[key] = {**record, "mac": mac(integrity_key(), cache.rows_text([record]))}
            # a read-only copy: used without being kept
            cache.keep(path, lambda tmp: tmp.write_text(json.dumps(entries, indent=1, sort_keys=True)))
        return fitted

    @property
    def salt(self) -> str:
        """The key for identifier hashes: the operator's secret (:func:`identifier_key`), kept outside the
        workspace."""
        return identifier_key()

    def load_cohort(self, path: str | Path, *, class_names: Sequence[str] | None = None,
                    input_shape: Sequence[int | None] | None = None, channels: str | None = None,
                    progress: Progress | None = None) -> Cohort:
        """A manifest (CSV/Parquet) or a folder of DICOM files; ids and patient keys hashed with the operator's
        secret. A folder holding ``manifest.csv``/``manifest.parquet`` is that manifest."""
        path = cohort_source(path)
        if path.is_dir():
            return load_dicom_folder(path, salt=self.salt, input_shape=input_shape, channels=channels,
                                     progress=progress)
        roots = [Path(path).resolve().parent, *self.data_roots]
        allow = self._settings().get("allow_columns", [])
        cluster = self._settings().get("cluster_column") or None
        if not path.is_file():
            return load_manifest(path, roots=roots)  # names what is wrong
        salt = self.salt
        # the cohort table: keyed by the manifest's bytes and everything that decides what loads; the secret enters
        # only as a keyed hash of a constant, so a table made under another secret is never read
        key = json_hash("cohort-table", file_hash(path), str(path.resolve()), list(class_names or []) or None,
                        list(input_shape) if input_shape is not None else None, channels, [str(r) for r in roots],
                        sorted(allow), salted(salt, "cohort-table"), *([str(cluster)] if cluster else []))
        table = self.cache / "cohorts" / f"{key[:40]}.parquet"
        mac_key = integrity_key()
        cached = open_cohort_table(table, key=mac_key, roots=roots)
        if cached is not None:
            return cached
        cohort = load_manifest(path, class_names=class_names, input_shape=input_shape, channels=channels,
                               roots=roots, salt=salt, allow_columns=allow, progress=progress,
                               cluster_column=cluster)
        cache.keep(table, lambda tmp: save_cohort_table(cohort, tmp, key=mac_key))
        return cohort

    def cohort_for(self, handle: ModelHandle, path: str | Path, *, progress: Progress | None = None) -> Cohort:
        """The cohort as ``handle`` sees it: labels outside its classes (or names not among them) and images it
        cannot take (after its declared channel conversion) are rejected per row."""
        pre = handle.preprocessing
        return self.load_cohort(path, class_names=handle.class_names, input_shape=pre.accepts,
                                channels=pre.channels, progress=progress)

    def resolve_model(self, name: str | Path) -> Path:
        """A model given by path, or by name: a version folder under this workspace's ``models/``."""
        return self._resolve(name, self.model_paths(), "model")

    def resolve_cohort(self, name: str | Path) -> Path:
        """A cohort given by path (manifest or DICOM folder), or by name: a folder under ``cohorts/``."""
        return self._resolve(name, self.cohort_paths(), "cohort")

    def _resolve(self, name: str | Path, named: dict[str, Path], kind: str) -> Path:
        path = Path(name)
        if path.exists() or _looks_like_path(str(name)):
            return path  # the loader names what is wrong with it
        if str(name) in named:
            return named[str(name)]
        close = difflib.get_close_matches(str(name), list(named), n=1)
        raise InvalidInputError(f"{kind} {str(name)!r} is neither a path nor a {kind} of workspace {self.root} "
                                f"(it has {', '.join(named) or 'none'})"
                                + (f"; did you mean {close[0]!r}?" if close else ""))

    # -- predictions ---------------------------------------------------------------------------------
    def prediction_path(self, handle: ModelHandle, cohort: Cohort) -> Path:
        # cache.NUMERICS: entries from before TF32 was turned off on CUDA (up to 7e-5 off) are not served
        return (self.cache / "predictions"
                / f"{handle.weights_hash[:20]}-{cohort.content_hash[:20]}-{cache.NUMERICS}.parquet")

    def predictions(self, handle: ModelHandle, cohort: Cohort, *,
                    progress: Progress | None = None) -> PredictionTable:
        """Per-case probabilities, computed once per model and cohort (cached as ``case_id``, ``p_0`` …
        ``p_{K-1}``)."""
        def compute() -> pd.DataFrame:
            # a prediction depends only on the image's content: each distinct image is predicted once
            hashes = pd.Series(cohort.image_hashes)
            first = np.flatnonzero(~hashes.duplicated().to_numpy())
            preds = predict_cases(handle, [cohort.cases[int(i)] for i in first], progress=progress)
            unique = np.array([p.probabilities for p in preds], np.float64).reshape(len(first), handle.n_classes)
            where = pd.Index(hashes.iloc[first]).get_indexer(hashes)
            frame = pd.DataFrame(unique[where], columns=probability_columns(handle))
            frame.insert(0, "case_id", cohort.case_ids)
            return frame

        frame = cache.cached_frame(self.prediction_path(handle, cohort), compute, cohort.case_ids)
        return PredictionTable(frame, task=handle.task, n_classes=handle.n_classes)

    # -- attributions --------------------------------------------------------------------------------
    def attribution_key(self, handle: ModelHandle, case: Case, method: str, target: int,
                        params: dict[str, Any] | None) -> str:
        cls = SALIENCY_METHODS.get(method)
        full = cls.params(params)
        layer = explain_layer(handle) if cls.uses_layer else None
        return json_hash("attribution", cache.NUMERICS, handle.weights_hash, case.image_hash, case.case_id, method,
                         full, layer, handle.class_index(target))

    def _attribution_path(self, key: str) -> Path:
        return self.cache / "attributions" / key[:2] / f"{key}.npz"

    def attributions(self, handle: ModelHandle, cases: Sequence[Case], method: str, target: int | str,
                     params: dict[str, Any] | None = None, *, progress: Progress | None = None,
                     case_batch: int | None = None) -> list[Attribution]:
        """One map per case, read from the cache where present (and intact); the rest computed in batches, once
        across processes, and cached."""
        target_index = handle.class_index(target)
        keys = [self.attribution_key(handle, c, method, target_index, params) for c in cases]
        found = self._cached_attributions(cases, keys)
        if len(found) < len(cases):
            with cache.lock(self.cache / "attributions" / f"{handle.weights_hash[:16]}-{method}"):
                found = self._cached_attributions(cases, keys)  # written by another process meanwhile?
                todo = [i for i in range(len(cases)) if i not in found]
                if todo:
                    images = load_image_batch([cases[i] for i in todo], handle.preprocessing)
                    fresh = explain(handle, images, [cases[i].case_id for i in todo], method, target_index, params,
                                    case_batch=case_batch, progress=progress)
                    for i, attribution in zip(todo, fresh):
                        try:
                            cache.write_attribution(self._attribution_path(keys[i]), keys[i], attribution)
                        except RecordError as e:
                            log.warning("%s; the map is used without being cached", e)
                        found[i] = attribution
        elif progress:
            progress(len(cases), len(cases))
        return [found[i] for i in range(len(cases))]

    def _cached_attributions(self, cases: Sequence[Case], keys: Sequence[str]) -> dict[int, Attribution]:
        found = {}
        shards = None
        for i, (case, key) in enumerate(zip(cases, keys)):
            a = cache.read_attribution(self._attribution_path(key), key, case.case_id)
            if a is None:
                shards = shards if shards is not None else self.attribution_shards()
                a = shards.read(key, case.case_id)
            if a is not None:
                found[i] = a
        return found

    def attribution_shards(self) -> cache.ShardStore:
        """The sharded map store ``glassbox precompute`` writes (``cache/attribution_shards``)."""
        return cache.ShardStore(self.cache / "attribution_shards")
