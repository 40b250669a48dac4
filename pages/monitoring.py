"""Monitoring: is the model still seeing the patients it was validated on, and still performing?"""
from __future__ import annotations

import streamlit as st

from evaluation.drift import drift_figure, drivers
from evaluation.outcomes import judged_class
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import chart, heading, md
from workspace import jobs
from workspace.monitoring import embeddings, monitor
from workspace.settings import operator_settings
from workspace.store import Workspace

who = session.guard("monitoring")  # the role check comes before anything is read
heading(__file__)
st.caption("The cohort chosen in the sidebar is the incoming stream; it is compared, window by window, with the "
           "cohort the model was validated on: input drift in the model's own feature space (MMD with a permutation "
           "p-value never below 1/(permutations + 1), Holm-adjusted across windows; per site, Holm-adjusted across "
           "windows × sites), the attribute mix (Holm across windows × attributes) and image intensities; the "
           "outputs; and performance by the model's own outcome (a multi-class model's top class, or one class at "
           "the model version's operating point), measured where labels have arrived and estimated from calibrated "
           "probabilities everywhere. The same analysis runs on a schedule with "
           "`glassbox monitor … --alert mmd_p=0.01`.")
root, model_path, manifest, handle, current = selection.loaded()
ws = Workspace(root, trust_own_models=False)
columns = [a for a in current.attribute_schema if "month" in a or "window" in a or "period" in a]
if not columns:
    st.info(f"Cohort **{md(current.name)}** has no window column (e.g. `acquired_month`: 2026-03). Choose the incoming "
            "stream in the sidebar (the demo's is `deployment`).")
    st.stop()
_, _, cohorts = selection.options()
others = [n for n in cohorts if cohorts[n] != manifest]
if not others:
    st.info("The workspace has no other cohort to compare with.")
    st.stop()
c = st.columns(4)
reference_name = c[0].selectbox("Reference (validation) cohort", others, key="mon_reference",
                                index=others.index("demo2d") if "demo2d" in others else 0)
window = c[1].selectbox("Window", columns, key="mon_window")
alpha = c[2].select_slider("Alert level (adjusted p)", [0.001, 0.005, 0.01, 0.05], value=0.01, key="mon_alpha")
default_view = judged_class(handle)
views = ([None] if default_view is None else []) + list(range(handle.n_classes))
target = c[3].selectbox("Judged by", views, index=views.index(default_view), key="mon_class",
                        format_func=lambda i: "top class vs label" if i is None else
                        f"{handle.class_names[i]} at its operating point",
                        help="A multi-class model is judged by its top class; one class one-vs-rest is a choice")
reference = cache.cohort(cohorts[reference_name], handle)
key = f"monitor:{handle.weights_hash}:{reference.content_hash}:{current.content_hash}:{window}:{alpha}" + (
    "" if target == default_view else f":{target}")
job = jobs.get(key)
if job is None:
    st.button("Run the drift analysis", key="mon_run", type="primary",
              on_click=lambda: jobs.start(key, f"Monitoring {current.name} against {reference.name}",
                                          lambda progress: monitor(ws, handle, reference, current, window=window,
                                                                   alpha=alpha, target=target,
                                                                   progress=progress)))
    st.caption("Embeds every case of both cohorts once (cached), in the background: other pages stay open.")
    st.stop()
if job.running or job.error:
    cache.wait_for(job)
k = operator_settings().board_k if who.is_board else None
report = job.result.for_board(k) if k else job.result  # a board sees no site below k, in a table or a sentence
for line in report.warnings:
    st.warning(line)
alerts = report.alerts
if alerts:
    for line in alerts[:12]:
        st.warning(line)
    if len(alerts) > 12:
        st.caption(f"… and {len(alerts) - 12} more in the tables below.")
else:
    st.success(f"No window of **{md(current.name)}** differs from **{md(reference.name)}** "
               f"at adjusted p < {alpha:g}.")
st.caption(f"Performance judged by the {report.operating_point} (the model version's own, as on every page and "
           "in the report).")
chart(st, drift_figure(report, handle.class_names), key="mon_figure")
st.caption("Estimated accuracy assumes calibrated probabilities (fitted on the reference) and a shift in which images "
           "arrive, not in how labels follow from them: a shift the model meets confidently wrong is missed by the "
           "estimate, and seen by the drift test.")
st.subheader("Per window")
P_FORMAT = {c: st.column_config.NumberColumn(format="%.2g") for c in ("mmd_p", "mmd_p_adj", "p", "p_adj")}
st.dataframe(report.windows.drop(columns=["alert"]), hide_index=True, key="mon_windows", column_config=P_FORMAT)
if k:
    st.caption(report.note + " (the operator's k)")
st.subheader("Sites: the first window each differs from the reference")
st.dataframe(report.sites.drop(columns=["alert"]), hide_index=True, key="mon_sites", column_config=P_FORMAT)
st.subheader("Performance per site and window")
st.dataframe(report.groups, hide_index=True, key="mon_groups", column_config={
    c: st.column_config.NumberColumn(format="%.3f") for c in ("estimated_accuracy", "accuracy", "accuracy_lo",
                                                              "accuracy_hi")})
st.subheader("Attribute mix per window")
st.dataframe(report.attributes, hide_index=True, key="mon_attributes", column_config=P_FORMAT)
if who.can("see_cases"):
    st.subheader("The cases farthest from the reference")
    emb_ref = embeddings(ws, handle, reference)["embedding"]
    emb_cur = embeddings(ws, handle, current)["embedding"]
    far = drivers(emb_ref, emb_cur, current.case_ids, k=10)
    st.dataframe(far, hide_index=True, key="mon_drivers")
    chosen = st.selectbox("Open in Case review", far["case_id"], key="mon_case")

    def open_case() -> None:
        st.session_state["_review_goto"] = chosen

    if st.button("Open in Case review", key="mon_open", on_click=open_case):
        st.switch_page("pages/case_review.py")
