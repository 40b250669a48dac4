"""The pages' cached wrappers around the library.

``st.cache_resource`` holds models (shared, read-only); ``st.cache_data`` holds cohorts and results (copied
per caller). Streamlit leaves every argument whose name starts with ``_`` out of the key, so the keys here are
plain arguments: the workspace (it decides roots, trust and the id salt), and a *stamp* of every file a result
depends on (size and modification time of the model folder's files, the manifest or DICOM folder, and
``settings.json``), so that an edited model, manifest or setting is never served stale.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from data_adapters.cohort import peek_fit
from data_adapters.errors import GlassboxError
from data_adapters.models import spec_path
from data_adapters.records import Attribution, Cohort, ModelHandle
from data_adapters.tables import PredictionTable, UncertaintyTable
from evaluation.metrics import ONE_VS_REST, TOP_CLASS, metric_names
from explainers.device import best_device
from pages._display import show_error
from pages._session import chosen_workspace, record
from workspace import jobs
from workspace.access import Identity
import workspace.concepts as concept_service
import workspace.region_test as region_service
import workspace.trust as trust_service
import workspace.uncertainty as uncertainty_service
from workspace.comparison import compare
from workspace.store import Workspace


def stamp(path: str | Path) -> tuple:
    """What a cached result must be keyed on for ``path`` to be re-read when it changes: (name, size, mtime) of
    the file, or of every file under the folder."""
    path = Path(path)
    if path.is_file():
        st_ = path.stat()
        return ((str(path), st_.st_size, st_.st_mtime_ns),)
    if path.is_dir():
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file())
    return ((str(path), None, None),)


def _model_stamp(path: str | Path) -> tuple:
    folder = Path(path) if Path(path).is_dir() else spec_path(path).parent
    return stamp(folder) + stamp(chosen_workspace() / "settings.json")


def _cohort_stamp(manifest: str | Path) -> tuple:
    return stamp(manifest) + stamp(chosen_workspace() / "settings.json")


@st.cache_resource(show_spinner="Loading model…")
def _model(root: str, path: str, key: tuple) -> ModelHandle:
    # bundles run config code only from the operator's model roots; the workspace itself grants no trust
    handle = Workspace(root, trust_own_models=False).load_model(path)
    handle.module.to(best_device())
    return handle


def model(path: str | Path) -> ModelHandle:
    return _model(str(chosen_workspace()), str(path), _model_stamp(path))


@st.cache_resource(show_spinner="Checking cohort…", max_entries=8)  # one object, not a pickled copy per call
def _cohort(root: str, manifest: str, class_names: tuple[str, ...], input_shape: tuple[int | None, ...],
            key: tuple) -> Cohort:
    # a manifest, or a DICOM folder (ids salted per workspace); cases that do not fit the model are rejected
    return Workspace(root).load_cohort(manifest, class_names=class_names, input_shape=input_shape)


def cohort(manifest: str | Path, handle: ModelHandle) -> Cohort:
    """The cohort as the model sees it: labels outside its classes and images of another shape are rejected."""
    return _cohort(str(chosen_workspace()), str(manifest), handle.class_names, handle.preprocessing.accepts,
                   _cohort_stamp(manifest))


@st.cache_data(show_spinner="Predicting…", max_entries=16)
def _predictions(root: str, model_path: str, manifest: str, keys: tuple) -> PredictionTable:
    bar = st.progress(0.0, text="Predicting cohort…")
    handle = model(model_path)
    table = Workspace(root).predictions(handle, cohort(manifest, handle),
                                        progress=lambda d, n: bar.progress(d / max(n, 1), text=f"Predicting {d}/{n}"))
    bar.empty()
    return table


#: cohorts at least this large are predicted in a background job (the page shows its progress and is not blocked)
BACKGROUND_FROM = 2000


def predictions(root: Path, model_path: Path, manifest: Path) -> PredictionTable:
    """The cohort's predictions: read from the cache; computed here for a small cohort; for a large one, in a
    background job that widget changes and page switches do not restart (``workspace.jobs``), the page waiting
    with its progress meanwhile."""
    handle = model(model_path)
    loaded = cohort(manifest, handle)
    ws = Workspace(root)
    target = ws.prediction_path(handle, loaded)
    if len(loaded) >= BACKGROUND_FROM and not target.is_file():
        job = jobs.start(str(target), f"Predicting {len(loaded)} cases with {handle.label}",
                         lambda progress: ws.predictions(handle, loaded, progress=progress))
        if job.running or job.error:
            wait_for(job)
    return _predictions(str(root), str(model_path), str(manifest), _model_stamp(model_path) + _cohort_stamp(manifest))


def predictions_or_stop(root: Path, model_path: Path, manifest: Path) -> PredictionTable:
    """The cohort's predictions (cached); a Glassbox error is shown and stops the page."""
    try:
        return predictions(root, model_path, manifest)
    except GlassboxError as e:
        show_error(e)
        st.stop()


