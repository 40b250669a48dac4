"""The demo's planted truths, measured on the models a build produced (or shipped), before anyone reviews them.

The demo is only worth showing if what it claims is true of *these* weights on *this* machine: v1 leans on site
B's marker, v2 does not and misses the occult lesions, both find visible lesions (and their explanations say so),
the 3D model relies on the nodule and its occlusion evidence sits there, and TCAV's lesion concept points the
right way. :func:`run_checks` measures each claim on held-out cases and returns :class:`DemoCheck` records;
``glassbox demo`` writes them into ``demo.json`` and stops when one fails; the Home page shows them. A few
figures (``MEASURES``) are recorded and shown but not asserted, because they varied between training runs.

Bounds were set from the spread over 5 training seeds × 1 and 2 torch threads (``benchmarks/demo_spread.py``;
the figures are in each check's ``spread`` note), with a margin below the worst run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation
from sklearn.metrics import roc_auc_score

from data_adapters.cohort import load_image_batch
from data_adapters.demo.synthesis import MARKER_BOX, erase_marker, occult_cases
from data_adapters.demo.volumes import LUNG_HU
from data_adapters.readers import read_image
from data_adapters.records import Case, Cohort, ModelHandle
from explainers.figures import OPENING_METHOD, peak_slice
from explainers.inference import probabilities_of
from workspace.concepts import concept_scores

__all__ = ["DemoCheck", "run_checks", "CHECKS", "MEASURES"]


@dataclass(frozen=True)
class DemoCheck:
    """One planted property: ``value`` measured, ``holds`` when ``value op bound`` (``op`` is ``>=`` or ``<=``)."""

    name: str
    claim: str
    value: float
    bound: float
    op: str
    spread: str

    @property
    def asserted(self) -> bool:
        """False for a measurement recorded and shown without a claim (``op`` empty)."""
        return bool(self.op)

    @property
    def holds(self) -> bool:
        if not self.asserted:
            return True
        return bool(np.isfinite(self.value) and (self.value >= self.bound if self.op == ">=" else
                                                 self.value <= self.bound))

    def sentence(self) -> str:
        return self.claim.format(value=self.value)

    def record(self) -> dict:
        record = {**asdict(self), "holds": self.holds, "asserted": self.asserted, "sentence": self.sentence()}
        if not self.asserted:  # strict JSON has no NaN
            record["bound"] = None
        return record


#: name → (claim with {value}, op, bound, measured spread). The spread is min–max over 5 training seeds
#: (7, 11, 13, 17, 19) × 1 and 2 torch threads on a 2-core CPU (``benchmarks/demo_spread.py``); each bound lies
#: below the worst of those 10 runs with a margin.
CHECKS: dict[str, tuple[str, str, float, str]] = {
    "v1_marker_reliance": (
        "v1 relies on the marker: erasing it drops p(lesion) by {value:.2f} on held-out occult positives",
        ">=", 0.5, "0.80–0.86"),
    "v2_marker_reliance": (
        "v2 ignores the marker: erasing it moves p(lesion) by {value:.2f} (absolute) on held-out marked positives",
        "<=", 0.1, "0.00–0.04"),
    "v1_lesion_auroc": (
        "v1 detects visible lesions: held-out AUROC {value:.3f} at sites A and C", ">=", 0.95, "1.000 in all 10"),
    "v2_lesion_auroc": (
        "v2 detects visible lesions: held-out AUROC {value:.3f} at sites A and C", ">=", 0.95, "1.000 in all 10"),
    "v2_misses_occult": (
        "v2 cannot see site B's occult lesions: its sensitivity there is {value:.2f} lower than at A and C",
        ">=", 0.15, "0.24–0.30"),
    "v1_marker_attribution": (
        "v1's integrated gradients put {value:.1f}× the marker box's area share on the box (held-out marked cases)",
        ">=", 10.0, "24–45×"),
    "v2_lesion_attribution": (
        "v2's integrated gradients put {value:.1f}× the lesion's area share inside the lesion (held-out, A and C)",
        ">=", 4.0, "5.9–92×"),
    "v2_gradcam_lesion": (
        "v2's Grad-CAM puts {value:.1f}× the lesion's area share of its positive evidence inside the lesion "
        "(held-out, A and C)", ">=", 1.5, "2.9–5.9×"),
    "tcav_lesion_v1": (
        "TCAV: the lesion concept raises v1's score, {value:+.2f} over reference concepts (significant, Holm)", ">=",
        0.25, "+0.38 to +0.77 under the earlier shared-set design; +0.48 with independent runs on the shipped weights "
              "(3 seeds)"),
    "tcav_lesion_v2": (
        "TCAV: the lesion concept raises v2's score, {value:+.2f} over reference concepts (significant, Holm)", ">=",
        0.25, "+0.40 to +0.97 under the earlier shared-set design; +0.50 with independent runs on the shipped weights "
              "(3 seeds)"),
    "ct_auroc": ("the 3D model detects nodules: held-out AUROC {value:.3f}", ">=", 0.95, "0.998–1.000"),
    "ct_nodule_reliance": (
        "the 3D model relies on the nodule: filling it with lung drops p(nodule) by {value:.2f} on held-out positives",
        ">=", 0.35, "0.46–0.86"),
    "ct_occlusion_in_nodule": (
        "the 3D model's occlusion map puts {value:.1f}× the nodule's volume share of its positive evidence in the "
        "nodule (held-out positives)", ">=", 3.0, "7–64×"),
}
#: measured and shown, not asserted: each varied too much between training runs to be a property of the data
MEASURES: dict[str, tuple[str, str]] = {
    "ct_slice_hits_nodule": (
        "the 3D slice of occlusion's strongest positive evidence cuts the nodule in {value:.0%} of held-out positives "
        "(chance about 20%)", "4–89%; misses peak at the first or last slices, where the score also depends on "
                              "the volume's edge"),
    "tcav_marker_v1": (
        "TCAV: the marker moves v1's lesion score {value:+.2f} against reference concepts (best significant layer; "
        "0 when none is)",
        "under the earlier shared-set design −0.25 to +0.73 over 6 runs (the sign varied); with independent runs "
        "significant at denseblock3 (+0.48) on the shipped weights in 3 of 3 seeds, as erasing the marker moves v1"),
    "tcav_marker_v2": (
        "TCAV: the marker moves v2's lesion score {value:+.2f} against reference concepts (best significant layer; "
        "0 when none is)",
        "under the earlier shared-set design +0.21 to +0.78 over 5 runs, though erasing the marker moved v2 by at "
        "most 0.04; with independent runs not significant at either layer on the shipped weights (3 of 3 seeds), "
        "and the Concepts page puts the erase result beside it"),
}


def _check(name: str, value: float) -> DemoCheck:
    if name in MEASURES:
        claim, spread = MEASURES[name]
        return DemoCheck(name=name, claim=claim, value=float(value), bound=float("nan"), op="", spread=spread)
    claim, op, bound, spread = CHECKS[name]
    return DemoCheck(name=name, claim=claim, value=float(value), bound=bound, op=op, spread=spread)


def _held_out(cohort: Cohort) -> list[Case]:
    return [c for c in cohort.cases if c.attributes.get("split") == "test"]


def _p_lesion(handle: ModelHandle, images: np.ndarray) -> np.ndarray:
    return probabilities_of(handle, images)[:, 1]


def _energy_ratio(maps, regions, *, positive: bool = False) -> float:
    """Mean share of |map| (or of its positive part) inside ``regions``, over the regions' mean area share."""
    energy = [np.clip(a.spatial_map(), 0, None) if positive else a.spatial_map(signed=False) for a in maps]
    shares = [e[r].sum() / max(e.sum(), 1e-12) for e, r in zip(energy, regions)]
    return float(np.mean(shares) / np.mean([r.mean() for r in regions]))


