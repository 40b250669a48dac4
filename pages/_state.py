"""Which widget state survives a page switch: the pages' settings (the reader's place, filters, display choices),
which Streamlit would forget when a run does not draw their widget, never their actions (buttons, downloads, table
selections), whose state Streamlit refuses to have set. ``tests/pages/test_pages.py`` checks every action key in the
pages is excluded."""
from __future__ import annotations

import streamlit as st

#: the pages' widget keys whose values survive a page switch (app.py keeps them) ...
KEPT_PREFIXES = ("review_", "sub_", "cmp_", "qual_", "unc_", "concept_", "tcav_", "home_", "agree_", "audit_", "mon_",
                 "report_")
#: ... except actions (buttons, downloads, table selections), whose state Streamlit refuses to have set
ACTION_SUFFIXES = ("_prev", "_next", "_export", "_download", "_open", "_worklist")
ACTION_INFIXES = ("_run",)


def kept(key) -> bool:
    """Whether a session-state key is a setting to keep across pages."""
    return (isinstance(key, str) and key.startswith(KEPT_PREFIXES) and not key.endswith(ACTION_SUFFIXES)
            and not any(i in key for i in ACTION_INFIXES))


def keep_settings() -> None:
    """Make every kept setting the session's, not its widget's (re-assigning a key does it), so that it is there
    when its page is opened again. app.py calls this on every run, before any page draws."""
    for key in [k for k in st.session_state if kept(k)]:
        st.session_state[key] = st.session_state[key]
