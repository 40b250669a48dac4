"""Audit log: who did what, when, on which model and cohort; and whether anyone changed the record."""
from __future__ import annotations

import datetime as dt

import streamlit as st

from pages import _session as session
from pages._display import heading

who = session.guard("audit")  # the role check comes before anything is read (the account re-read on every run)
if not who.can("view_audit"):
    st.error(f"The audit log is not open to the {who.role} role.")
    st.stop()
heading(__file__)
st.caption("Every consequential action, appended and hash-chained: each entry carries the hash of the one before, so "
           "an edited, deleted or reordered entry is found. Cases appear only as keyed hashes; models and cohorts "
           "by content hash.")
record = session.record()
check = record.verify()
if check.ok:
    st.success(check.describe().capitalize() + ".")
else:
    st.error(check.describe())
st.caption("Checked: the chain, every verdict and every board checklist answer against the content hash in its entry, "
           "and the newest entry against the head file, "
           + ("kept where the operator set `$GLASSBOX_AUDIT_HEAD`" if record.head_path.parent != record.path.parent
              else "kept beside the record (the operator can keep it elsewhere with `$GLASSBOX_AUDIT_HEAD`)")
           + (". This is a read-only copy: it can be verified, not written." if record.read_only else "."))

log = record.audit()
c = st.columns([2, 2, 2])
actor = c[0].selectbox("Who", [None, *sorted(log["actor"].unique())], key="audit_actor",
                       format_func=lambda v: "everyone" if v is None else v)
action = c[1].selectbox("Action", [None, *sorted(log["action"].unique())], key="audit_action",
                        format_func=lambda v: "every action" if v is None else v)
since = c[2].date_input("Since", value=None, key="audit_since")
shown = record.audit(actor=actor, action=action, since=since.isoformat() if isinstance(since, dt.date) else None)
st.markdown(f"**{len(shown)}** of {len(log)} entries")
st.dataframe(shown.iloc[::-1], hide_index=True, key="audit_table",
             column_config={"prev": None, "hash": st.column_config.TextColumn("hash", width="small")})
session.download(st, "Export these entries (CSV)", shown, file_name="audit.csv", key="audit_export", what="audit")
