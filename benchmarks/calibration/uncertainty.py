"""Calibration suite, uncertainty area: the intervals the Uncertainty page and ``glassbox uncertainty`` print
(``evaluation.referral``): the error-detection AUROC ("does uncertainty flag the model's mistakes?") with its 95%
interval, and the mean uncertainty per group with its 95% interval, simulated against the product's functions with
the product's design (stratified by error on images; patients resampled where the cohort knows them).

The model: each image is an error with chance ``q`` (a patient's propensity, Beta(2, 6), where images are nested in
patients) and its uncertainty is ``u = d · error + b + z``, ``b ~ N(0, σ_b²)`` a patient effect and ``z ~ N(0, 1)``.
An error and a correct answer from different patients then differ by ``d + N(0, 2 (1 + σ_b²))``, so the population
AUROC is ``Φ(d / √(2 (1 + σ_b²)))``; the population mean uncertainty is ``d · E[q] + 0`` (``E[q] = 0.25``).

``design="images"`` passes no patient key for a patient cohort (images treated as independent, the wrong design),
so the quick test can show the simulation fails on it.

The same area holds the Explanation quality page's other per-case mean with an interval (a check's mean over cases,
``localisation_by_group``), simulated on the same nesting.

Not claims with an error rate (descriptive, shown without an interval): the risk-coverage curve and its area, a case's
uncertainty percentile and referral flag (a quantile of the cohort's own values), and the board report's referral
figures (share referred, sensitivity among the kept): point estimates.

    python benchmarks/calibration/uncertainty.py [--sims 200]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.calibration import Claim  # noqa: E402
from data_adapters.tables import CLUSTER  # noqa: E402
from evaluation.referral import error_detection, uncertainty_by_group  # noqa: E402

SEPARATION = 1.2
PATIENT_SD = 1.0
ERROR_SHARE = 0.25  # E[Beta(2, 6)]
N_BOOT = 1000  # the product's default


def population_auroc(separation: float = SEPARATION, patient_sd: float = 0.0) -> float:
    return float(norm.cdf(separation / np.sqrt(2 * (1 + patient_sd ** 2))))


def _images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    error = rng.random(n) < ERROR_SHARE
    return SEPARATION * error + rng.normal(size=n), error


def _patients(rng: np.random.Generator, patients: int, patient_sd: float = PATIENT_SD, most: int = 4
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cluster = np.repeat(np.arange(patients), rng.integers(1, most + 1, patients))
    error = rng.random(len(cluster)) < rng.beta(2, 6, patients)[cluster]
    u = SEPARATION * error + rng.normal(0, patient_sd, patients)[cluster] + rng.normal(size=len(cluster))
    return u, error, cluster


def _covers(result: dict, truth: float) -> bool:
    return bool(result["lo"] <= truth <= result["hi"])


def _quality_values(rng: np.random.Generator, n: int, effect: np.ndarray | float = 0.0) -> np.ndarray:
    """A localisation score per image in (0, 1): ``sigmoid(−1 + b + z)``, ``z ~ N(0, 0.5²)``."""
    return 1 / (1 + np.exp(-(-1 + effect + rng.normal(0, 0.5, n))))


def population_quality_mean(patient_sd: float = PATIENT_SD) -> float:
    rng = np.random.default_rng(999)
    return float(_quality_values(rng, 2_000_000, rng.normal(0, patient_sd, 2_000_000)).mean())


def quality_coverage(rng: np.random.Generator, seed: int, *, keyed: bool = True, patients: int = 80,
                     patient_sd: float = PATIENT_SD, most: int = 4, truth: float | None = None) -> bool:
    """The Explanation quality page's mean of a check over cases with its 95% interval
    (``evaluation.explanation_quality.localisation_by_group``; patients resampled where known): a patient's images
    share an effect on the score."""
    from evaluation.explanation_quality import localisation_by_group

    cluster = np.repeat(np.arange(patients), rng.integers(1, most + 1, patients))
    values = _quality_values(rng, len(cluster), rng.normal(0, patient_sd, patients)[cluster])
    ids = [f"c{i}" for i in range(len(cluster))]
    checks = pd.DataFrame({"case_id": ids, "method": "sim", "check": "relevance_mass", "value": values,
                           "chance": 0.1})
    frame = pd.DataFrame({"case_id": ids, "g": "a"})
    if keyed:
        frame[CLUSTER] = cluster
    row = localisation_by_group(checks, frame, "g", seed=seed).iloc[0]
    truth = population_quality_mean(patient_sd) if truth is None else truth
    return bool(row["lo"] <= truth <= row["hi"])


def claims(sims: int, seed: int = 0, *, design: str = "patients", patients: int = 150, most: int = 4,
           patient_sd: float = PATIENT_SD) -> list[Claim]:
    keyed = design != "images"
    plain = clustered = by_group = 0
    for s in range(sims):
        u, e = _images(np.random.default_rng([seed, 70, s]), 300)
        plain += _covers(error_detection(u, e, seed=s), population_auroc())
        u, e, cluster = _patients(np.random.default_rng([seed, 71, s]), patients, patient_sd, most)
        result = error_detection(u, e, clusters=cluster if keyed else None, seed=s)
        clustered += _covers(result, population_auroc(patient_sd=patient_sd))
        frame = pd.DataFrame({"u": u, "g": np.where(cluster % 2 == 0, "a", "b")})
        if keyed:
            frame[CLUSTER] = cluster
        row = uncertainty_by_group(frame, "g", "u", seed=s).iloc[0]
        by_group += bool(row["mean_lo"] <= SEPARATION * ERROR_SHARE <= row["mean_hi"])
    what = "patients resampled" if keyed else "images as independent (wrong here)"
    truth = population_quality_mean(patient_sd)
    quality = sum(quality_coverage(np.random.default_rng([seed, 72, s]), s, keyed=keyed, patient_sd=patient_sd,
                                   most=most, truth=truth) for s in range(sims))
    return [
        Claim("explanation quality: a check's mean over cases, 95% interval (80 patients, 1-4 images)", "coverage",
              0.95, quality, sims, f"{what}; percentile"),
        Claim("error-detection AUROC, 95% interval (300 images)", "coverage", 0.95, plain, sims,
              "bootstrap stratified by error; percentile"),
        Claim(f"error-detection AUROC, 95% interval ({patients} patients, 1-{most} images)", "coverage", 0.95,
              clustered, sims, f"{what}; percentile"),
        Claim(f"mean uncertainty of a group, 95% interval (~{patients // 2} patients)", "coverage", 0.95, by_group,
              sims, f"{what}; percentile"),
    ]


if __name__ == "__main__":  # the suite's own runner, this area only
    import sys

    from benchmarks.calibration_suite import main

    sys.exit(main(["--only", "uncertainty", *sys.argv[1:]]))
