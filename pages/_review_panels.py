"""Case review's two panels that a radiologist works in: the worklist (presets, filters, order, next/previous) and
the verdict form. Widgets and layout only: what the worklist holds and keeps is ``evaluation.worklist``; where a
verdict goes is ``workspace.review``."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from data_adapters.errors import GlassboxError
from data_adapters.identifiers import identifier_in_text
from data_adapters.records import Cohort, ModelHandle
from evaluation.cohort_summary import group_columns
from evaluation.worklist import (
    PRESETS,
    SORTS,
    STATUSES,
    WorklistFilter,
    filter_groups,
    neighbour,
    outcome_choices,
    select,
)
from pages import _session as session
from pages._display import md
from workspace.access import Identity
from workspace.review import AGREEMENT, EXPLANATION, NOTE_LIMIT, Record, Verdict

GOTO = "_review_goto"
FIRST = "_review_first"
SAVED = "_review_saved"


def step(ids: tuple[str, ...], by: int) -> None:
    """Previous / next in the worklist's order (a button callback: runs before the case box is drawn)."""
    st.session_state["review_case"] = neighbour(ids, st.session_state.get("review_case"), by)


def worklist_panel(table: pd.DataFrame, cohort: Cohort, handle: ModelHandle, who: Identity, record: Record,
                   verdicts: pd.DataFrame, *, uncertain: bool, flipping: bool, method: str) -> pd.DataFrame:
    """The worklist's controls and table; returns the rows kept, in order."""
    with st.expander(f"Worklist · {len(table)} cases · {int((table['status'] != 'not reviewed').sum())} reviewed "
                     f"by you", expanded=True):
        c = st.columns([2, 2, 1, 1])
        preset = c[0].selectbox("Preset", list(PRESETS), key="review_preset_list",
                                on_change=lambda: st.session_state.__setitem__(FIRST, True),
                                help="\n\n".join(f"**{k}**: {v[0]}" for k, v in PRESETS.items()) +
                                     "\n\nA new preset opens on its first case.")
        sort = c[1].selectbox("Order", ["preset", *SORTS], key="review_sort",
                              format_func=lambda s: "the preset's" if s == "preset" else SORTS[s])
        sort = None if sort == "preset" else sort
        descending = c[2].toggle("Descending", key="review_desc", disabled=sort is None)
        referred = c[3].toggle("Referred only", key="review_referred", disabled=not uncertain,
                               help="Cases above the referral cutoff of uncertainty (Uncertainty page)")
        groups = filter_groups(group_columns(cohort))
        f = st.columns(len(groups) + 4)
        chosen = {g: f[i].multiselect(g.capitalize(), sorted(table[g].dropna().astype(str).unique()),
                                      key=f"review_{g}") for i, g in enumerate(groups)}
        outcome = f[len(groups)].multiselect("Outcome", outcome_choices(table, handle.judged_by_top_class),
                                             key="review_outcome")
        labels = f[len(groups) + 1].multiselect("True label", range(handle.n_classes), key="review_label",
                                                format_func=lambda k: handle.class_names[k])
        splits = (f[len(groups) + 2].multiselect("Split", sorted(table["split"].dropna().astype(str).unique()),
                                                 key="review_split") if "split" in table else [])
        statuses = f[len(groups) + 3].multiselect("Your review", STATUSES, key="review_status")
        probability = st.slider("Probability", 0.0, 1.0, (0.0, 1.0), 0.01, key="review_probability",
                                help="Of the class of interest (top-class view: of the top class)")
        try:
            spec = WorklistFilter(preset=preset, outcomes=tuple(outcome), labels=tuple(labels),
                                  groups=tuple((g, tuple(v)) for g, v in chosen.items()), splits=tuple(splits),
                                  statuses=tuple(statuses), probability=tuple(probability), referred_only=referred,
                                  sort=sort, descending=descending)
        except ValueError as e:
            st.error(md(e))
            st.stop()
        shown = select(table, spec)
        notes = [PRESETS[preset][0]]
        if not uncertain:
            notes.append(f"uncertainty not computed for this cohort yet (open the Uncertainty page, or run "
                         f"`glassbox uncertainty --method {method}`): the referral preset is empty")
        if preset == "flips between versions" and not flipping:
            notes.append("choose a version to flip against above")
        st.caption(f"{len(shown)} of {len(table)} cases · " + " · ".join(notes))
        columns = ["case_id", "truth", "called", "probability", "outcome", "confidence", *(
            ["uncertainty", "refer"] if uncertain else []), *groups, *(["split"] if "split" in table else []),
                   "status", "reviews", "flagged", *(["flip"] if flipping else [])]
        ids = tuple(shown["case_id"])

        def picked() -> None:  # a row clicked in the table opens that case
            rows = st.session_state["review_worklist"]["selection"]["rows"]
            if rows and rows[0] < len(ids):
                st.session_state["review_case"] = ids[rows[0]]

        st.dataframe(shown[columns], hide_index=True, key="review_worklist", height=240, on_select=picked,
                     selection_mode="single-row", column_config={
                         "probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f"),
                         "confidence": st.column_config.NumberColumn(format="%.2f",
                                                                     help="How far from the threshold (0..1)"),
                         "uncertainty": st.column_config.NumberColumn(format="%.3f", help=f"Entropy ({method})"),
                         "reviews": st.column_config.NumberColumn(help="Readers with a verdict on this case"),
                     })
        if who.can("export_verdicts") and len(verdicts):
            session.download(st, "Download verdicts with provenance (CSV)",
                            record.verdicts_csv(who, model_hash=handle.weights_hash, cohort_hash=cohort.content_hash),
                            file_name="verdicts.csv", key="review_export", what="verdicts")
    return shown