def wait_for(job: jobs.Job) -> None:
    """Show a background job's progress (refreshed every 2 s) and stop the page until it is done; a failed job's
    error is shown instead. The page reruns by itself when the job ends."""
    if job.error is not None:
        show_error(job.error if isinstance(job.error, GlassboxError) else GlassboxError(str(job.error)))
        jobs.forget(job.key)
        st.stop()

    @st.fragment(run_every=2)
    def progress() -> None:
        current = jobs.get(job.key)
        if current is None or not current.running:
            st.rerun()
        st.progress(current.fraction, text=current.describe() + " · runs in the background: other pages stay open")

    progress()
    st.stop()


@st.cache_data(show_spinner=False, max_entries=32)
def _operating_point(root: str, model_path: str, manifest: str, class_index: int, keys: tuple):
    handle = model(model_path)
    return Workspace(root).operating_point(handle, cohort(manifest, handle), class_index)


def operating_point(root: Path, model_path: Path, manifest: Path, class_index: int):
    """The model's shared threshold for ``class_index`` (the same on every page); a Glassbox error stops the page."""
    try:
        return _operating_point(str(root), str(model_path), str(manifest), class_index,
                                _model_stamp(model_path) + _cohort_stamp(manifest))
    except GlassboxError as e:
        show_error(e)
        st.stop()


