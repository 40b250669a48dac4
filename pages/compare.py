"""Compare versions: who got better or worse, for whom, and did the explanations change."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from data_adapters.errors import GlassboxError
from data_adapters.tables import ENTROPY
from evaluation.cohort_summary import group_columns, held_out_split
from evaluation.figures import agreement_figure, delta_forest, flip_scatter
from evaluation.outcomes import class_views, judged_class, uses_top_class
from evaluation.gates import noninferiority_gate
from evaluation.version_comparison import FLIP_KINDS, mcnemar_design, paired_error_detection, tcav_difference
from explainers.uncertainty import default_method
from explainers.concepts import concept_names, default_layers, default_target
from explainers.perturbation import NAMED_REGIONS, PERTURBATIONS
from explainers.saliency import SALIENCY_METHODS, default_methods
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import chart, heading, md, show_error

who = session.guard("compare")  # the role check comes before anything is read
heading(__file__)
st.caption("A candidate against a baseline on the same cases: paired differences with intervals and a "
           "non-inferiority verdict per group, the cases that changed, whether the maps changed, and what happens "
           "when a region is taken away.")
root, model_path, manifest, handle, cohort = selection.loaded()
_, models, _ = selection.options()
peers = selection.peers(handle, models)
if len(peers) < 2:
    st.info(f"Only **{md(handle.label)}** in this workspace takes this input and predicts these classes; a comparison "
            "needs a second version (add one under `models/`).")
    st.stop()

names = list(peers)
c = st.columns([1, 1, 2, 1])
candidate = c[1].selectbox("Candidate", names, index=names.index(model_path.name) if model_path.name in names else 0,
                           key="cmp_candidate")
others = [n for n in names if n != candidate]
baseline = c[0].selectbox("Baseline", others, key="cmp_baseline")
groups = group_columns(cohort)
by = c[2].multiselect("Within groups of", groups, default=groups[:1], key="cmp_by")
margin = c[3].number_input("Margin", 0.0, 0.5, 0.02, 0.005, format="%.3f", key="cmp_margin",
                           help="Non-inferiority margin: 'not worse' is shown when the candidate's adjusted lower "
                                "bound lies above baseline − margin")
top_view = uses_top_class(handle)
views = class_views(handle)
c = st.columns([1, 2])
k = c[0].selectbox("Judge", views, index=views.index(judged_class(handle)), key="cmp_class",
                   format_func=lambda i: "top class vs label" if i is None else (
                       f"{handle.class_names[i]} vs rest" if top_view else handle.class_names[i]))
splits = sorted(cohort.frame()["split"].dropna().unique()) if "split" in cohort.attribute_schema else []
held_out = held_out_split(cohort.frame())
split = c[1].selectbox("Cases from split", ["all", *splits], index=1 + splits.index(held_out) if held_out else 0,
                       key="cmp_split", help="Compare on held-out cases, not the training data")
where = {} if split == "all" else {"split": split}
try:
    result = cache.comparison(root, peers[baseline], peers[candidate], manifest, by, where, k, margin)
except GlassboxError as e:
    show_error(e)
    st.stop()
report, summary = result.report, result.summary

view = ("each case's top class against its label" if k is None else
        f"{md(handle.class_names[k])} at each version's shared threshold "
        f"({' / '.join(f'{t:.3f}' for t in result.thresholds)})")
st.markdown(f"**{md(candidate)}** against **{md(baseline)}** "
            f"on **{len(result.changes)}** labelled cases · {view} · "
            f"{report.n_boot} paired resamples ({report.resampling}) · non-inferiority bounds Bonferroni-adjusted "
            f"over {report.adjusted_over} group(s)")
st.caption(f"Burden of proof: {report.error_control}. 'Not shown' is neither shown not worse nor shown worse; each "
           "bootstrap bound's Monte Carlo interval (improvement_lower_mc_lo to _hi) says how far it could move with the "
           "seed; sensitivity, specificity and accuracy take Tango's score bound, which has none.")
# the banner states the Verdict `glassbox compare --max-regression` exits on, over every metric at this margin
verdict = noninferiority_gate(report, list(dict.fromkeys(report.table["metric"])))
worse = report.table[report.table["verdict"] == "worse"]
if verdict.outcome == "fail":
    st.warning("**Worse than the baseline by more than the margin** (the whole adjusted interval beyond it):  \n"
               + "  \n".join(f"**{md(group)}**: " + ", ".join(f"{r.metric.replace('_', ' ')} {r.delta:+.3f}"
                                                          for r in rows.itertuples())
                              for group, rows in worse.groupby("group", sort=False)))
else:
    st.success("No group where the candidate is shown worse than the baseline by more than the margin.")
    if verdict.outcome != "pass":  # not shown worse is not a pass: the gate also needs not-worse shown
        st.info(f"As a release gate at this margin: **{verdict.outcome}** ("
                + ("some group and metric is neither shown not worse nor shown worse"
                   if verdict.outcome == "not shown" else "no group is large enough to judge") + ").")

m = st.columns(5)
for col, kind in zip(m, FLIP_KINDS):
    col.metric(kind.capitalize(), summary[kind])
m[4].metric("McNemar p", f"{summary['mcnemar_p']:.3g}", help="On the cases whose outcome changed: is "
            "breaking more (or less) likely than fixing? " + mcnemar_design(summary) + ".")

st.subheader("Differences by group")
metric_names = list(dict.fromkeys(report.table["metric"]))
left, right = st.columns([3, 2])
chosen = left.multiselect("Metrics", metric_names, default=metric_names[:3], key="cmp_metrics")
table = report.table[report.table["metric"].isin(chosen or metric_names)]
left.dataframe(table.drop(columns=["small"]), hide_index=True, key="cmp_table",
               column_config={c: st.column_config.NumberColumn(format="%+.3f") for c in
                              ("delta", "delta_lo", "delta_hi", "improvement_lower", "improvement_lower_mc_lo",
                               "improvement_lower_mc_hi")})
session.download(left, "Download the delta table (CSV, with provenance)", report.table.assign(**result.provenance),
                file_name=f"compare_{baseline}_{candidate}.csv", key="cmp_download", what="comparison deltas")
forest_metric = right.selectbox("Forest plot of", metric_names, key="cmp_forest_metric")
chart(right, delta_forest(report.table, forest_metric), key="cmp_forest")

st.subheader("Cases that changed")
changes = result.changes
left, right = st.columns([3, 2])
kinds = left.multiselect("Show", list(FLIP_KINDS), default=["fixed", "broken"], key="cmp_kinds")
shown = changes[changes["change"].isin(kinds)] if kinds else changes
columns = ["case_id", "change", "label", "p_baseline", "p_candidate", "p_change", *result.grouping]
left.dataframe(shown[[c for c in columns if c in shown]].sort_values("p_change", key=abs, ascending=False),
               hide_index=True, key="cmp_flips")
session.download(left, "Download the changed cases (CSV, with provenance)", shown.assign(**result.provenance),
                file_name="flips.csv", key="cmp_flips_download", what="flipped cases")
chart(right, flip_scatter(changes, baseline, candidate), key="cmp_scatter")
if len(shown):
    pick = left.selectbox("Open in Case review", shown["case_id"].tolist(), key="cmp_open_case")
    if left.button("Open this case", key="cmp_open"):
        st.session_state["review_case"] = pick
        st.session_state["review_versions"] = [baseline, candidate]
        try:
            st.switch_page("pages/case_review.py")
        except StreamlitAPIException:  # run outside the app's navigation (a test): the choice is kept for Case review
            left.info(f"Case **{md(pick)}** is selected on Case review, with {md(baseline)} and "
                      f"{md(candidate)} side by side.")

st.subheader("Did the explanations change?")
c = st.columns([1, 1, 2])
opening_method = default_methods(cache.model(peers[baseline]), cache.model(peers[candidate]))[0]
method = c[0].selectbox("Method", SALIENCY_METHODS.names(), index=SALIENCY_METHODS.names().index(opening_method),
                        format_func=lambda n: SALIENCY_METHODS.get(n).title, key="cmp_method")
extra = c[1].number_input("Plus unchanged cases", 0, 200, 16, 8, key="cmp_extra",
                          help="Maps are computed (then cached) for every changed case and this many others")
changed = changes[changes["change"].isin(["fixed", "broken"])]
rest = changes[~changes.index.isin(changed.index)].head(int(extra))
picked = pd.concat([changed, rest])
targets = picked["predicted_baseline"].astype(int).tolist() if k is None else [k] * len(picked)
c[2].caption("Agreement of the two versions' maps of the same class (in the top-class view, the baseline's top "
             "class): Spearman rank correlation of |map| and the overlap (IoU) of their top 5% pixels. 1: the same "
             "evidence; near 0: the versions look at different places.")
try:
    agreement = cache.map_agreement(root, [peers[baseline], peers[candidate]], manifest,
                                     picked["case_id"].tolist(), method, targets)
except GlassboxError as e:
    show_error(e)
else:
    agreement = agreement.merge(picked[["case_id", "change", *result.grouping]], on="case_id")
    left, right = st.columns([2, 3])
    chart(left, agreement_figure(agreement, result.grouping[0] if result.grouping else None),
                      key="cmp_agreement")
    right.markdown("**Where the maps diverge most**")
    right.dataframe(agreement.sort_values("spearman").head(15), hide_index=True, key="cmp_divergent",
                    column_config={"spearman": st.column_config.NumberColumn(format="%.2f"),
                                   "top_overlap": st.column_config.NumberColumn(format="%.2f")})

st.subheader("Uncertainty: does each version know when it is wrong?")
c = st.columns([1, 1, 2])
unc_methods = ["mc_dropout", "tta"]
unc_method = c[0].selectbox("Method", unc_methods, index=unc_methods.index(default_method(handle)),
                            key="cmp_unc_method")
if c[1].button("Estimate for both versions", key="cmp_run_unc"):
    st.session_state["cmp_unc_run"] = unc_method
if st.session_state.get("cmp_unc_run"):
    method_ = st.session_state["cmp_unc_run"]
    try:
        entropy = {v: cache.uncertainty(root, [peers[v]], manifest, method_).select(changes["case_id"])
                   .figure(ENTROPY) for v in (baseline, candidate)}
    except GlassboxError as e:
        show_error(e)
    else:
        wrong = {baseline: changes["change"].isin(["fixed", "still wrong"]).to_numpy(),
                 candidate: changes["change"].isin(["broken", "still wrong"]).to_numpy()}
        detect = paired_error_detection(changes, entropy, wrong)
        st.dataframe(detect, hide_index=True, key="cmp_unc",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("auroc", "lo", "hi")})
        c[2].caption(f"Error-detection AUROC of predictive entropy ({method_}) for each version's own errors, and "
                     "the paired difference (same resampled cases). ECE and Brier deltas are in the table above.")

st.subheader("Concepts (TCAV), side by side")
named = concept_names(manifest.parent)
if not named:
    st.caption("This cohort has no concept folders (`concepts/<name>/` beside the manifest).")
else:
    c = st.columns([2, 1, 1])
    concepts = c[0].multiselect("Concepts", named, default=named, key="cmp_concepts")
    try:
        concept_class = default_target(handle, cohort)
    except GlassboxError:
        concept_class = 0
    if c[1].button("Run TCAV for both versions", key="cmp_run_tcav", disabled=not concepts):
        st.session_state["cmp_tcav_run"] = tuple(concepts)
    c[2].caption(f"Class '{md(handle.class_names[concept_class])}', the network's default layers, 15 runs "
                 "per concept (as the Concepts page)")
    if st.session_state.get("cmp_tcav_run"):
        try:
            scores = {v: cache.concept_scores(root, peers[v], manifest, list(st.session_state["cmp_tcav_run"]),
                                               default_layers(cache.model(peers[v])), concept_class, 15)
                      for v in (baseline, candidate)}
            both = tcav_difference(scores[baseline], scores[candidate], baseline=baseline, candidate=candidate)
        except GlassboxError as e:
            show_error(e)
        else:
            st.dataframe(both, hide_index=True, key="cmp_tcav",
                         column_config={"change": st.column_config.NumberColumn(format="%+.3f")})
            st.caption("Each version's concept sensitivity over its reference concepts, with its interval and its own "
                       "verdict (Holm across concepts and layers, as the Concepts page). No test of the difference "
                       "between versions is made: a test on per-run scores called equal versions different in 30% of "
                       "simulations. TCAV is a directional derivative, not a causal effect: the region test below "
                       "is the comparison of what each version relies on.")
            for v in (baseline, candidate):  # each version's own test, and its causal check where the concept has one
                for row in scores[v][scores[v]["agreement"].astype(bool)].itertuples():
                    (st.warning if "not causal" in row.agreement or "missed" in row.agreement else st.caption)(
                        f"{md(v)}: **{md(row.concept)}** at {md(row.layer)} — "
                        f"{md(row.agreement)}.")

st.subheader("Region test")
st.caption("Take one region away in every case and predict again: a version that moves relies on what was there.")
c = st.columns([2, 1, 1])
region = c[0].text_input("Region: x0,y0,x1,y1 in pixels, or a name", "", key="cmp_region",
                         placeholder=", ".join(NAMED_REGIONS))
how = c[1].selectbox("Perturbation", PERTURBATIONS.names(), key="cmp_perturb")
if c[2].button("Run region test", key="cmp_run_region", disabled=not region.strip()):
    st.session_state["cmp_region_run"] = (region.strip(), how)
run = st.session_state.get("cmp_region_run")
if run:
    try:
        shift = cache.region_test(root, [peers[baseline], peers[candidate]], manifest,
                                   changes["case_id"].tolist(), run[0], run[1], changes, list(result.grouping), k)
    except GlassboxError as e:
        show_error(e)
    else:
        st.markdown(f"Region **{md(run[0])}**, perturbation **{run[1]}**: mean change of the probability "
                    + ("of each case's top class" if k is None else f"of {md(handle.class_names[k])}")
                    + " (paired 95% intervals).")
        st.dataframe(shift, hide_index=True, key="cmp_region_table",
                     column_config={c: st.column_config.NumberColumn(format="%+.3f") for c in ("mean_shift", "lo", "hi")})
st.caption("Provenance of every table here: " + json.dumps(result.provenance))
