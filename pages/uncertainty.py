"""Uncertainty: how sure the model is, whether that flags its mistakes, for whom it is unsure, and calibration."""
from __future__ import annotations

import streamlit as st

from data_adapters.errors import GlassboxError
from evaluation.calibration import (
    expected_calibration_error,
    fit_temperature,
    held_out_split,
)
from evaluation.cohort_summary import group_columns, with_bands
from evaluation.figures import (
    reliability_diagram,
    risk_coverage_figure,
    uncertainty_by_group_figure,
)
from evaluation.referral import (
    area_under_risk_coverage,
    error_detection,
    risk_coverage,
    uncertainty_by_group,
)
from evaluation.subgroups import labelled_frame
from pages import _common as common

MEASURES = {"entropy": "predictive entropy (nats)", "mutual_information": "mutual information (epistemic)",
            "std": "standard deviation of the class probability"}

st.title("Uncertainty")
st.caption("Per-case uncertainty from Monte Carlo dropout, test-time augmentation or an ensemble of versions.")
root, model_path, manifest, handle, cohort = common.loaded()
_, models, _ = common.selection()

c = st.columns(4)
method = c[0].selectbox("Method", ["mc_dropout", "tta", "ensemble"], key="unc_method",
                        help="ensemble: every model version in the workspace that takes the same input and "
                             "predicts the same classes")
measure = c[1].selectbox("Measure", list(MEASURES), format_func=MEASURES.get, key="unc_measure")
k = c[2].selectbox("Class", range(handle.n_classes), index=handle.n_classes - 1,
                   format_func=lambda i: handle.class_names[i], key="unc_class")
refer = c[3].slider("Refer the most uncertain", 0.0, 0.5, 0.1, 0.01, key="unc_refer", format="%.2f")
paths = list(common.peers(handle, models).values()) if method == "ensemble" else [model_path]
try:
    unc = common.uncertainty(root, paths, manifest, method)
except GlassboxError as e:
    common.show_error(e)
    st.stop()

unc = unc.rename(columns={f"mean_{i}": f"p_{i}" for i in range(handle.n_classes)})
unc["std"] = unc[f"std_{k}"]
groups = group_columns(cohort)
if cohort.frame()["label"].isna().all():  # e.g. a folder of DICOM studies: no errors to detect, still who to refer
    st.info("This cohort has no labels, so error detection and calibration cannot be measured. Shown: how "
            "uncertain the model is, by group, and which cases the referral cutoff would send to a reader.")
    everything = with_bands(cohort.frame()).merge(unc, on="case_id")
    referred = everything.nlargest(int(round(refer * len(everything))), measure)
    cutoff = float(referred[measure].min()) if len(referred) else float("nan")
    m = st.columns(3)
    m[0].metric("Cases", len(everything))
    m[1].metric(f"Referred (most uncertain {refer:.0%})", len(referred))
    m[2].metric(f"Cutoff ({MEASURES[measure].split(' (')[0]})", f"{cutoff:.3f}")
    left, right = st.columns(2)
    if groups:
        by = right.selectbox("Uncertainty by", groups, key="unc_by")
        right.plotly_chart(uncertainty_by_group_figure(uncertainty_by_group(everything, by, measure), measure),
                           key="unc_groups")
    left.dataframe(referred[["case_id", measure, f"p_{k}", *groups]], hide_index=True, key="unc_referred")
    st.stop()
frame = labelled_frame(with_bands(cohort.frame()), unc, k)
if "split" in frame and (frame["split"] == "test").any():
    splits = st.multiselect("Cases from split", sorted(frame["split"].dropna().unique()), default=["test"],
                            key="unc_split", help="Judge uncertainty on held-out cases, not the training data")
    frame = frame[frame["split"].isin(splits)] if splits else frame
point = common.operating_point(root, model_path, manifest, k)
threshold = point.threshold
frame["error"] = (frame["p"] >= threshold) != frame["y"]
detect = error_detection(frame[measure].to_numpy(), frame["error"].to_numpy())
curve = risk_coverage(frame[measure].to_numpy(), ~frame["error"].to_numpy())
m = st.columns(4)
m[0].metric("Errors", f"{detect['errors']} of {detect['n']}", help=f"at the shared threshold {point.describe()}")
m[1].metric("Uncertainty flags errors (AUROC)", f"{detect['auroc']:.3f}",
            help=f"95% CI {detect['lo']:.3f} to {detect['hi']:.3f}; 0.5 = no better than chance")
kept = curve.iloc[max(0, int(round(len(curve) * (1 - refer))) - 1)]["accuracy"] if refer < 1 else float("nan")
m[2].metric(f"Accuracy after referring {refer:.0%}", f"{kept:.3f}",
            delta=f"{kept - curve['accuracy'].iloc[-1]:+.3f} vs all")
m[3].metric("Area under risk-coverage", f"{area_under_risk_coverage(curve):.3f}", help="mean risk; lower is better")
st.caption(f"Error-detection AUROC 95% interval: {detect['lo']:.3f} to {detect['hi']:.3f}.")

left, right = st.columns(2)
left.plotly_chart(risk_coverage_figure(curve, refer), key="unc_risk")
if groups:
    by = right.selectbox("Uncertainty by", groups, key="unc_by")
    right.plotly_chart(uncertainty_by_group_figure(uncertainty_by_group(frame, by, measure), measure),
                       key="unc_groups")

st.subheader("Calibration: temperature scaling on held-out cases")
held = frame
if handle.task == "multilabel":
    st.info("Temperature scaling is fitted for binary and multi-class models.")
else:
    fit_mask = held_out_split(held["case_id"].to_numpy())
    probs = held[[f"p_{i}" for i in range(handle.n_classes)]].to_numpy()
    labels = held["label"].astype(int).to_numpy()
    try:
        scaler = fit_temperature(probs[fit_mask], labels[fit_mask], handle.task)
    except GlassboxError as e:
        common.show_error(e)
        st.stop()
    evaluate = ~fit_mask
    before, after = probs[evaluate][:, k], scaler.apply(probs[evaluate])[:, k]
    y_eval = labels[evaluate] == k
    cal = st.columns(3)
    cal[0].metric("Temperature", f"{scaler.temperature:.2f}",
                  help=f"offset {scaler.bias:+.2f}" if handle.task == "binary" else None)
    cal[1].metric("ECE before", f"{expected_calibration_error(y_eval, before):.3f}")
    cal[2].metric("ECE after", f"{expected_calibration_error(y_eval, after):.3f}")
    st.caption(f"Fitted on {int(fit_mask.sum())} held-out cases, measured on the other {int(evaluate.sum())}.")
    st.plotly_chart(reliability_diagram({"before": (y_eval, before), "after": (y_eval, after)},
                                        title="Reliability before and after scaling"), key="unc_reliability")
