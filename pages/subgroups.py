"""Subgroup performance: metrics per group with 95% intervals, between-group gaps, ROC, forest and reliability."""
from __future__ import annotations

import streamlit as st

from data_adapters.errors import GlassboxError
from data_adapters.tables import OUTCOME, SCORE
from evaluation.calibration import miscalibration_verdict
from evaluation.cohort_summary import group_columns, held_out_split, with_bands
from evaluation.figures import confusion_figure, forest_plot, reliability_diagram, roc_by_group
from evaluation.metrics import ONE_VS_REST, TOP_CLASS, metric_names
from evaluation.multiclass import confusion_by_group, multiclass_report
from evaluation.outcomes import class_views, judged_class, uses_top_class
from evaluation.subgroups import labelled_frame, subgroup_report
from evaluation.cohort_summary import board_decision
from evaluation.gates import shown_gaps
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import chart, heading, md, show_error
from workspace.settings import operator_settings

who = session.guard("subgroups")  # the role check comes before anything is read
heading(__file__)
st.caption("Is the model as good for every group of patients? Estimates with 95% bootstrap intervals; what is "
           "resampled (images within each group, or patients where the cohort says which patient each image came "
           "from) is stated below. Gaps are judged together: one family-wise error over every metric and pair.")
root, model_path, manifest, handle, cohort = selection.loaded()
preds = cache.predictions_or_stop(root, model_path, manifest)

if cohort.frame()["label"].isna().all():
    st.info(f"Cohort **{md(cohort.name)}** has no labels (a folder of DICOM studies carries none), and performance "
            "needs them. Give the cases a `label` column in a manifest, or choose a labelled cohort in the sidebar; "
            "the Uncertainty page still shows which cases would be referred.")
    st.stop()
groups = group_columns(cohort)
if not groups:
    st.info("This cohort has no categorical attributes to group by.")
    st.stop()
c = st.columns([2, 1, 1, 1])
by = c[0].multiselect("Group by (two or more: intersections)", groups, default=groups[:1], key="sub_by")
top_view = uses_top_class(handle)
views = class_views(handle)
k = c[1].selectbox("Class", views, index=views.index(judged_class(handle)), key="sub_class",
                   format_func=lambda i: ("all classes (top class)" if i is None else
                                          f"{handle.class_names[i]} vs rest" if top_view else handle.class_names[i]),
                   help="A multi-class model is judged by its top class against the label; one class versus the "
                        "rest at its own threshold is a choice" if top_view else None)
rule = c[2].selectbox("Threshold", ["shared", "youden", "sensitivity=0.9", "specificity=0.9", "set by hand"],
                      key="sub_rule", disabled=k is None,
                      help="shared: the model's operating threshold, the one Case review and Uncertainty use; the "
                           "others re-choose it on the cases shown here. The top-class view needs none.")
manual = c[3].number_input("Threshold", 0.0, 1.0, 0.5, 0.01, key="sub_threshold",
                           disabled=rule != "set by hand" or k is None)
c = st.columns([1, 1, 2])
operator_k = operator_settings().board_k  # the operator's k (glassbox serve --board-k)
if who.is_board:  # a board member always sees the board view, at the operator's k or a larger one
    board = c[0].toggle("Ethics-board view", value=True, key="sub_board_fixed", disabled=True,
                        help="Always on for the board role")
    k_min = c[1].number_input("k (board view)", operator_k, 1000, operator_k, key="sub_k_board",
                              help=f"The operator's smallest shown group is {operator_k}; you may raise it")
else:
    board = c[0].toggle("Ethics-board view", key="sub_board", help="Suppress every cell of a group smaller than k")
    k_min = c[1].number_input("k (board view)", 1, 1000, operator_k, key="sub_k", disabled=not board)
subset = {}
if "split" in cohort.attribute_schema:
    subset["split"] = c[2].multiselect("Cases from split", sorted(cohort.frame()["split"].dropna().unique()),
                                       default=[s for s in [held_out_split(cohort.frame())] if s],
                                       key="sub_split", help="Evaluate on held-out cases only")
if not by:
    st.info("Pick at least one attribute.")
    st.stop()

try:
    frame = labelled_frame(with_bands(cohort.frame()), preds, k if k is not None else 0)
    for attr, values in subset.items():
        if values:
            frame = frame[frame[attr].isin(values)]
    if k is None:
        report = multiclass_report(frame, by, handle.class_names)
    else:
        point = cache.operating_point(root, model_path, manifest, k)
        fixed = {"shared": point.threshold, "set by hand": manual}.get(rule)
        report = subgroup_report(frame, by, class_index=k, threshold=fixed, rule=rule if fixed is None else "youden")
except GlassboxError as e:
    show_error(e)
    st.stop()

