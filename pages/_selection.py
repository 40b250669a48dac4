"""The sidebar's choice and what the pages read of it: the workspace (one the operator allowed, never a typed path),
its model versions and cohorts (:func:`options`), the chosen model and cohort loaded (:func:`loaded`), a cohort that
fits a newly chosen model version, and the versions a comparison or an ensemble may pair with a model."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from data_adapters.errors import GlassboxError
from data_adapters.records import Cohort, ModelHandle, default_version
from pages._cache import cohort, fits, model
from pages._display import md, show_error
from pages._session import chosen_workspace, opened
from workspace.store import Workspace


def options() -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """Workspace root, its model versions and its cohorts, as chosen in the sidebar (or the defaults)."""
    root = chosen_workspace()
    ws = Workspace(root, trust_own_models=False)
    return root, ws.model_paths(), ws.cohort_paths()


def _load_or_none(path: Path) -> ModelHandle | None:
    try:
        return model(path)
    except GlassboxError:
        return None


def default_model(models: dict[str, Path], *, latest: bool = False) -> str | None:
    """The version to open on (:func:`data_adapters.records.default_version`: one the default methods run on, not a
    TorchScript archive listed before it), preferring the first listed or, with ``latest``, the last."""
    names = list(models)[::-1] if latest else list(models)
    return default_version({name: _load_or_none(models[name]) for name in names})


def chosen(choices: dict[str, Path], key: str) -> Path | None:
    """The choice the sidebar's ``key`` holds, or the default: for ``model``, :func:`default_model`; else the first."""
    name = st.session_state.get(key)
    if name in choices:
        return choices[name]
    if key == "model" and choices:
        return choices[default_model(choices)]
    return next(iter(choices.values()), None)


def required() -> tuple[Path, Path, Path]:
    """The chosen workspace, model folder and manifest; stops the page with guidance when one is missing."""
    root, models, cohorts = options()
    model_path, manifest = chosen(models, "model"), chosen(cohorts, "cohort")
    if model_path is None or manifest is None:
        st.warning(f"Workspace `{root}` has no {'models' if model_path is None else 'cohorts'} yet. "
                   "Build the demo with `glassbox demo`, or add `models/<version>/model.json` and "
                   "`cohorts/<name>/manifest.csv` (see the README).")
        st.stop()
    return root, model_path, manifest


def loaded() -> tuple[Path, Path, Path, ModelHandle, Cohort]:
    """The chosen workspace, model folder and manifest, with the model and cohort loaded; a Glassbox error
    (bad model file, unreadable manifest) is shown and stops the page."""
    root, model_path, manifest = required()
    try:
        handle = model(model_path)
        loaded_cohort = cohort(manifest, handle)
    except GlassboxError as e:
        show_error(e)
        st.stop()
    opened(handle, loaded_cohort)
    if not len(loaded_cohort):
        report = loaded_cohort.report
        st.error(f"No case of cohort **{md(loaded_cohort.name)}** fits model **{md(handle.label)}**, which expects "
                 f"{handle.preprocessing.describe()}; classes "
                 f"{md(', '.join(handle.class_names))}. Choose another cohort or model version in the sidebar. "
                 f"Why the {report.n_rejected} row(s) were rejected:")
        st.dataframe(report.frame().head(50), hide_index=True, key="load_rejections")
        st.stop()
    return root, model_path, manifest, handle, loaded_cohort


def fitting_cohort(model_path: Path, cohorts: dict[str, Path], current: str | None) -> str | None:
    """A cohort for the chosen model: ``current`` if the model can take it (or that cannot be told cheaply), else
    the first cohort whose first rows it can take (labels among its classes, images of its shape after its channel
    conversion). A 2D model does not open on a 3D cohort, nor a 7-class model on a binary one."""
    try:
        handle = model(model_path)
    except GlassboxError:
        return current

    def takes(name: str) -> bool | None:
        return fits(cohorts[name], handle)

    if current in cohorts and takes(current) is not False:
        return current
    return next((n for n in cohorts if takes(n)), next((n for n in cohorts if takes(n) is None), current))


def peers(handle: ModelHandle, models: dict[str, Path]) -> dict[str, Path]:
    """The workspace's versions that take the same input and predict the same classes as ``handle`` (the ones
    an ensemble or a version comparison may combine with it)."""
    out = {}
    for name, path in models.items():
        try:
            other = model(path)
        except GlassboxError:
            continue
        a, b = other.preprocessing, handle.preprocessing
        if (a.input_shape, a.spacing, a.resize, other.class_names) == (b.input_shape, b.spacing, b.resize,
                                                                       handle.class_names):
            out[name] = path
    return out
