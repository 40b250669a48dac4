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

from data_adapters.errors import GlassboxError  # noqa: E402
from pages._display import md  # noqa: E402
from pages._navigation import PAGES  # noqa: E402
from pages._selection import default_model, fitting_cohort, options  # noqa: E402
from pages._session import IDENTITY, chosen_workspace, guard_server_messages, sign_in, sign_out  # noqa: E402
from pages._state import keep_settings  # noqa: E402
from workspace.access import auth_mode  # noqa: E402
from workspace.settings import check_operator  # noqa: E402
from workspace.store import allowed_workspaces  # noqa: E402

HERE = Path(__file__).resolve().parent  # static files and pages resolve from the package, not the working directory
LOGO = str(HERE / "assets" / "logo.svg")
st.set_page_config(page_title="Glassbox", page_icon=LOGO, layout="wide")
guard_server_messages()  # clearing every user's caches (and other server-wide messages): a signed-in admin's only
try:  # the operator's settings, checked against their schemas before anything trusts them
    check_operator()
except GlassboxError as e:
    st.error(f"Glassbox cannot start with these settings: {md(e)}")
    st.stop()
keep_settings()  # the reviewer's place, filters and display settings survive a page switch (pages._state)


def pages(allowed=lambda stem: True) -> dict[str, st.Page]:
    """The navigation's pages (pages._navigation.PAGES) that ``allowed`` lets in: a role sees the pages it may open,
    nothing else."""
    return {p.file: st.Page(HERE / "pages" / f"{p.file}.py", title=p.title, icon=p.icon, default=p.default)
            for p in PAGES if allowed(p.file)}


if st.session_state.get(IDENTITY) is None and auth_mode() != "single":
    # a link to a page (/case_review) opens that page after sign-in, if the role may open it
    st.session_state["_wanted"] = st.navigation(list(pages().values()), position="hidden").url_path
who = sign_in()  # the sign-in form (and stop) until someone is signed in; single-user mode signs in at once
with st.sidebar:
    st.logo(LOGO)
    # which workspaces may be opened is the operator's choice (glassbox serve --workspace ...): offered, not typed
    offered = [str(p) for p in allowed_workspaces()]
    st.session_state["workspace"] = str(chosen_workspace())
    if len(offered) > 1:
        st.selectbox("Workspace", offered, key="workspace", format_func=lambda p: Path(p).name,
                     help="The workspaces this server's operator made available (glassbox serve --workspace)")
    root, models, cohorts = options()
    if len(offered) == 1:
        st.caption(f"Workspace **{md(root.name)}**")
    def fit_cohort() -> None:  # a new model version opens on a cohort it can take (not a 2D model on volumes)
        chosen_model = models.get(st.session_state.get("model")) or models[default_model(models, latest=True)]
        st.session_state["cohort"] = fitting_cohort(chosen_model, cohorts, st.session_state.get("cohort"))

    if models:
        # the version the default methods run on (not a TorchScript archive), decided in data_adapters.records
        st.selectbox("Model version", list(models), key="model", index=list(models).index(default_model(models, latest=True)),
                     on_change=fit_cohort)
    if cohorts:
        if models and st.session_state.get("cohort") not in cohorts:
            fit_cohort()
        st.selectbox("Cohort", list(cohorts), key="cohort")
    st.caption("PHI is never shown: identifier columns are dropped on load.")
    if who.how == "single-user mode":
        st.caption(f"**Single-user local mode**: no sign-in; every action is recorded as **{md(who.name)}** (admin). "
                   "Create accounts (`glassbox user add`) to make this a multi-user server.")
    else:
        st.caption(f"Signed in as **{md(who.name)}** ({who.role})")
        if auth_mode() == "oidc":
            st.button("Sign out", key="sign_out", on_click=lambda: (sign_out(), st.logout()))
        else:
            st.button("Sign out", key="sign_out", on_click=sign_out)

open_pages = pages(who.opens)
page = st.navigation(list(open_pages.values()))
wanted = st.session_state.pop("_wanted", None)
match = next((p for p in open_pages.values() if p.url_path == wanted), None)
if match is not None and wanted != page.url_path:
    st.switch_page(match)
page.run()
