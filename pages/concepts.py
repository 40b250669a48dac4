"""Concepts: which clinically meaningful concepts drive the model (TCAV), with significance."""
from __future__ import annotations

import streamlit as st

from data_adapters.errors import GlassboxError
from evaluation.concept_figures import tcav_figure
from explainers.concepts import concept_names, default_layers, default_target
from pages import _common as common

who = common.guard("concepts")  # the role check comes before anything is read
st.title("Concepts")
st.caption("TCAV (Kim et al., 2018): does the model's score for a class rise along the direction of a concept? "
           "Tested against random concepts (drawn from cases of the other classes, so that no random concept is "
           "itself the finding), corrected for every concept and layer tested together.")
root, model_path, manifest, handle, cohort = common.loaded()

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
n_random = c[3].number_input("Random concepts", 3, 30, 16, key="tcav_random")
concepts = chosen + ([extra.strip()] if extra.strip() else [])
if not concepts or not layers:
    st.info("Pick at least one concept and one layer.")
    st.stop()
try:
    scores = common.concept_scores(root, model_path, manifest, concepts, layers, k, int(n_random))
except GlassboxError as e:
    common.show_error(e)
    st.stop()

for row in scores[scores["significant"]].itertuples():
    st.info(f"**{common.md(row.concept)}** at **{common.md(row.layer)}**: "
            f"{row.verdict}. TCAV {row.score:.2f} ± {row.spread:.2f} "
               f"against {row.null_score:.2f} for random concepts.")
st.plotly_chart(tcav_figure(scores), key="tcav_fig")
st.dataframe(scores, hide_index=True, key="tcav_table")
common.download(st, "Download TCAV table (CSV)", scores, file_name="tcav.csv", key="tcav_download", what="tcav")
st.caption("A concept the layer cannot separate from random images (CAV accuracy below 0.6) is never called "
           "significant. TCAV says what the model is sensitive to, not that it is right to be, and it is a local "
           "derivative, not a causal effect: before acting on a concept, remove it from real cases and watch the "
           "score (on the demo, TCAV often calls the marker significant for v2, although erasing it moves v2's "
           "score by at most 0.04).")
