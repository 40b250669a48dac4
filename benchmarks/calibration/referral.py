"""Calibration suite, referral area: the board report's clinical figures (``workspace/report.py``), each a 95%
interval made by the product's own functions (``evaluation.referral.clinical_rates`` and ``referral_outcomes``,
Wilson intervals from ``evaluation.inference``, at the patient design effect where the cohort knows its patients),
with the product's referral rule (``evaluation.referral.referral_cutoff``: the most uncertain 10% of the cohort,
the cutoff fitted on the very cohort it is judged on):

- the clinical line: missed positives and false alarms per 1000 cases at the operating threshold;
- with referral: the share referred, the sensitivity among the kept cases and the missed positives per 1000 kept.

Each interval is read as the rate for new cases like these (images from the same population; for the referral
figures, at the cutoff this cohort fitted), so the truth of a simulated cohort is that rate in a large population
drawn the same way, evaluated at the cohort's own cutoff.

The model: patients with 1 to ``most`` images; a patient's propensity to be positive is Beta(1.5, 3.5) (mean 0.3)
and each image's label is drawn from it; the model's logit is ``2.4 (2y - 1) + b + z``, ``b ~ N(0, σ_b²)`` a patient
effect, ``z ~ N(0, 1)``; the probability ``p = sigmoid(logit)``, called positive at the threshold 0.5 (an operating
point fixed before the cohort is judged); the uncertainty is the binary entropy of ``p`` plus a little Monte Carlo
noise, so that the referred cases are those near the threshold, where the errors are.

``design``: ``"patients"`` the product's (the patient key given where the cohort has one); ``"images"`` a patient
cohort's images taken as independent (no key passed: the wrong design); ``"point"`` the figures as the report printed
them before, a point estimate with no interval (an interval of zero width), so the quick test shows both fail.

    python benchmarks/calibration/referral.py [--sims 400]
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.calibration import Claim  # noqa: E402
from evaluation.referral import REFER_FRACTION, clinical_rates, referral_cutoff, referral_outcomes  # noqa: E402

SEPARATION = 2.4
THRESHOLD = 0.5
PATIENT_SD = 1.0
MOST = 4
#: images of the population the truths are read from
POPULATION = 1_500_000
DESIGNS = ("patients", "images", "point")


def draw(rng: np.random.Generator, patients: int, *, patient_sd: float = PATIENT_SD, most: int = MOST
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(uncertainty, y, called, patient)`` for ``patients`` patients of 1..``most`` images each."""
    patient = np.repeat(np.arange(patients), rng.integers(1, most + 1, patients))
    y = (rng.random(len(patient)) < rng.beta(1.5, 3.5, patients)[patient]).astype(int)
    logit = SEPARATION * (2 * y - 1) + rng.normal(0, patient_sd, patients)[patient] + rng.normal(size=len(patient))
    p = 1 / (1 + np.exp(-logit))
    q = np.clip(p, 1e-7, 1 - 1e-7)
    u = -(q * np.log(q) + (1 - q) * np.log(1 - q)) + rng.normal(0, 0.02, len(p))
    return u, y, p >= THRESHOLD, patient


