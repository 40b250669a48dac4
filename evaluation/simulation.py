"""Simulated cohorts with several images per patient, for checking interval coverage (tests and benchmarks).

Each patient has a label and their own chance ``q`` of being detected (drawn from a Beta distribution whose mean is
the true sensitivity); every image of that patient is detected with that chance. Images of one patient are
therefore correlated (intra-class correlation ``1 / (a + b + 1)``), as repeated radiographs of one patient are.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data_adapters.tables import CLUSTER

#: images per patient as in the chest cohort that prompted this: 200 images, one patient with 40
CHEST_LIKE_SIZES = (40,) + (4,) * 20 + (3,) * 20 + (2,) * 20


def clustered_cohort(rng: np.random.Generator, sizes=CHEST_LIKE_SIZES, *, sensitivity: float = 0.8,
                     concentration: float = 1.0, prevalence: float = 0.5) -> pd.DataFrame:
    """One simulated labelled cohort: columns ``y``, ``p`` (0.9 when detected, else 0.1; negatives 0.1 or 0.9 with
    specificity 0.9 per patient likewise), ``site`` (one group) and :data:`CLUSTER`. ``concentration`` is
    ``a + b`` of the Beta: small values make a patient's images nearly all detected or all missed."""
    rows = []
    for patient, size in enumerate(sizes):
        positive = rng.random() < prevalence
        mean = sensitivity if positive else 0.9
        q = rng.beta(mean * concentration, (1 - mean) * concentration)
        hit = rng.random(size) < q
        p = np.where(hit, 0.9, 0.1) if positive else np.where(hit, 0.1, 0.9)
        rows += [{"y": positive, "p": float(v), "site": "A", CLUSTER: patient} for v in p]
    return pd.DataFrame(rows)


def coverage(n_sims: int, *, n_boot: int = 300, seed: int = 0, sensitivity: float = 0.8,
             concentration: float = 1.0) -> dict[str, float]:
    """How often the 95% interval of sensitivity contains the true value, resampling patients (the cluster
    bootstrap Glassbox uses where patients are known) and resampling images as if independent; and their mean
    widths."""
    from evaluation.subgroups import subgroup_report

    rng = np.random.default_rng(seed)
    hits = {"patients": 0, "images": 0}
    widths = {"patients": [], "images": []}
    for i in range(n_sims):
        frame = clustered_cohort(rng, sensitivity=sensitivity, concentration=concentration)
        for kind, data in (("patients", frame), ("images", frame.drop(columns=[CLUSTER]))):
            row = subgroup_report(data, "site", threshold=0.5, n_boot=n_boot, seed=i).table.iloc[0]
            lo, hi = row["sensitivity_lo"], row["sensitivity_hi"]
            hits[kind] += bool(lo <= sensitivity <= hi)
            widths[kind].append(hi - lo)
    return {"coverage_patients": hits["patients"] / n_sims, "coverage_images": hits["images"] / n_sims,
            "width_patients": float(np.mean(widths["patients"])), "width_images": float(np.mean(widths["images"]))}
