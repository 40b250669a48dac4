"""Home: the workspace at a glance, the cohort's make-up and load report, and the model card."""
from __future__ import annotations

import streamlit as st

from evaluation.cohort_summary import group_columns, group_counts, label_balance_figure, suppressed_counts
from pages import _common as common
from workspace.access import board_k
from workspace.demo import demo_facts

who = common.guard("home")  # the role check comes before anything is read
st.title("Glassbox")
st.caption("Explainability review for medical-imaging models: what the model sees, how sure it is, for whom it works.")

root, model_path, manifest, handle, cohort = common.loaded()

facts = demo_facts(root)
if facts and facts.get("checks"):
    claims = [c for c in facts["checks"] if c.get("asserted", True)]
    held = sum(c["holds"] for c in claims)
    with st.expander(f"The demo's planted truths, measured on these models: {held} of {len(claims)} hold",
                     expanded=True):
        st.caption("The demo cohort is built so that these are true of any well-trained model; `glassbox demo` "
                   "measured them on held-out cases right after building this workspace (recorded in demo.json). "
                   "Each bound lies below the worst of 10 training runs (5 seeds × 1 and 2 threads).")
        for c in claims:
            mark = ":green[holds]" if c["holds"] else ":red[**does not hold**]"
            st.markdown(f"- {c['sentence']} — {mark} (needs {c['op']} {c['bound']:g}; over training runs "
                        f"{c['spread']})")
        measured = [c for c in facts["checks"] if not c.get("asserted", True)]
        if measured:
            st.markdown("**Measured, not claimed** (these varied too much between training runs to be a property "
                        "of the data):")
            for c in measured:
                st.markdown(f"- {c['sentence']} (over training runs {c['spread']})")

report = cohort.report
c1, c2, c3, c4 = st.columns(4)
c1.metric("Cases loaded", len(cohort))
c2.metric(f"{report.unit.capitalize()} rejected", report.n_rejected)
labelled = cohort.frame()["label"].dropna()
c3.metric("Labelled", len(labelled))
c4.metric("Model version", handle.version)

left, right = st.columns([3, 2])
with left:
    st.subheader(f"Cohort · {cohort.name}")
    groups = group_columns(cohort)
    if groups:
        by = st.selectbox("Group by", groups, key="home_group_by")
        k = board_k() if who.is_board else None  # a board sees groups under k as "<k" and not in the figure
        st.plotly_chart(label_balance_figure(cohort, by, handle.class_names, k=k), key="home_balance")
        counts = group_counts(cohort, by, handle.class_names)
        st.dataframe(suppressed_counts(counts, k) if k else counts, hide_index=True, key="home_counts")
        if k:
            st.caption(f"Groups under {k} cases are suppressed (the operator's k).")
    else:
        st.info("This cohort has no categorical attributes to group by.")
    st.subheader("Load report")
    st.write(report.summary())
    for note in report.notes:
        st.info(note)
    if report.n_rejected:
        st.dataframe(report.frame(), hide_index=True, key="home_rejections")
    else:
        st.success("Every row loaded.")

with right:
    st.subheader("Model card")
    card = handle.card
    st.markdown(f"**{handle.name}**, version **{handle.version}** · task: {handle.task} · classes: "
                + ", ".join(f"`{c}`" for c in handle.class_names))
    st.markdown(f"**Intended use.** {card.intended_use}")
    st.markdown(f"**Training data.** {card.training_data}")
    st.markdown("**Known limitations.**\n" + "\n".join(f"- {lim}" for lim in card.limitations or ["none stated"]))
    for k, v in card.extra.items():
        st.markdown(f"**{k.replace('_', ' ').capitalize()}.** {v}")
    pre = handle.preprocessing
    st.caption(f"Preprocessing: {pre.describe()}. "
               f"Weights hash `{handle.weights_hash[:12]}`.")
