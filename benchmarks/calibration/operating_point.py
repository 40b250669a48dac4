"""Operating points and recalibration: what the Subgroups page, the board report's clinical figures and the Uncertainty
page's recalibration print, simulated with the product's functions (``evaluation.operating_point``,
``evaluation.subgroups.subgroup_report``, ``evaluation.calibration.recalibrate``) under a known truth.

- *Sensitivity at the validation threshold*: a binary model whose scores are ``s | y ~ N(±1, 1)`` with calibrated
  probability ``sigmoid(2 s + logit 0.4)`` (prevalence 0.4), so the true sensitivity and specificity at any threshold
  are known in closed form. A cohort with a ``valid`` split of 150 cases and a ``test`` split of 200: the product
  fits the threshold (Youden) on ``valid`` and the subgroup report gives sensitivity and specificity on ``test`` with
  their 95% intervals; each must cover the true value at that threshold. The old design (``valid`` not recognised,
  the threshold fitted on ``test`` and judged there) is :func:`old_design`.
- *Recalibration on a calibrated model*: 150 held-out patients with 2 images each; a patient has one truth, its
  images share a patient effect (``s = ±1 + u + e``, ``u ~ N(0, 0.8²)``, ``e ~ N(0, 0.6²)``), the model's
  probability is the calibrated ``sigmoid(2 s + logit 0.4)``. The claim: the decision "apply recalibration" rarely
  makes the ECE worse on new patients (a fresh sample of 2,000 patients): a false alarm is "applied and worse".
- *Recalibration on an overconfident model* (the logit × 2.5, 300 held-out patients): applied and the fresh ECE
  better in ≥ 80%.
  The old design (fitted on half the images, always applied) is :func:`old_design`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from benchmarks.calibration import Claim
from data_adapters.tables import CLUSTER, PredictionTable
from evaluation.calibration import expected_calibration_error, fit_temperature, held_out_split, recalibrate
from evaluation.operating_point import fit_operating_point
from evaluation.subgroups import choose_threshold, labelled_frame, subgroup_report

PREVALENCE = 0.4
PRIOR = np.log(PREVALENCE / (1 - PREVALENCE))
VALID, TEST = 150, 200
PATIENTS, IMAGES = 150, 2
#: the overconfident model's held-out patients and how much its logit is inflated
POWER_PATIENTS, INFLATION = 300, 2.5
FRESH = 2000


def truth_at(threshold: float) -> tuple[float, float]:
    """True (sensitivity, specificity) of ``p >= threshold`` for the score model above."""
    s = (np.log(threshold / (1 - threshold)) - PRIOR) / 2
    return float(1 - norm.cdf(s - 1)), float(norm.cdf(s + 1))


def _cohort(rng: np.random.Generator):
    n = VALID + TEST
    y = rng.random(n) < PREVALENCE
    s = rng.normal(size=n) + np.where(y, 1.0, -1.0)
    p = 1 / (1 + np.exp(-(2 * s + PRIOR)))
    ids = [f"c{i}" for i in range(n)]
    frame = pd.DataFrame({"case_id": ids, "label": pd.array(y.astype(int), dtype="Int64"),
                          "split": ["valid"] * VALID + ["test"] * TEST, "all": "all"})
    return frame, PredictionTable(pd.DataFrame({"case_id": ids, "p_0": 1 - p, "p_1": p}), task="binary", n_classes=2)


def _covers(frame, preds, threshold) -> tuple[bool, bool]:
    test = labelled_frame(frame[frame["split"] == "test"], preds, 1)
    row = subgroup_report(test, "all", class_index=1, threshold=threshold).table.set_index("group").loc["overall"]
    sens, spec = truth_at(threshold)
    return (bool(row["sensitivity_lo"] <= sens <= row["sensitivity_hi"]),
            bool(row["specificity_lo"] <= spec <= row["specificity_hi"]))


def _patients(rng: np.random.Generator, patients: int, overconfident: bool = False):
    """``(probs (N, 2), labels, patient of each image)``; ``overconfident``: the logit times :data:`INFLATION`."""
    y = np.repeat(rng.random(patients) < PREVALENCE, IMAGES)
    u = np.repeat(rng.normal(0, 0.8, patients), IMAGES)
    s = np.where(y, 1.0, -1.0) + u + rng.normal(0, 0.6, patients * IMAGES)
    logit = (2 * s + PRIOR) * (INFLATION if overconfident else 1.0)
    p = 1 / (1 + np.exp(-logit))
    return np.column_stack([1 - p, p]), y.astype(int), np.repeat(np.arange(patients), IMAGES)


def _fresh_ece(rng, scaler, overconfident) -> tuple[float, float]:
    probs, labels, _ = _patients(rng, FRESH, overconfident)
    before = expected_calibration_error(labels, probs[:, 1])
    return before, expected_calibration_error(labels, scaler.apply(probs)[:, 1])


def claims(sims: int, seed: int = 0) -> list[Claim]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _claims(sims, seed)


def _claims(sims: int, seed: int) -> list[Claim]:
    rng = np.random.default_rng(seed)
    sens_cov = spec_cov = worse = improved = 0
    for s in range(sims):
        frame, preds = _cohort(rng)
        point = fit_operating_point(frame, preds, 1, cohort="sim")
        assert point.split == "valid", point
        a, b = _covers(frame, preds, point.threshold)
        sens_cov += a
        spec_cov += b
        probs, labels, clusters = _patients(rng, PATIENTS)
        r = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1, seed=seed + s)
        if r.applied:
            before, after = _fresh_ece(rng, r.scaler, False)
            worse += after > before
        probs, labels, clusters = _patients(rng, POWER_PATIENTS, overconfident=True)
        r = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1, seed=seed + s)
        if r.applied:
            before, after = _fresh_ece(rng, r.scaler, True)
            improved += after < before
    op = f"Youden on 'valid' ({VALID}), judged on 'test' ({TEST}), prevalence {PREVALENCE}, subgroup_report intervals"
    rc = (f"{PATIENTS} held-out patients × {IMAGES} images, fit on half the patients, checked on the other half, "
          f"judged on {FRESH} new patients")
    return [
        Claim("sensitivity interval at the validation threshold", "coverage", 0.95, sens_cov, sims, op),
        Claim("specificity interval at the validation threshold", "coverage", 0.95, spec_cov, sims, op),
        Claim("recalibration applied and worse (calibrated model)", "false alarm", 0.05, worse, sims, rc),
        Claim("recalibration applied and better (overconfident model)", "power", 0.80, improved, sims,
              rc.replace(f"{PATIENTS} held-out", f"{POWER_PATIENTS} held-out") + f", logit × {INFLATION:g}"),
    ]


def old_design(sims: int, seed: int = 0) -> dict[str, float]:
    """The earlier designs in the same simulations: the threshold fitted on ``test`` (``valid`` not recognised) and
    judged there (coverage of sensitivity and specificity), and recalibration fitted on half the images and always
    applied (how often the fresh ECE got worse, on the calibrated and on the overconfident model)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    sens_cov = spec_cov = worse = worse_over = 0
    with threadpool_limits(1):
        for _ in range(sims):
            frame, preds = _cohort(rng)
            test = labelled_frame(frame[frame["split"] == "test"], preds, 1)
            a, b = _covers(frame, preds, choose_threshold(test["y"].to_numpy(), test["p"].to_numpy()))
            sens_cov += a
            spec_cov += b
            for over in (False, True):
                probs, labels, _ = _patients(rng, PATIENTS, over)
                fit = held_out_split(np.arange(len(labels)))
                scaler = fit_temperature(probs[fit], labels[fit], "binary")
                before, after = _fresh_ece(rng, scaler, over)
                if over:
                    worse_over += after > before
                else:
                    worse += after > before
    return {"sensitivity_coverage": sens_cov / sims, "specificity_coverage": spec_cov / sims,
            "recalibration_worse": worse / sims, "recalibration_worse_overconfident": worse_over / sims}


def old_decision_rates(sims: int, seed: int = 0) -> dict[str, float]:
    """The product's split by patients but applied whatever the check says (``always=True``): how often it made a
    calibrated model's fresh ECE worse: the check, not only the split, is what keeps the rate down."""
    rng = np.random.default_rng(seed)
    worse = 0
    for s in range(sims):
        probs, labels, clusters = _patients(rng, PATIENTS)
        r = recalibrate(probs, labels, "binary", clusters=clusters, class_index=1, seed=seed + s, always=True)
        before, after = _fresh_ece(rng, r.scaler, False)
        worse += after > before
    return {"recalibration_worse": worse / sims}
