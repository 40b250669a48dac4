"""Uncertainty: how sure the model is, whether that flags its mistakes, for whom it is unsure, and calibration."""
from __future__ import annotations

import streamlit as st

from data_adapters.errors import GlassboxError
from data_adapters.tables import CLUSTER, probability_column, probability_columns
from evaluation.calibration import check_reliability, ece_expected_by_chance, recalibrate
from evaluation.cohort_summary import group_columns, held_out_split, with_bands
from evaluation.figures import (
    reliability_diagram,
    risk_coverage_figure,
    uncertainty_by_group_figure,
)
from evaluation.referral import (
    REFER_FRACTION,
    area_under_risk_coverage,
    error_detection,
    kept_accuracy,
    referral_cutoff,
    referred,
    risk_coverage,
    uncertainty_by_group,
    with_spread,
)
from evaluation.outcomes import class_views, judged_class, uses_top_class, with_outcomes
from evaluation.subgroups import labelled_frame, resampling
from explainers.uncertainty import default_method, has_dropout
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import chart, heading, md, show_error

MEASURES = {"entropy": "predictive entropy (nats)", "mutual_information": "mutual information (epistemic)",
            "std": "standard deviation of the class probability (the top class's in the top-class view)"}

who = session.guard("uncertainty")  # the role check comes before anything is read
heading(__file__)
st.caption("Per-case uncertainty from Monte Carlo dropout, test-time augmentation or an ensemble of versions.")
root, model_path, manifest, handle, cohort = selection.loaded()
_, models, _ = selection.options()

c = st.columns(4)
methods = ["mc_dropout", "tta", "ensemble"]
method = c[0].selectbox("Method", methods, index=methods.index(default_method(handle)), key="unc_method",
                        help="mc_dropout needs dropout layers (this model "
                             f"{'has' if has_dropout(handle) else 'has none'}; the default here is "
                             f"{default_method(handle)}); ensemble: every "
                             "model version in the workspace that takes the same input and predicts the same classes")
measure = c[1].selectbox("Measure", list(MEASURES), format_func=MEASURES.get, key="unc_measure")
top_view = uses_top_class(handle)
views = class_views(handle)
k = c[2].selectbox("Errors of", views, index=views.index(judged_class(handle)), key="unc_class",
                   format_func=lambda i: "top class vs label" if i is None else handle.class_names[i],
                   help="A multi-class model errs when its top class is not the label; one class one-vs-rest at its "
                        "threshold is a choice" if top_view else None)
refer = c[3].slider("Refer the most uncertain", 0.0, 0.5, REFER_FRACTION, 0.01, key="unc_refer", format="%.2f")
paths = list(selection.peers(handle, models).values()) if method == "ensemble" else [model_path]
try:
    unc = cache.uncertainty(root, paths, manifest, method)
except GlassboxError as e:
    show_error(e)
    st.stop()

unc = with_spread(unc, k)
groups = group_columns(cohort)
if cohort.frame()["label"].isna().all():  # e.g. a folder of DICOM studies: no errors to detect, still who to refer
    st.info("This cohort has no labels, so error detection and calibration cannot be measured. Shown: how "
            "uncertain the model is, by group, and which cases the referral cutoff would send to a reader.")
    everything = with_bands(cohort.frame()).merge(unc, on="case_id")
    cutoff = referral_cutoff(everything[measure], refer)
    sent = everything[referred(everything[measure], cutoff=cutoff)].sort_values(measure, ascending=False)
    m = st.columns(3)
    m[0].metric("Cases", len(everything))
    m[1].metric(f"Referred (most uncertain {refer:.0%})", len(sent))
    m[2].metric(f"Cutoff ({MEASURES[measure].split(' (')[0]})", f"{cutoff:.3f}", help="cases above it are referred")
    left, right = st.columns(2)
    if groups:
        by = right.selectbox("Uncertainty by", groups, key="unc_by")
        chart(right, uncertainty_by_group_figure(uncertainty_by_group(everything, by, measure), measure),
                           key="unc_groups")
    shown_p = probability_columns(handle) if k is None else [probability_column(k)]
    left.dataframe(sent[["case_id", measure, *shown_p, *groups]], hide_index=True, key="unc_referred")
    st.stop()