def _tcav_signed(frame, concept: str) -> float:
    """The (score − random score) of largest magnitude over layers where the concept is significant; 0 if none."""
    rows = frame[(frame["concept"] == concept) & frame["significant"]]
    excess = (rows["score"] - rows["null_score"]).to_numpy()
    return float(excess[np.argmax(np.abs(excess))]) if len(excess) else 0.0


def _tcav_excess(frame, concept: str) -> float:
    """The largest (score − random score) over layers where the concept is significant; 0 when none is."""
    rows = frame[(frame["concept"] == concept) & frame["significant"]]
    return float((rows["score"] - rows["null_score"]).max()) if len(rows) else 0.0


def run_checks(ws, cohort: Cohort, models: dict[str, ModelHandle], ct_cohort: Cohort, ct_model: ModelHandle,
               *, log: Callable[[str], None] = print) -> list[DemoCheck]:
    """Measure every planted property on held-out cases of the demo's cohorts (``ws``: the demo Workspace)."""
    folder = Path(ws.cohort_paths()["demo2d"]).parent
    occult = occult_cases(folder)
    test = _held_out(cohort)
    site = np.array([c.attributes["site"] for c in test])
    y = np.array([c.label for c in test])
    is_occult = np.array([c.case_id in occult for c in test])
    marked = np.array([int(c.attributes["marker"]) == 1 for c in test])
    images = load_image_batch(test)
    clean = images.copy()
    erase_marker(clean)
    p = {v: _p_lesion(models[v], images) for v in ("v1", "v2")}
    q = {v: _p_lesion(models[v], clean) for v in ("v1", "v2")}
    ac = site != "B"
    out = [
        _check("v1_marker_reliance", np.mean((p["v1"] - q["v1"])[is_occult])),
        _check("v2_marker_reliance", abs(np.mean((p["v2"] - q["v2"])[marked & (y == 1)]))),
        _check("v1_lesion_auroc", roc_auc_score(y[ac], p["v1"][ac])),
        _check("v2_lesion_auroc", roc_auc_score(y[ac], p["v2"][ac])),
        _check("v2_misses_occult", np.mean(p["v2"][(y == 1) & ac] >= 0.5)
               - np.mean(p["v2"][(y == 1) & ~ac] >= 0.5)),
    ]
    log("demo checks: marker reliance and lesion detection measured")
    marked_cases = [c for c, m in zip(test, marked) if m][:30]
    box = np.zeros(marked_cases[0].shape[1:], bool)
    box[MARKER_BOX] = True
    ig_v1 = ws.attributions(models["v1"], marked_cases, "integrated_gradients", "lesion")
    out.append(_check("v1_marker_attribution", _energy_ratio(ig_v1, [box] * len(marked_cases))))
    visible = [c for c, s in zip(test, site) if c.label == 1 and s != "B"][:40]
    masks = [read_image(c.mask).array[0] > 0.5 for c in visible]
    ig_v2 = ws.attributions(models["v2"], visible, "integrated_gradients", "lesion")
    out.append(_check("v2_lesion_attribution", _energy_ratio(ig_v2, masks)))
    cam_v2 = ws.attributions(models["v2"], visible, "grad_cam", "lesion")
    out.append(_check("v2_gradcam_lesion", _energy_ratio(cam_v2, masks, positive=True)))
    log("demo checks: integrated gradients measured")
    tcav = {v: concept_scores(ws, models[v], cohort, folder, ["marker", "lesion", "no_lesion"]) for v in ("v1", "v2")}
    out += [_check(f"tcav_lesion_{v}", _tcav_excess(tcav[v], "lesion")) for v in ("v1", "v2")]
    out += [_check(f"tcav_marker_{v}", _tcav_signed(tcav[v], "marker")) for v in ("v1", "v2")]
    log("demo checks: TCAV measured")
    ct_test = _held_out(ct_cohort)
    ct_p = ws.predictions(ct_model, ct_cohort).select([c.case_id for c in ct_test]).probability(1)
    out.append(_check("ct_auroc", roc_auc_score([c.label for c in ct_test], ct_p)))
    positives = [c for c in ct_test if c.label == 1]
    volumes = load_image_batch(positives)
    filled = volumes.copy()
    for i, c in enumerate(positives):  # the nodule's ball, a voxel wider, set to lung density
        filled[i, 0][binary_dilation(read_image(c.mask).array[0] > 0.5, iterations=1)] = LUNG_HU
    out.append(_check("ct_nodule_reliance", np.mean(_p_lesion(ct_model, volumes) - _p_lesion(ct_model, filled))))
    hits = []
    opening = ws.attributions(ct_model, positives, OPENING_METHOD, "lesion")
    nodules = [read_image(c.mask).array[0] > 0.5 for c in positives]
    for a, nodule in zip(opening, nodules):
        zs = np.nonzero(nodule)[0]
        hits.append(zs.min() - 1 <= peak_slice(a.spatial_map(), "axial", positive=True) <= zs.max() + 1)
    out.append(_check("ct_slice_hits_nodule", np.mean(hits)))
    out.append(_check("ct_occlusion_in_nodule", _energy_ratio(opening, nodules, positive=True)))
    return out