def verdict_panel(record: Record, verdicts: pd.DataFrame, who: Identity, handle: ModelHandle, cohort: Cohort,
                  case_id: str, ids: list[str]) -> None:
    """This reader's verdict on this case under this model version: the form, the confirmation once it is stored,
    and their earlier verdicts on it. Other readers' verdicts are not shown (independent reads), only how many."""
    saved = st.session_state.pop(SAVED, None)  # the confirmation, shown once after the record was written
    if saved:  # after "record and open next" it shows on the next case, naming the one recorded
        st.success(saved[1])
    here = verdicts[verdicts["case_id"] == case_id]
    mine = here[here["reader"] == who.name]
    others = here.loc[here["reader"] != who.name, "reader"].nunique()
    st.markdown(f"**Verdict** · {others} other reader(s) have read this case under {md(handle.version)}")
    if not who.can("record_verdict"):
        st.caption(f"The {who.role} role does not record verdicts (radiologists do).")
        return
    last = mine.iloc[-1] if len(mine) else None
    tag = f"{case_id}_{handle.weights_hash[:8]}"  # one form per case and version: nothing carries over by mistake
    labels = [None, *handle.class_names]
    with st.form(f"verdict_{tag}"):
        agreement = st.radio("With the model's call, I", AGREEMENT, horizontal=True, key=f"verdict_agreement_{tag}",
                             index=AGREEMENT.index(last["agreement"]) if last is not None else None)
        explanation = st.radio("The explanation was", EXPLANATION, horizontal=True, key=f"verdict_explanation_{tag}",
                               index=EXPLANATION.index(last["explanation"]) if last is not None else 2)
        corrected = st.selectbox("Corrected label", labels, key=f"verdict_label_{tag}",
                                 format_func=lambda c: "none" if c is None else c,
                                 index=labels.index(last["corrected_label"]) if last is not None
                                 and last["corrected_label"] in labels else 0)
        note = st.text_area("Note (never a patient identifier)", value=last["note"] if last is not None else "",
                            max_chars=NOTE_LIMIT, key=f"verdict_note_{tag}", height=80)
        flag = st.checkbox("Flag for the ethics board", key=f"verdict_flag_{tag}",
                           value=bool(last["flag_board"]) if last is not None else False)
        b = st.columns(2)
        save = b[0].form_submit_button("Record verdict", type="primary")
        save_next = b[1].form_submit_button("Record, next")
    if save or save_next:
        if agreement is None:
            st.error("Not recorded: choose agree, disagree or unsure.")
            return
        why = identifier_in_text(note)
        if why:
            st.error(f"Not recorded: the note seems to hold {why}. Patient identifiers are never stored; remove it "
                     "and record again (your note is still in the box).")
            return
        try:
            row = record.record_verdict(who, Verdict(
                case_id=case_id, model_version=handle.version, model_hash=handle.weights_hash, cohort=cohort.name,
                cohort_hash=cohort.content_hash, agreement=agreement, explanation=explanation,
                corrected_label=corrected, note=note.strip(), flag_board=flag), secret=session.secret())
        except GlassboxError as e:  # disk full, locked: say so, keep the form as it is
            st.error(f"Not recorded: {md(e)}. Your entries are still in the form; try again.")
            return
        when = dt.datetime.now().strftime("%H:%M:%S")
        st.session_state[SAVED] = (case_id, f"Recorded at {when}: case {md(case_id)}, **{agreement}**, explanation "
                                            f"{explanation} (verdict #{row}, stored before this message).")
        if save_next:
            following = neighbour(ids, case_id, +1)
            if following != case_id:
                st.session_state[GOTO] = following
        st.rerun()
    if last is not None:
        with st.expander("Your verdicts on this case (each change is a new row; the latest counts)"):
            history = record.verdicts(model_hash=handle.weights_hash, cohort_hash=cohort.content_hash,
                                      reader=who.name, history=True)
            st.dataframe(history.loc[history["case_id"] == case_id,
                                     ["at", "agreement", "explanation", "corrected_label", "note", "flag_board"]],
                         hide_index=True, key="review_history")