# errors are the model's own predictions (as Case review and Subgroups count them); the method supplies only the
# uncertainty of each case
preds = cache.predictions_or_stop(root, model_path, manifest)
measures = unc[["case_id", "entropy", "mutual_information", "std"]]
frame = labelled_frame(with_bands(cohort.frame()), preds, k if k is not None else 0).merge(measures, on="case_id")
if held_out := held_out_split(frame):
    splits = st.multiselect("Cases from split", sorted(frame["split"].dropna().unique()), default=[held_out],
                            key="unc_split", help="Judge uncertainty on held-out cases, not the training data")
    frame = frame[frame["split"].isin(splits)] if splits else frame
if k is None:
    rule = "top class against the label"
    frame = with_outcomes(frame, None, n_classes=handle.n_classes)
else:
    point = cache.operating_point(root, model_path, manifest, k)
    if point.warning:
        st.warning(point.warning[0].upper() + point.warning[1:] + ".")
    rule = f"{md(handle.class_names[k])} one-vs-rest at the shared threshold {point.describe()}"
    frame = with_outcomes(frame, k, point.threshold)
clusters = frame[CLUSTER].to_numpy() if CLUSTER in frame else None
detect = error_detection(frame[measure].to_numpy(), frame["error"].to_numpy(), clusters=clusters)
curve = risk_coverage(frame[measure].to_numpy(), ~frame["error"].to_numpy())
m = st.columns(4)
m[0].metric("Errors", f"{detect['errors']} of {detect['n']}", help=f"Errors: {rule}")
m[1].metric("Uncertainty flags errors (AUROC)", f"{detect['auroc']:.3f}",
            help=f"95% CI {detect['lo']:.3f} to {detect['hi']:.3f}; 0.5 = no better than chance")
kept, overall = kept_accuracy(frame[measure].to_numpy(), ~frame["error"].to_numpy(), refer)
m[2].metric(f"Accuracy after referring {refer:.0%}", f"{kept:.3f}", delta=f"{kept - overall:+.3f} vs all")
m[3].metric("Area under risk-coverage", f"{area_under_risk_coverage(curve):.3f}", help="mean risk; lower is better")
st.caption(f"Errors: {rule}. Error-detection AUROC 95% interval: {detect['lo']:.3f} to {detect['hi']:.3f} "
           f"({resampling(frame)}).")

left, right = st.columns(2)
chart(left, risk_coverage_figure(curve, refer), key="unc_risk")
if groups:
    by = right.selectbox("Uncertainty by", groups, key="unc_by")
    chart(right, uncertainty_by_group_figure(uncertainty_by_group(frame, by, measure), measure),
                       key="unc_groups")

st.subheader("Calibration: recalibration fitted and checked on held-out patients")
held = frame
if handle.task == "multilabel":
    st.info("Recalibration is fitted for binary and multi-class models.")
else:
    probs = held[probability_columns(handle)].to_numpy()
    labels = held["label"].astype(int).to_numpy()
    try:
        result = recalibrate(probs, labels, handle.task, clusters=clusters, class_index=k)
    except GlassboxError as e:
        show_error(e)
        st.stop()
    if result.scaler is None:
        st.info(result.message)
        st.stop()
    (st.success if result.applied else st.warning)(result.message[0].upper() + result.message[1:] + ".")
    # the top-class view checks the confidence of the top class (top-label calibration); one class, its probability
    y_eval, before, after = check_reliability(result, probs, labels, k)
    cal = st.columns(4)
    cal[0].metric("Temperature", f"{result.scaler.temperature:.2f}",
                  help=f"offset {result.scaler.bias:+.2f}" if handle.task == "binary" else None)
    cal[1].metric("ECE before", f"{result.ece_before:.3f}")
    cal[2].metric("ECE after", f"{result.ece_after:.3f}")
    cal[3].metric("ECE expected by chance", f"{ece_expected_by_chance(before):.3f}",
                  help="what a perfectly calibrated model would read on these cases: ECE is above 0 by noise alone")
    st.caption(f"{result.method} fitted on {result.fit_patients} held-out patients ({result.fit_cases} cases), "
               f"checked on {result.check_patients} other patients ({result.check_cases} cases). Applied only when "
               "the log loss is shown to improve on the check patients (one-sided 97.5% patient-bootstrap bound) "
               "and the ECE is not worse there.")
    chart(st, reliability_diagram({"before": (y_eval, before), "after": (y_eval, after)},
                                        title="Reliability on the check patients, before and after scaling"),
                    key="unc_reliability")