if k is None:
    st.markdown(f"**{len(frame)}** labelled cases · all **{handle.n_classes}** classes, each case's top class "
                f"against its label · {report.n_boot} resamples ({report.resampling}) · gap intervals simultaneous "
                f"over every metric × pair of groups · groups under n={report.min_n} are flagged, not compared")
else:
    described = point.describe() if rule == "shared" else f"{report.threshold:.3f} ({report.threshold_rule})"
    versus = " versus the rest" if handle.n_classes > 2 else ""
    st.markdown(f"**{len(frame)}** labelled cases · class **{md(handle.class_names[k])}**{versus} · threshold "
                f"**{described}** · {report.n_boot} resamples ({report.resampling}) · gap intervals simultaneous "
                f"over every metric × pair of groups · groups under n={report.min_n} or {report.min_events} events "
                "per class are flagged, not compared, and get no interval")
    overall = report.table.iloc[0]
    shown = miscalibration_verdict(overall["ece_p"])
    st.caption(f"Calibration: ECE {overall['ece']:.3f}; {overall['ece_chance']:.3f} expected by chance for a "
               f"perfectly calibrated model at n={overall['n']} (column ece_chance per group: ECE is above 0 from "
               f"noise alone, most in small groups). Miscalibration {shown} (p = {overall['ece_p']:.3f}, outcomes "
               "redrawn as a calibrated model would give them; ece_p_holm per group, Holm over the groups). ECE has "
               "no interval: it is biased upward at small n, so a resampled interval would not cover its true value.")
# a board view hides small groups everywhere: one decision (evaluation.suppression) for every element below
# over every table the role can open (margins, intersections, Home): no hidden count follows from another page
hide = (board_decision(cohort, int(k_min), floor=operator_k if who.is_board else None).for_table(
    dict(zip(report.table["group"], report.table["n"])), by, where={a: v for a, v in subset.items() if v},
    labelled=True) if board else None)
# a board judges gaps among the groups it sees: no gap figure is computed from a hidden group (evaluation.gates)
judged = shown_gaps(report, frame, by, hide, rebuild=lambda seen: (
    multiclass_report(seen, by, handle.class_names) if k is None else
    subgroup_report(seen, by, class_index=k, threshold=report.threshold)))
for flag in judged.flags():
    st.warning(f"Gap: {md(flag)}.")
if hide is not None:
    st.caption(f"Board view: {hide.note}; a gap involving a hidden group is not shown.")
screen = judged.screen()  # the banner states the one Verdict the command's judgement line states
if screen.outcome == "could not judge":
    st.info(f"Could not judge gaps: {screen.reasons[0]}. Group more coarsely or lower the minimum group size; this "
            "is not an all-clear.")
elif screen.outcome == "pass":
    st.success(f"{screen.reasons[0].capitalize()}.")
elif screen.outcome == "not shown":  # every gap found involves a hidden group: no all-clear, no count of them
    st.info(f"{screen.reasons[0].capitalize()}.")
st.caption(f"Error controlled: {report.error_control}: the chance that any gap here is flagged when every group is "
           "truly equal is at most 5%.")
for metric, note in judged.notes():
    st.caption(f"{metric.replace('_', ' ')}: {note}.")

table = hide.table(report.table) if hide else report.table
st.subheader("By group")
st.dataframe(table, hide_index=True, key="sub_table")
session.download(st, "Download table (CSV)", table, file_name="subgroups.csv", key="sub_download",
                what="subgroup table (board view)" if board else "subgroup table")
st.subheader("Between-group gaps")
st.dataframe(judged.gaps(), hide_index=True, key="sub_gaps")

left, right = st.columns(2)
plotted = [m for m in metric_names(TOP_CLASS if k is None else ONE_VS_REST)
           if f"{m}_lo" in report.table]  # ECE has no interval to plot
metric = left.selectbox("Forest plot of", plotted, key="sub_metric")
shown = report.table if not hide else report.table[report.table["group"].astype(str).map(hide.shows)]
chart(left, forest_plot(shown, metric), key="sub_forest")
if k is None:
    confusions = confusion_by_group(report, int(k_min) if board else None)
    confusions = {g: c for g, c in confusions.items() if not hide or hide.shows(g)}
    which = right.selectbox("Confusion matrix of", list(confusions), key="sub_confusion_group")
    chart(right, confusion_figure(confusions[which], f"Top class against label · {which}"),
                       key="sub_confusion")
elif len(by) == 1:
    drawn = frame[frame[by[0]].astype(str).map(hide.shows)] if hide else frame
    chart(right, roc_by_group(drawn, by[0]), key="sub_roc")
    curves = {str(g): (sub[OUTCOME].to_numpy(), sub[SCORE].to_numpy())
              for g, sub in drawn.groupby(by[0], observed=True)}
    chart(right, reliability_diagram(curves, title=f"Reliability by {by[0]}"), key="sub_reliability")
else:
    right.info("ROC and reliability curves are drawn for a single attribute.")
