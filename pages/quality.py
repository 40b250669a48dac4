"""Explanation quality: which saliency method can be trusted for this model, measured over a sample of cases."""
from __future__ import annotations

import streamlit as st

from data_adapters.errors import GlassboxError
from evaluation.cohort_summary import group_columns
from evaluation.explanation_quality import in_words, localisation_by_group, quality_summary
from explainers.saliency import SALIENCY_METHODS
from explainers.trust import TRUST_CHECKS
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import heading, md, show_error

who = session.guard("quality")  # the role check comes before anything is read
heading(__file__)
st.caption("Can these maps be believed? Each method's maps are checked for randomisation (do they depend on what the "
           "model learnt?), faithfulness (does removing the pixels they point at change the prediction?), "
           "localisation (do they fall on the finding, where masks exist?) and stability (do they survive invisible "
           "noise?), over a sample of cases stratified by group and outcome.")
root, model_path, manifest, handle, cohort = selection.loaded()

c = st.columns([3, 1, 2])
default = [m for m in ("saliency", "integrated_gradients", "grad_cam", "occlusion") if m in SALIENCY_METHODS.names()]
methods = c[0].multiselect("Methods", SALIENCY_METHODS.names(), default=default, key="qual_methods",
                           format_func=lambda n: SALIENCY_METHODS.get(n).title)
n_cases = c[1].number_input("Cases", 4, 400, 24, 4, key="qual_cases")
groups = group_columns(cohort)
strata = c[2].multiselect("Stratify by (and outcome)", groups, default=groups[:1], key="qual_strata")
if st.button("Run the checks", key="qual_run", disabled=not methods):
    st.session_state["qual_request"] = (tuple(methods), int(n_cases), tuple(strata))
request = st.session_state.get("qual_request")
if not request:
    st.info("Choose methods and a sample size, then run the checks (computed once per case and method, then "
            "cached; integrated gradients and occlusion take longest on a CPU).")
    with st.expander("The checks, their papers, their bands and where the bands come from"):
        for name, c_ in TRUST_CHECKS.items():
            st.markdown(f"**{c_.title}** ({c_.citation}): {c_.meaning}. Bands: {c_.band_source}. Could not judge "
                        f"a case when {c_.undefined}."
                        + (f" Clinical reference {c_.reference:.3f}: {c_.reference_source}" if c_.reference else ""))
    st.stop()
try:
    checks, sample = cache.explanation_quality(root, model_path, manifest, list(request[0]), request[1],
                                                list(request[2]))
except GlassboxError as e:
    show_error(e)
    st.stop()
summary = quality_summary(checks, sample)
st.markdown(f"**{md(handle.label)}** · {len(sample)} cases sampled across "
            f"{md(' × '.join([*request[2], 'outcome']))} · "
            "means over cases with 95% bootstrap intervals · localisation judged against chance (the finding's "
            "share of the image, what a random map scores); the pointing game as a hit rate with its 95% interval, "
            "against chance and the clinical reference (radiologists, Saporta et al. 2022) · a check whose value is "
            "undefined (a vanished or constant map, no finding) is *could not judge*, with the reason, never a pass")
for line in in_words(summary):
    st.markdown(line)
colours = {"passes": "background-color: #c6f6d5", "concern": "background-color: #feebc8",
           "fails": "background-color: #fed7d7", "could not judge": "background-color: #e2e8f0"}
st.dataframe(summary.style.map(lambda v: colours.get(v, ""), subset=["band"]).format(
    {c: "{:.3f}" for c in ("mean", "lo", "hi", "chance", "reference", "passing")}, na_rep="–"), hide_index=True,
    key="qual_summary")
session.download(st, "Download per-case results (CSV)", checks, file_name="explanation_quality.csv",
                key="qual_download", what="explanation quality")
if request[2] and checks["check"].eq("relevance_mass").any():
    by = request[2][0]
    st.subheader(f"Does each method find the finding equally well for every {md(by)}?")
    table = localisation_by_group(checks, sample, by)
    st.dataframe(table, hide_index=True, key="qual_by_group",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("mean", "lo", "hi")}
                 | {"times_chance": st.column_config.NumberColumn("× chance", format="%.1f")})
