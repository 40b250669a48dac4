"""Case review: one case, what the model saw (several saliency methods side by side), how sure it is."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from data_adapters.errors import GlassboxError
from data_adapters.preprocessing import mask_on_model_grid, on_model_grid
from data_adapters.readers import read_image
from data_adapters.tables import ENTROPY, probability_column
from evaluation.outcomes import class_views, judged_class, uses_top_class
from evaluation.cohort_summary import with_bands
from evaluation.worklist import case_options, worklist
from evaluation.referral import REFER_FRACTION, referral
from explainers.concepts import concept_names, default_layers
from explainers.figures import (
    COLORMAPS,
    OPENING_METHOD,
    PLANES,
    case_views,
    display_image,
    display_windows,
    image_units,
    opening_slice,
    overlay_scale,
    slice_anchors,
)
from explainers.saliency import SALIENCY_METHODS, default_methods
from explainers.trust import TRUST_CHECKS, map_problem
from explainers.uncertainty import default_method
from pages import _cache as cache, _selection as selection, _session as session
from pages._display import chart, heading, md, show_error
from pages import _review_panels as panels

who = session.guard("case_review")  # the role check comes before anything is read
heading(__file__)
root, model_path, manifest, handle, cohort = selection.loaded()
preds = cache.predictions_or_stop(root, model_path, manifest)

# -- which case: the worklist -------------------------------------------------------------------------------
top = st.columns([1, 1, 2])
top_view = uses_top_class(handle)  # a multi-class model is judged by its top class; one class vs rest is a choice
views = class_views(handle)
class_index = top[0].selectbox(
    "Class of interest", views, index=views.index(judged_class(handle)), key="review_class",
    format_func=lambda k: ("top class" if k is None else f"{handle.class_names[k]} vs rest" if top_view
                         else handle.class_names[k]),
    help="A multi-class model's outcome is its top class against the label; choose one class to see it one "
         "versus the rest at its own threshold" if top_view else None)
if class_index is None:
    point = None
    top[1].metric("Outcome rule", "top class", help="The class with the highest probability, against the label")
else:
    point = cache.operating_point(root, model_path, manifest, class_index)
    top[1].metric("Threshold", f"{point.threshold:.3f}", help=f"The model's shared operating threshold for this "
                  f"class: {point.describe()}. Subgroups and Uncertainty use the same one.")
_, all_models, _ = selection.options()
versions = [v for v in selection.peers(handle, all_models) if all_models[v] != model_path]
if st.session_state.get("review_flip_version") not in ("none", *versions):  # a version switch: keep what fits
    st.session_state["review_flip_version"] = "none"
flip_against = top[2].selectbox("Flips against version", ["none", *versions], key="review_flip_version",
                                disabled=not versions,
                                help="Mark the cases whose outcome differs under another version of this model "
                                     "(the preset 'flips between versions' lists them)")
record = session.record(root)
verdicts = record.verdicts(model_hash=handle.weights_hash, cohort_hash=cohort.content_hash)
unc_method = default_method(handle)
cached_unc = cache.cached_uncertainty(root, model_path, manifest, unc_method)
flip_against = None if flip_against == "none" else flip_against
other = cache.predictions_or_stop(root, all_models[flip_against], manifest) if flip_against else None
table = worklist(with_bands(cohort.frame()).merge(preds.frame, on="case_id", how="left"), class_index=class_index,
                 threshold=point.threshold if point else 0.5, n_classes=handle.n_classes,
                 class_names=handle.class_names,
                 uncertainty=cached_unc.frame.set_index("case_id")[ENTROPY] if cached_unc is not None else None,
                 refer_fraction=st.session_state.get("unc_refer", REFER_FRACTION), verdicts=verdicts, reader=who.name,
                 other=other)
shown = panels.worklist_panel(table, cohort, handle, who, record, verdicts, uncertain=cached_unc is not None,
                              flipping=flip_against is not None, method=unc_method)
ids = shown["case_id"].tolist()
if "_review_goto" in st.session_state:  # "record and open next" asked for the next case
    st.session_state["review_case"] = st.session_state.pop("_review_goto")
if st.session_state.pop(panels.FIRST, False) and ids:  # a new preset opens on its first case
    st.session_state["review_case"] = ids[0]
current = st.session_state.get("review_case")
options, kept_open = case_options(ids, current, table["case_id"])
if kept_open:  # a filter or a version switch no longer matches the case being read: keep it, and say so
    st.info(("No case matches these filters; " if shown.empty else "")
            + f"case **{current}** does not match the current filters; it stays open until you choose another.")
elif shown.empty:
    st.info("No case matches these filters.")
    st.stop()
nav = st.columns([4, 1, 1])
case_id = nav[0].selectbox(f"Case ({len(shown)} match)", options, key="review_case")
nav[1].button("◀ Previous", key="review_prev", on_click=panels.step, args=(tuple(ids), -1),
              disabled=case_id == (ids[0] if ids else None), width="stretch")
nav[2].button("Next ▶", key="review_next", on_click=panels.step, args=(tuple(ids), +1),
              disabled=case_id == (ids[-1] if ids else None), width="stretch")
row = table.set_index("case_id").loc[case_id]
case = cohort.case(case_id)
# maps explain the class of interest; in the top-class view, the class this case's model output chose
target = int(row["predicted"]) if class_index is None else class_index

# -- other versions of the model, side by side ---------------------------------------------------------------
if "review_versions" in st.session_state:  # set by Compare; keep only versions this model can be compared with
    st.session_state["review_versions"] = [v for v in st.session_state["review_versions"] if v in versions]
also = st.multiselect("Also show version(s)", versions, key="review_versions", disabled=not versions,
                      help="The same case and methods under other versions of this model (same input and classes), "
                           "one row per version, on one colour scale per method")

# -- display controls -------------------------------------------------------------------------------------
names = SALIENCY_METHODS.names()
methods = st.multiselect("Methods", names, default=default_methods(handle), key="review_methods",
                                  format_func=lambda n: SALIENCY_METHODS.get(n).title, max_selections=4)
controls = st.columns(5)
opacity = controls[0].slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="review_opacity")
colormap = controls[1].selectbox("Colormap", COLORMAPS, key="review_colormap")
signed = controls[2].radio("Values", ["absolute", "signed"], key="review_signed", horizontal=True) == "signed"
toggles = st.columns(3)
layout = toggles[0].radio("Layout", ["side by side", "focus"], key="review_layout", horizontal=True,
                          help="focus: one large view, the other methods as a strip beneath it, on one colour scale")
show_mask = toggles[1].checkbox("Outline ground-truth mask", value=True, key="review_mask",
                                disabled=case.mask is None)
check_maps = toggles[2].toggle("Trust checks under each map", value=True, key="review_trust",
                               help="Randomisation, faithfulness (deletion), localisation where a mask exists, "
                                    "stability: computed once per case and method, then cached")

# -- the case ---------------------------------------------------------------------------------------------
pre = handle.preprocessing
try:  # the files may have changed or gone since the cohort was checked
    as_read = read_image(case.image)
    # attributions live on the model's grid; show the image on it too, in colour where it is colour (a grey
    # model's channel conversion is for the model, not for the reader's eyes)
    decoded = on_model_grid(dataclasses.replace(pre, channels=None, in_channels=as_read.shape[0]), as_read)
    mask_image = read_image(case.mask) if case.mask is not None else None
except GlassboxError as e:
    show_error(e)
    st.stop()
image = decoded.array
units = image_units(image)
in_units = f" ({units})" if units else ""
windows = display_windows(image, decoded.window)
preset = controls[3].selectbox("Window preset", list(windows), key="review_preset")
center, width = windows[preset]
lo, hi = float(image.min()), float(image.max())
span = max(hi - lo, 1e-6)
# window/level in the image's own units (0..1 for PNG, HU for CT), keyed by case and preset so ranges fit
window = controls[4].slider(f"Window{in_units}", span / 100, max(span, width), float(width), span / 100,
                            key=f"review_window_{case_id}_{preset}")
level = controls[4].slider(f"Level{in_units}", min(lo, center), max(hi, center), float(center), span / 100,
                           key=f"review_level_{case_id}_{preset}")
mask = mask_on_model_grid(pre, mask_image) if (mask_image is not None and show_mask) else None
if pre.resamples:
    st.caption(f"Shown on the model's grid: {'×'.join(map(str, as_read.shape[1:]))} as read, "
               f"{'×'.join(map(str, decoded.shape[1:]))} as the model sees it ({pre.describe()}).")
info, views = st.columns([1, 3])
with info:
    st.subheader(md(case_id))  # from the manifest: escaped (no Markdown from files)
    probs = pd.DataFrame({"class": handle.class_names,
                          "probability": [float(row[probability_column(k)]) for k in range(handle.n_classes)]})
    st.dataframe(probs, hide_index=True, key="review_probs",
                 column_config={"probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                format="%.3f")})
    true = "unlabelled" if pd.isna(row["label"]) else md(handle.class_names[int(row["label"])])
    if class_index is None:
        st.markdown(f"**True label:** {true}  \n**Top class:** {md(handle.class_names[target])} "
                    f"({row['probability']:.3f})  \n**Outcome:** {row['outcome']}")
    else:
        st.markdown(f"**True label:** {true}  \n**Outcome for {md(handle.class_names[class_index])}:** {row['outcome']} "
                    f"at its shared threshold {point.threshold:.3f}")
    uncertainty_box = st.container()
    attrs = {k: v for k, v in case.attributes.items()}
    st.dataframe(pd.DataFrame({"attribute": list(attrs), "value": [str(v) for v in attrs.values()]}),
                 hide_index=True, key="review_attributes")
    panels.verdict_panel(record, verdicts, who, handle, cohort, case_id, ids)

maps: dict[str, object] = {}
for method in methods:  # cached per case; computed first so that a volume can open at the slice that matters
    try:
        maps[method] = cache.attribution(root, model_path, manifest, case_id, method, target)
    except GlassboxError as e:
        maps[method] = e


#: what to try when a map is empty, per method
EMPTY_HINT = {
    "grad_cam": "at its layer the class's gradients are zero or point away from the class everywhere, so the ReLU "
                "in Grad-CAM leaves nothing (common when the case carries no evidence for this class). Try saliency "
                "or integrated gradients, or the class the model predicts.",
    "guided_grad_cam": "its Grad-CAM factor is zero everywhere (see Grad-CAM). Try saliency or integrated gradients.",
    "*": "the gradients vanish (a saturated output) or the input is flat. Try integrated gradients or occlusion, "
         "which do not rely on a local gradient.",
}
BAND_COLOUR = {"passes": "green", "concern": "orange", "fails": "red", "n/a": "gray"}


def trust_strip(col, method: str) -> None:
    """One line of bands under a map, the values and what they mean on hover."""
    try:
        checks = cache.trust(root, model_path, manifest, [case_id], method, target)
    except GlassboxError as e:
        col.caption(f"Trust checks could not run: {md(e)}")
        return
    badges, details = [], []
    for r in checks.itertuples():
        check = TRUST_CHECKS.get(r.check)
        badges.append(f":{BAND_COLOUR[r.band]}[● {check.title}]")
        value = "n/a" if not np.isfinite(r.value) else f"{r.value:.3f}"
        vs = f" ({r.value / r.chance:.1f}× chance)" if r.chance and np.isfinite(r.value) else ""
        why = f" (could not judge: {check.undefined})" if r.band == "n/a" and check.undefined else ""
        details.append(f"{check.title}: {value}{vs}, {r.band}{why}: {check.meaning} ({check.citation}; band: "
                       f"{check.band_source})")
    col.markdown(" ".join(badges), help="\n\n".join(details))


def caption(a) -> str:
    delta = f" · completeness gap {a.convergence_delta:.2g}" if a.convergence_delta is not None else ""
    return (f"{md(handle.class_names[a.target])} · computed in {a.seconds * 1000:.0f} ms, then cached{delta} · "
            f"{SALIENCY_METHODS.get(a.method).citation}")


with views:
    spatial, rgb = display_image(image)  # colour in colour; otherwise the first channel. Maps: summed over channels
    plane, index = "axial", 0
    if spatial.ndim == 3 and not rgb:  # a volume: one plane at a time, opened at the slice that matters
        pick = st.columns([2, 2, 3, 2])
        plane = pick[0].radio("Plane", list(PLANES), horizontal=True, key="review_plane")
        n = spatial.shape[PLANES[plane]]
        # where a ground truth exists, open on it (the model's evidence is one choice away); otherwise at the
        # positive evidence of the method that landed on findings most often (explainers.figures.OPENING_METHOD)
        try:
            opening = cache.attribution(root, model_path, manifest, case_id, OPENING_METHOD, target).spatial_map()
        except GlassboxError:
            opening = None
        anchors = slice_anchors(mask=mask, opening=opening, opening_title=SALIENCY_METHODS.get(OPENING_METHOD).title,
                                maps={m: a.spatial_map() for m, a in maps.items() if not isinstance(a, GlassboxError)})
        why = pick[1].selectbox("Open at", list(anchors), index=0, key="review_anchor",
                                help="Where along the axis a new case or plane opens: the slice with the strongest "
                                     "evidence of one method, the centre of the ground truth, or the middle")
        start = opening_slice(anchors[why], plane, n)
        # numbered from 1 on the slider, in the caption and in the figure's title alike
        index = pick[2].slider("Slice", 1, n, start + 1, key=f"review_slice_{case_id}_{plane}_{target}_{why}",
                               help=f"Opens at the slice that matters ({why}); the dotted line in the projection "
                                    "below each view marks it") - 1
        pick[3].caption(f"{plane} slice {index + 1} of {n} · opened at the {why} (slice {start + 1}) · "
                        f"voxels {' × '.join(f'{s:g}' for s in decoded.spacing)} mm")
    style = {"mask": mask, "plane": plane, "index": index, "window": window, "level": level, "opacity": opacity,
             "colormap": colormap, "signed": signed, "rgb": rgb}
    rows = [(handle.version, maps)]
    for version in also:  # the same case, class and methods under each other version
        other_maps: dict[str, object] = {}
        for method in methods:
            try:
                other_maps[method] = cache.attribution(root, all_models[version], manifest, case_id, method, target)
            except GlassboxError as e:
                other_maps[method] = e
        rows.append((version, other_maps))
    scales = {m: overlay_scale(*(r[m].spatial_map(signed=signed) for _, r in rows
                                 if not isinstance(r[m], GlassboxError))) if len(rows) > 1 else None
              for m in methods}
    if len(rows) > 1:
        probabilities = {handle.version: float(row[probability_column(target)])}
        for version, _ in rows[1:]:
            other = cache.predictions_or_stop(root, all_models[version], manifest).frame.set_index("case_id")
            probabilities[version] = float(other.loc[case_id, probability_column(target)])
        st.markdown(f"**p({md(handle.class_names[target])})** by version: " + " · ".join(
            f"{md(v)} {p:.3f}" + (f" ({p - probabilities[handle.version]:+.3f})" if v != handle.version else "")
            for v, p in probabilities.items()) + " · one colour scale per method across versions")
    def draw(col, version: str, name: str, title: str, a, *, height: int = 340, colorbar: bool = True,
             detail: bool = True) -> None:
        """One view (the image, or one method's map over it) with its caption and trust strip."""
        if isinstance(a, GlassboxError):
            col.error(md(a))
            return
        problem = map_problem(a.array) if a is not None else None
        if problem:  # an unreadable map is said in words, never drawn as a bare image
            col.warning(f"**{title}** is {problem} for this case: {EMPTY_HINT.get(name, EMPTY_HINT['*'])}")
            return
        amap = a.spatial_map(signed=signed) if a is not None else None
        views_ = case_views(spatial, decoded.spacing, title=title, attribution=amap, scale=scales.get(name),
                            height=height, colorbar=colorbar, **style)
        for k, fig in enumerate(views_):
            suffix = "" if version == handle.version else f"_{version}"
            chart(col, fig, key=f"review_fig_{name}{suffix}" + ("_mip" if k else ""))
        if a is not None and detail:
            scaled = ("one scale across versions" if len(rows) > 1 else
                      "scaled to its own 99th percentile of |map| (= 1 on the colour bar)")
            col.caption(caption(a) + f" · {scaled}")
            if check_maps and version == handle.version:
                trust_strip(col, name)

    shown_names = ["image", *methods]
    focus = None
    if layout == "focus":
        focus = st.segmented_control("Large view", shown_names, key="review_focus", default=shown_names[-1],
                                     format_func=lambda n: "Image" if n == "image" else SALIENCY_METHODS.get(n).title)
        focus = focus or shown_names[-1]
    for version, version_maps in rows:
        tag = "" if len(rows) == 1 else f" · {version}"
        cells = [("image", f"Image{tag}", None),
                 *((m, SALIENCY_METHODS.get(m).title + tag, version_maps[m]) for m in methods)]
        if focus is None:
            for col, (name, title, a) in zip(st.columns(len(cells)), cells):
                draw(col, version, name, title, a)
            continue
        for name, title, a in cells:  # focus: one large view with its colour bar
            if name == focus:
                draw(st.container(), version, name, title, a, height=640)
        rest = [c for c in cells if c[0] != focus]
        if rest:  # the others as a strip, on the same 0..1 scale, without colour bars of their own
            for col, (name, title, a) in zip(st.columns(max(len(rest), 4)), rest):
                draw(col, version, name, title, a, height=200, colorbar=False, detail=False)
    if focus is not None:
        st.caption("Focus: every map is divided by its own 99th percentile of |attribution|, so one colour bar (on "
                   "the large view) reads them all; choose the large view above.")
with uncertainty_box:  # filled last: the case's uncertainty must not hold back the maps
    try:
        # the case in view alone; its place in the cohort only once the cohort's was computed (never on open)
        unc = (cached_unc if cached_unc is not None else
               cache.case_uncertainty(root, model_path, manifest, case_id, unc_method)).frame.set_index("case_id")
        st.metric("Uncertainty (entropy)", f"{unc.loc[case_id, 'entropy']:.3f}",
                  help=f"{unc_method}; mutual information {unc.loc[case_id, 'mutual_information']:.4f}")
        if cached_unc is not None:
            where = referral(unc["entropy"].to_numpy(), float(unc.loc[case_id, "entropy"]),
                             st.session_state.get("unc_refer", REFER_FRACTION))
            st.markdown(f"**Cohort percentile:** {where['percentile']:.0f}"
                        + ("  \n:orange[**Refer**: above the referral cutoff]" if where["refer"] else ""))
        else:
            st.caption("Cohort percentile and referral: once the cohort's uncertainty is computed (Uncertainty page, "
                       f"or `glassbox uncertainty --method {unc_method}`).")
    except GlassboxError as e:
        show_error(e)
named = concept_names(manifest.parent)
if named and handle.hookable:
    with views:
        layer = default_layers(handle)[0]
        try:
            sens = cache.concept_sensitivity(root, model_path, manifest, named, layer, case_id, target)
        except GlassboxError as e:
            show_error(e)
        else:
            st.markdown(f"**Concept sensitivity** at **{md(layer)}** (directional derivative of the "
                        f"'{md(handle.class_names[target])}' score along each concept's CAV; positive: moving "
                        "towards the concept raises it)")
            st.dataframe(sens[["concept", "sensitivity", "cav_accuracy"]], hide_index=True, key="review_concepts",
                         column_config={"sensitivity": st.column_config.NumberColumn(format="%+.4f")})
            st.caption("One case's local derivative, not a test and not a causal effect: whether a concept matters "
                       "across the class, against reference concepts and beside its erase check, is on the Concepts "
                       "page.")
st.caption("Maps explain the class of interest (in the top-class view, the case's top class). Red/bright: evidence for it; in signed view blue is evidence "
           "against. Saliency shows where the model looked, not why, and can be wrong.")
