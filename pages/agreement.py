"""Reader agreement: how often readers agree with the model, for whom, and with each other."""
from __future__ import annotations

import streamlit as st

from data_adapters.tables import CLUSTER
from evaluation.cohort_summary import group_columns, with_bands
from evaluation.reader_agreement import mean_kappa, model_vs_reader, pairs_in_words
from evaluation.subgroups import board_view
from pages import _selection as selection, _session as session
from pages._display import heading, md
from workspace.settings import operator_settings

who = session.guard("agreement")  # the role check comes before anything is read
heading(__file__)
st.caption("What the readers recorded on Case review about this model version: agreement with the model per group "
           "(95% intervals clustered by case, or by patient where known: several readers' verdicts on one case are "
           "not independent, and the design effect says by how much they count less), whether its explanations "
           "helped, and agreement between readers (Cohen's kappa with a BCa bootstrap interval over the cases, or "
           "patients, both read). Each reader's latest verdict per case counts.")
root, model_path, manifest, handle, cohort = selection.loaded()
verdicts = session.record(root).verdicts(model_hash=handle.weights_hash, cohort_hash=cohort.content_hash)
if verdicts.empty:
    st.info(f"No verdicts on **{md(handle.label)}** with cohort **{md(cohort.name)}** "
            "yet: radiologists record them on "
            "Case review, under each case.")
    st.stop()

frame = with_bands(cohort.frame())
c = st.columns([2, 1])
by = c[0].multiselect("By group", group_columns(cohort), key="agree_by")
random_readers = c[1].toggle("For readers like these", key="agree_readers_random",
                             help="Off: the intervals are about these readers (clustered by case). On: about readers "
                                  "like them, clustered by case and by reader (two-way; wide with few readers).")
k = operator_settings().board_k if who.is_board else None
st.markdown(f"**{len(verdicts)}** verdicts on **{verdicts['case_id'].nunique()}** cases by "
            f"**{verdicts['reader'].nunique()}** reader(s)")
table = model_vs_reader(verdicts, frame, by, readers="random" if random_readers else "fixed")
st.subheader("Readers and the model")
if k:  # a board sees every group under k suppressed
    st.dataframe(board_view(table, k), hide_index=True, key="agree_table")
    st.caption(f"Groups with fewer than {k} verdicts are suppressed (the operator's k).")
else:
    st.dataframe(table, hide_index=True, key="agree_table", column_config={
        col: st.column_config.NumberColumn(format="%.3f")
        for col in ("agree", "agree_lo", "agree_hi", "design_effect", "disagree", "unsure", "explanation_useful",
                    "explanation_misleading")})
overall = table.iloc[0]
st.markdown(f"Readers agreed with the model on **{overall['agree']:.0%}** of verdicts (95% CI "
            f"{overall['agree_lo']:.0%}–{overall['agree_hi']:.0%}); where they judged the explanation, it was "
            f"useful in {overall['explanation_useful']:.0%} and misleading in "
            f"{overall['explanation_misleading']:.0%}." if overall["n"] else "")

st.subheader("Readers with each other")
pairs = pairs_in_words(verdicts, frame)  # patients resampled where known; undefined kappa: could not judge
if pairs.empty:
    st.info("No two readers have read at least 5 of the same cases under this version yet.")
else:
    shown = pairs.drop(columns=["reason"]).rename(columns={"words": "in words"})
    st.dataframe(shown, hide_index=True, key="agree_pairs", column_config={
        col: st.column_config.NumberColumn(format="%.3f") for col in ("raw_agreement", "kappa", "kappa_lo",
                                                                      "kappa_hi")})
    st.caption("Kappa corrects raw agreement for what two readers would agree by chance; words after Landis & Koch "
               "(1977).")
    if len(pairs) > 1:  # Light's kappa over every pair; readers resampled too when the toggle asks for it
        overall = mean_kappa(verdicts, clusters=frame.set_index("case_id")[CLUSTER] if CLUSTER in frame
                             else None, readers="random" if random_readers else "fixed")
        if overall["verdict"] == "judged":
            st.markdown(f"Mean kappa over {overall['pairs']} pairs: **{overall['kappa']:.2f}** (95% CI "
                        f"{overall['kappa_lo']:.2f} to {overall['kappa_hi']:.2f}, "
                        + ("for readers like these: cases and readers resampled)" if random_readers else
                           "for these readers: cases resampled)")
                        + (f"; {overall['undefined_pairs']} pair(s) with kappa undefined left out"
                           if overall["undefined_pairs"] else ""))
        else:
            st.markdown(f"Mean kappa: could not judge ({overall['reason']}).")
if who.can("see_cases"):
    flagged = verdicts[verdicts["flag_board"]]
    if len(flagged):
        st.subheader("Flagged for the board")
        st.dataframe(flagged[["case_id", "reader", "agreement", "explanation", "corrected_label", "note", "at"]],
                     hide_index=True, key="agree_flagged")
else:
    st.caption(f"{int(verdicts['flag_board'].sum())} verdict(s) flagged for the board; their cases are reviewed on "
               "the board report, never by case here.")