def attribution(root: Path, model_path: Path, manifest: Path, case_id: str, method: str, target: int) -> Attribution:
    """One map, from the workspace cache or computed (with a progress bar)."""
    handle = model(model_path)
    case = cohort(manifest, handle).case(case_id)
    bar = st.progress(0.0, text=f"Computing {method}…")
    try:
        (a,) = Workspace(root).attributions(handle, [case], method, target,
                                            progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()
    return a


def cached_uncertainty(root: Path, model_path: Path, manifest: Path, method: str) -> UncertaintyTable | None:
    """The cohort's uncertainty if it was computed before (never computed here: the worklist opens on the whole
    cohort and must not wait for it)."""
    handle = model(model_path)
    return uncertainty_service.uncertainty(Workspace(root), [handle], cohort(manifest, handle), method,
                                           cached_only=True)


@st.cache_data(show_spinner=False, max_entries=16)
def _uncertainty(root: str, model_paths: tuple[str, ...], manifest: str, method: str,
                 keys: tuple) -> UncertaintyTable:
    bar = st.progress(0.0, text=f"Estimating uncertainty ({method})…")
    try:
        handles = [model(p) for p in model_paths]
        return uncertainty_service.uncertainty(Workspace(root), handles, cohort(manifest, handles[0]), method,
                                               progress=lambda d, n: bar.progress(d / max(n, 1),
                                                                                  text=f"{method}: {d}/{n} cases"))
    finally:
        bar.empty()


#: uncertainty costing at least this many forward passes (cases × draws) is computed in a background job, as large
#: cohorts' predictions are: 5,984 cases × 16 dropout draws no longer hold the page for minutes
BACKGROUND_PASSES = 20_000


def uncertainty(root: Path, model_paths: list[Path], manifest: Path, method: str) -> UncertaintyTable:
    """The cohort's uncertainty table: read from the cache (``glassbox precompute`` writes it); computed here when
    small; otherwise in a background job that widget changes and page switches do not restart, the page showing its
    progress meanwhile."""
    handles = [model(p) for p in model_paths]
    loaded = cohort(manifest, handles[0])
    ws = Workspace(root)
    target = uncertainty_service.uncertainty_path(ws, handles, loaded, method)
    if uncertainty_service.forward_passes(handles, loaded, method) >= BACKGROUND_PASSES and not target.is_file():
        job = jobs.start(str(target), f"Uncertainty ({method}) of {len(loaded)} cases with {handles[0].label}",
                         lambda progress: uncertainty_service.uncertainty(ws, handles, loaded, method,
                                                                          progress=progress))
        if job.running or job.error:
            wait_for(job)
    keys = sum((_model_stamp(p) for p in model_paths), ()) + _cohort_stamp(manifest)
    return _uncertainty(str(root), tuple(map(str, model_paths)), str(manifest), method, keys)


@st.cache_data(show_spinner="Uncertainty of this case…", max_entries=256)
def _case_uncertainty(root: str, model_path: str, manifest: str, case_id: str, method: str, keys: tuple):
    handle = model(model_path)
    return uncertainty_service.case_uncertainty(Workspace(root), handle, cohort(manifest, handle).case(case_id),
                                                method)


def case_uncertainty(root: Path, model_path: Path, manifest: Path, case_id: str, method: str) -> UncertaintyTable:
    """The case in view's uncertainty alone (the same numbers as its row of the cohort's)."""
    keys = _model_stamp(model_path) + _cohort_stamp(manifest)
    return _case_uncertainty(str(root), str(model_path), str(manifest), case_id, method, keys)


@st.cache_data(show_spinner=False, max_entries=16)
def _concept_scores(root: str, model_path: str, manifest: str, concepts: tuple[str, ...], layers: tuple[str, ...],
                    target: int, n_random: int, keys: tuple) -> pd.DataFrame:
    bar = st.progress(0.0, text="TCAV: training concept vectors against random concepts…")
    try:
        handle = model(model_path)
        return concept_service.concept_scores(Workspace(root), handle, cohort(manifest, handle),
                                              Path(manifest).parent, list(concepts), list(layers), target,
                                              n_random=n_random, progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()


def concept_scores(root: Path, model_path: Path, manifest: Path, concepts: list[str], layers: list[str],
                   target: int, n_random: int) -> pd.DataFrame:
    keys = _model_stamp(model_path) + _cohort_stamp(manifest) + stamp(Path(manifest).parent / "concepts")
    return _concept_scores(str(root), str(model_path), str(manifest), tuple(concepts), tuple(layers), target,
                           n_random, keys)


@st.cache_data(show_spinner="Concept sensitivity…", max_entries=256)
def _concept_sensitivity(root: str, model_path: str, manifest: str, concepts: tuple[str, ...], layer: str,
                         case_id: str, target: int, keys: tuple) -> pd.DataFrame:
    handle = model(model_path)
    c = cohort(manifest, handle)
    ws = Workspace(root)
    return pd.concat([concept_service.concept_sensitivity(ws, handle, c, Path(manifest).parent, name, layer,
                                                          [c.case(case_id)], target)
                      for name in concepts], ignore_index=True)


def concept_sensitivity(root: Path, model_path: Path, manifest: Path, concepts: list[str], layer: str,
                        case_id: str, target: int) -> pd.DataFrame:
    keys = _model_stamp(model_path) + _cohort_stamp(manifest) + stamp(Path(manifest).parent / "concepts")
    return _concept_sensitivity(str(root), str(model_path), str(manifest), tuple(concepts), layer, case_id, target,
                                keys)


@st.cache_data(show_spinner=False, max_entries=64)
def _fits(path: str, class_names: tuple[str, ...], accepts: tuple, channels: str | None, key: tuple) -> bool | None:
    return peek_fit(path, class_names=class_names, input_shape=accepts, channels=channels)


def fits(path: str | Path, handle: ModelHandle) -> bool | None:
    """Whether ``handle`` can take the cohort at ``path`` as its first rows tell (labels among its classes, images of
    its shape after its channel conversion); None when that cannot be told cheaply."""
    return _fits(str(path), handle.class_names, handle.preprocessing.accepts, handle.preprocessing.channels,
                 stamp(path) if Path(path).is_file() else ())


@st.cache_data(show_spinner="Comparing versions…", max_entries=16)
def _comparison(root: str, base_path: str, cand_path: str, manifest: str, by: tuple[str, ...],
                where: tuple[tuple[str, str], ...], class_index: int | None, margin: float, keys: tuple):
    base, cand = model(base_path), model(cand_path)
    loaded = cohort(manifest, base)
    names = metric_names(TOP_CLASS if class_index is None else ONE_VS_REST)
    return compare(Workspace(root), base, cand, loaded, by=list(by), where=dict(where), class_index=class_index,
                   margins={m: margin for m in names})


def comparison(root: Path, base_path: Path, cand_path: Path, manifest: Path, by: list[str], where: dict[str, str],
               class_index: int | None, margin: float):
    keys = _model_stamp(base_path) + _model_stamp(cand_path) + _cohort_stamp(manifest)
    return _comparison(str(root), str(base_path), str(cand_path), str(manifest), tuple(by),
                       tuple(sorted(where.items())), class_index, float(margin), keys)


@st.cache_data(show_spinner=False, max_entries=16)
def _map_agreement(root: str, paths: tuple[str, ...], manifest: str, case_ids: tuple[str, ...], method: str,
                   targets: tuple[int, ...], keys: tuple) -> pd.DataFrame:
    bar = st.progress(0.0, text=f"Maps of both versions ({method})…")
    try:
        handles = [model(p) for p in paths]
        loaded = cohort(manifest, handles[0])
        return trust_service.map_agreement(Workspace(root), handles, [loaded.case(c) for c in case_ids], method,
                                           list(targets), progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()


def map_agreement(root: Path, paths: list[Path], manifest: Path, case_ids: list[str], method: str,
                  targets: list[int]) -> pd.DataFrame:
    keys = sum((_model_stamp(p) for p in paths), ()) + _cohort_stamp(manifest)
    return _map_agreement(str(root), tuple(map(str, paths)), str(manifest), tuple(case_ids), method,
                          tuple(int(t) for t in targets), keys)


@st.cache_data(show_spinner="Region test: perturbing every case and predicting again…", max_entries=16)
def _region_test(root: str, paths: tuple[str, ...], manifest: str, case_ids: tuple[str, ...], region: str, how: str,
                 frame: pd.DataFrame, by: tuple[str, ...], class_index: int | None, keys: tuple) -> pd.DataFrame:
    handles = [model(p) for p in paths]
    loaded = cohort(manifest, handles[0])
    return region_service.region_test(Workspace(root), handles, loaded, list(case_ids), region, how, frame, list(by),
                                      class_index)


def region_test(root: Path, paths: list[Path], manifest: Path, case_ids: list[str], region: str, how: str,
                frame: pd.DataFrame, by: list[str], class_index: int | None) -> pd.DataFrame:
    keys = sum((_model_stamp(p) for p in paths), ()) + _cohort_stamp(manifest)
    return _region_test(str(root), tuple(map(str, paths)), str(manifest), tuple(case_ids), region, how, frame,
                        tuple(by), class_index, keys)


@st.cache_data(show_spinner=False, max_entries=256)
def _trust(root: str, model_path: str, manifest: str, case_ids: tuple[str, ...], method: str, target: int,
           keys: tuple) -> pd.DataFrame:
    handle = model(model_path)
    loaded = cohort(manifest, handle)
    return trust_service.trust(Workspace(root), handle, loaded, [loaded.case(c) for c in case_ids], method, target)


def trust(root: Path, model_path: Path, manifest: Path, case_ids: list[str], method: str, target: int) -> pd.DataFrame:
    """The trust checks of one method's maps for these cases (cached)."""
    keys = _model_stamp(model_path) + _cohort_stamp(manifest)
    return _trust(str(root), str(model_path), str(manifest), tuple(case_ids), method, int(target), keys)


@st.cache_data(show_spinner=False, max_entries=16)
def _explanation_quality(root: str, model_path: str, manifest: str, methods: tuple[str, ...], n_cases: int,
                         strata: tuple[str, ...], keys: tuple):
    bar = st.progress(0.0, text="Trust checks: maps, randomised models, deletion curves, noise…")
    try:
        handle = model(model_path)
        return trust_service.explanation_quality(Workspace(root), handle, cohort(manifest, handle), list(methods),
                                                 n_cases=n_cases, strata=list(strata),
                                                 progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()


def explanation_quality(root: Path, model_path: Path, manifest: Path, methods: list[str], n_cases: int,
                        strata: list[str]):
    keys = _model_stamp(model_path) + _cohort_stamp(manifest)
    return _explanation_quality(str(root), str(model_path), str(manifest), tuple(methods), int(n_cases),
                                tuple(strata), keys)


@st.cache_data(show_spinner=False, max_entries=8)
def _board_report(root: str, model_path: str, baseline_path: str | None, manifest: str, by: tuple[str, ...], k: int,
                  author: str, role: str, keys: tuple):
    from workspace.report import gather

    handle = model(model_path)
    bar = st.progress(0.0, text="Gathering the report…")
    steps = ["provenance", "cohort", "performance", "explanations", "version", "reviewers"]
    try:
        return gather(Workspace(root), handle, cohort(manifest, handle),
                      baseline=model(baseline_path) if baseline_path else None, by=list(by), k=k,
                      author=Identity(author, role),
                      progress=lambda name: bar.progress(
                          (steps.index(name.split(" ")[0]) + 1) / len(steps) if name.split(" ")[0] in steps else 0.0,
                          text=f"Report: {name}…"))
    finally:
        bar.empty()


def board_report(root: Path, model_path: Path, baseline_path: Path | None, manifest: Path, by: list[str], k: int,
                 who: Identity):
    """The board report's evidence (cached; keyed on the files and on the review record, whose answers it
    states)."""
    handle = model(model_path)
    loaded = cohort(manifest, handle)
    rec = record(root)
    answers = rec.answers(model_hash=handle.weights_hash, cohort_hash=loaded.content_hash)
    verdicts = rec.verdicts(model_hash=handle.weights_hash, cohort_hash=loaded.content_hash, history=True)
    keys = (_model_stamp(model_path) + (_model_stamp(baseline_path) if baseline_path else ()) + _cohort_stamp(manifest)
            + (int(answers["id"].max()) if len(answers) else 0, int(verdicts["id"].max()) if len(verdicts) else 0))
    return _board_report(str(root), str(model_path), str(baseline_path) if baseline_path else None, str(manifest),
                         tuple(by), int(k), who.name, who.role, keys)
