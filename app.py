"""Glassbox: the Streamlit entry point. A router plus the shared sidebar (workspace, model version, cohort)."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __name__ == "__main__" and not st.runtime.exists():
    # `python app.py [streamlit options]` serves the app. Streamlit treats a folder named pages/ beside the
    # entry script as a v1 multipage app until st.navigation first runs, so a fresh server opened at
    # /case_review would run that page alone, without this router. Serving from here turns that off first.
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", __file__, *sys.argv[1:]]
    sys.exit(cli.main())

from pages._common import fitting_cohort, selection  # noqa: E402
from workspace.store import allowed_workspace, allowed_workspaces  # noqa: E402

HERE = Path(__file__).resolve().parent  # static files and pages resolve from the package, not the working directory
LOGO = str(HERE / "assets" / "logo.svg")
st.set_page_config(page_title="Glassbox", page_icon=LOGO, layout="wide")

with st.sidebar:
    st.logo(LOGO)
    # which workspaces may be opened is the operator's choice (glassbox serve --workspace ...): offered, not typed
    offered = [str(p) for p in allowed_workspaces()]
    st.session_state["workspace"] = str(allowed_workspace(st.session_state.get("workspace")))
    if len(offered) > 1:
        st.selectbox("Workspace", offered, key="workspace", format_func=lambda p: Path(p).name,
                     help="The workspaces this server's operator made available (glassbox serve --workspace)")
    root, models, cohorts = selection()
    if len(offered) == 1:
        st.caption(f"Workspace **{root.name}**")
    def fit_cohort() -> None:  # a new model version opens on a cohort it can take (not a 2D model on volumes)
        chosen_model = models.get(st.session_state.get("model")) or list(models.values())[-1]
        st.session_state["cohort"] = fitting_cohort(chosen_model, cohorts, st.session_state.get("cohort"))

    if models:
        st.selectbox("Model version", list(models), key="model", index=len(models) - 1, on_change=fit_cohort)
    if cohorts:
        if models and st.session_state.get("cohort") not in cohorts:
            fit_cohort()
        st.selectbox("Cohort", list(cohorts), key="cohort")
    st.caption("PHI is never shown: identifier columns are dropped on load.")

page = st.navigation([
    st.Page(HERE / "pages" / "home.py", title="Home", icon=":material/home:", default=True),
    st.Page(HERE / "pages" / "case_review.py", title="Case review", icon=":material/radiology:"),
    st.Page(HERE / "pages" / "subgroups.py", title="Subgroup performance", icon=":material/groups:"),
    st.Page(HERE / "pages" / "compare.py", title="Compare versions", icon=":material/compare_arrows:"),
    st.Page(HERE / "pages" / "quality.py", title="Explanation quality", icon=":material/verified:"),
    st.Page(HERE / "pages" / "uncertainty.py", title="Uncertainty", icon=":material/help:"),
    st.Page(HERE / "pages" / "concepts.py", title="Concepts", icon=":material/lightbulb:"),
])
page.run()
