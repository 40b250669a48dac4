"""Concepts: which clinically meaningful concepts drive the model (TCAV), with significance."""
from __future__ import annotations

import streamlit as st

from data_adapters.errors import GlassboxError
from evaluation.concept_figures import TABLE_COLUMNS, tcav_figure
from evaluation.concept_significance import AGREES, GATE
from explainers.concepts import concept_names, default_layers, default_target
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import chart, heading, md, show_error

who = session.guard("concepts")  # the role check comes before anything is read
heading(__file__)
st.caption("TCAV (Kim et al., 2018): does the model's score for a class rise along the direction of a concept? "
           "Each run draws its own half of the concept's examples and its own random sample (cases of the other "
           "classes, so that no random sample is itself the finding) and trains its own concept vector; the null is "
           "reference concepts drawn from those random cases and run the same way. The test is on the sensitivity "
           "(the mean cosine between the class gradient and the concept vector), Holm-corrected across every concept "
           "and layer shown.")
root, model_path, manifest, handle, cohort = selection.loaded()

named = concept_names(manifest.parent)
layers_all = [n for n, _ in handle.module.named_modules() if n]
c = st.columns([2, 2, 1, 1])
chosen = c[0].multiselect("Concepts", named, default=named, key="tcav_concepts",
                          help="Folders under the cohort's concepts/; add attribute filters below")
extra = c[0].text_input("Attribute filter concept (optional)", "", key="tcav_filter", placeholder="site == B")
layers = c[1].multiselect("Layers", layers_all, default=default_layers(handle), key="tcav_layers")
try:
    default_class = default_target(handle, cohort)
except GlassboxError:  # an unlabelled cohort and a multi-class model: the reader picks
    default_class = 0
k = c[2].selectbox("Class", range(handle.n_classes), index=default_class,
                   help="Default: the positive class; for a multi-class model, the class with the most labelled cases",
                   format_func=lambda i: handle.class_names[i], key="tcav_class")
n_random = c[3].number_input("Runs", 3, 30, 15, key="tcav_random",
                             help="Runs per concept and layer, each with its own samples and concept vector")
concepts = chosen + ([extra.strip()] if extra.strip() else [])
if not concepts or not layers:
    st.info("Pick at least one concept and one layer.")
    st.stop()
try:
    scores = cache.concept_scores(root, model_path, manifest, concepts, layers, k, int(n_random))
except GlassboxError as e:
    show_error(e)
    st.stop()

for row in scores.itertuples():
    if row.significant:
        st.info(f"**{md(row.concept)}** at {md(row.layer)}: {md(row.verdict)}. Sensitivity {row.sensitivity:+.3f} against "
                f"{row.null_sensitivity:+.3f} for reference concepts (effect {row.effect:+.3f} "
                f"[{row.effect_lo:+.3f}, {row.effect_hi:+.3f}]); TCAV {row.score:.2f} against {row.null_score:.2f}.")
    if row.agreement:
        banner = st.success if row.agreement_kind == AGREES else st.warning
        banner(f"**{md(row.concept)}** at {md(row.layer)}, causal check: {md(row.agreement)}.")
chart(st, tcav_figure(scores), key="tcav_fig")
st.dataframe(scores[[c for c in TABLE_COLUMNS if c in scores]], hide_index=True, key="tcav_table")
session.download(st, "Download TCAV table (CSV)", scores, file_name="tcav.csv", key="tcav_download", what="tcav")
first = scores.iloc[0]
st.caption(f"Gate: {GATE}. {int(first['runs'])} runs of {int(first['sample'])} concept images each; "
           f"{int(first['references'])} reference concepts, so no p is below {first['p_floor']:.2g}. TCAV says what "
           "the model is sensitive to, not that it is right to be, and it is a local derivative, not a causal effect: "
           "where a concept folder says how to take the concept away (its concept.json), the change of the class "
           "probability on real cases stands beside the score, and a disagreement is named above.")