class Population:
    """The rates a large population drawn like the cohorts has, at any referral cutoff (sorted once)."""

    def __init__(self, patient_sd: float, most: int):
        u, y, called, _ = draw(np.random.default_rng([20261204, int(patient_sd * 100), most]),
                               POPULATION * 2 // (most + 1), patient_sd=patient_sd, most=most)
        order = np.argsort(u, kind="stable")
        self.u = u[order]
        y, called = y[order], called[order]
        self.n = len(u)
        # cumulative counts over the kept cases (those at or below a cutoff) in uncertainty order
        self.positives = np.r_[0, np.cumsum(y == 1)]
        self.found = np.r_[0, np.cumsum((y == 1) & called)]
        self.missed_rate = float(((y == 1) & ~called).mean() * 1000)
        self.false_rate = float(((y == 0) & called).mean() * 1000)

    def at(self, cutoff: float) -> dict[str, float]:
        kept = int(np.searchsorted(self.u, cutoff, side="right"))
        pos, found = self.positives[kept], self.found[kept]
        return {"referred": 1 - kept / self.n, "sensitivity_kept": found / pos,
                "missed_per_kept": (pos - found) / kept * 1000}


@lru_cache(maxsize=4)
def population(patient_sd: float = PATIENT_SD, most: int = MOST) -> Population:
    return Population(patient_sd, most)


def _covers(ci: tuple[float, float], point: float, truth: float, design: str) -> bool:
    lo, hi = (point, point) if design == "point" else ci
    return bool(lo <= truth <= hi)


def cohort(rng: np.random.Generator, patients: int, *, design: str = "patients", patient_sd: float = PATIENT_SD,
           most: int = MOST, fraction: float = REFER_FRACTION) -> dict[str, bool]:
    """One simulated cohort judged as the report judges it: whether each figure's interval covers its truth."""
    if design not in DESIGNS:
        raise ValueError(f"design {design!r} is not one of {DESIGNS}")
    u, y, called, patient = draw(rng, patients, patient_sd=patient_sd, most=most)
    key = patient if design != "images" and most > 1 else None  # the product passes the key where it has one
    truth = population(patient_sd, most)
    rates = clinical_rates(y, called, clusters=key)
    cutoff = referral_cutoff(u, fraction)
    out = referral_outcomes(u, y, called, cutoff=cutoff, clusters=key)
    at = truth.at(cutoff)
    covered = {"missed": _covers(rates["missed_ci"], rates["missed"], truth.missed_rate, design),
               "false_alarms": _covers(rates["false_alarms_ci"], rates["false_alarms"], truth.false_rate, design)}
    for name in ("referred", "sensitivity_kept", "missed_per_kept"):
        covered[name] = out is not None and _covers(out[f"{name}_ci"], out[name], at[name], design)
    return covered


NAMES = {"missed": "missed positives per 1000 cases", "false_alarms": "false alarms per 1000 cases",
         "referred": "share referred (most uncertain 10%)", "sensitivity_kept": "sensitivity among the kept cases",
         "missed_per_kept": "missed positives per 1000 kept cases"}


def claims(sims: int, seed: int = 0, *, design: str = "patients", patients: int = 150, images: int = 400,
           patient_sd: float = PATIENT_SD, most: int = MOST) -> list[Claim]:
    """Coverage of each report figure's 95% interval: a cohort of ``images`` independent images (Wilson), and one of
    ``patients`` patients with 1..``most`` images each (Wilson at the patient design effect)."""
    plain = {k: 0 for k in NAMES}
    nested = {k: 0 for k in NAMES}
    for s in range(sims):
        for k, v in cohort(np.random.default_rng([seed, 90, s]), images, design=design, patient_sd=patient_sd,
                           most=1).items():
            plain[k] += v
        for k, v in cohort(np.random.default_rng([seed, 91, s]), patients, design=design, patient_sd=patient_sd,
                           most=most).items():
            nested[k] += v
    what = {"patients": "Wilson at the patient design effect", "images": "Wilson, images as independent (wrong here)",
            "point": "point estimate only (the old report)"}[design]
    plain_what = "point estimate only (the old report)" if design == "point" else "Wilson"
    rows = [Claim(f"board report: {NAMES[k]}, 95% interval ({images} images)", "coverage", 0.95, plain[k], sims,
                  f"{plain_what}; cutoff fitted on the cohort" if k in ("referred", "sensitivity_kept",
                                                                        "missed_per_kept") else plain_what)
            for k in NAMES]
    rows += [Claim(f"board report: {NAMES[k]}, 95% interval ({patients} patients, 1-{most} images)", "coverage",
                   0.95, nested[k], sims, what) for k in NAMES]
    return rows


if __name__ == "__main__":  # the suite's own runner, this area only
    from benchmarks.calibration_suite import main

    sys.exit(main(["--only", "referral", *sys.argv[1:]]))
