"""Monitoring: the alerts and intervals the Monitoring page, ``glassbox monitor`` and the report's Monitoring section
print, simulated with the product's own function (``evaluation.drift.window_report``) and its design (MMD with
permutation p-values floored at (exceed + 1)/(B + 1), 500 permutations, a rerun with more where a test is beyond all
of them; Holm across windows; Holm across windows × sites; Holm across windows × attributes).

- *No drift*: a reference of 300 cases (3 sites, 8-d embeddings, an age and a sex attribute) and 6 windows of 90
  incoming cases drawn from the same distribution. Each family's "any alert" at α = 0.05 is a false alarm.
- *A known shift*: the same, with windows 5 and 6 shifted by 0.2 in every embedding dimension (a twentieth of the median
  pairwise distance, 3.8): the window family must alert in ≥ 80% of streams.
- *Measured accuracy per window*: a 3-class model judged by its top class, true accuracy 0.80; images come three per
  patient with a patient-level chance of being right (Beta(4, 1)), so the interval must count patients; coverage of
  the window's interval (Wilson at the effective size) over 6 windows per stream. The old design (the last class's
  probability against label == 1) is measured by :func:`old_design`.
- *Measured sensitivity per window* (a binary model at its threshold 0.5): patients of three images sharing their
  label (positive with chance 0.4), a positive patient's images detected with a patient-level chance Beta(4, 1)
  (true sensitivity 0.80); coverage of the window's sensitivity interval (Wilson clustered by patient, as the product
  does where patients are known). ``keyed=False`` drops the patient key, the plain Wilson on images (wrong here),
  so the quick test shows the row can fail. Measured (2026-12-04, 200 streams × 6 windows): 0.938 (band ≥ 0.931);
  images as independent 0.904.
- *Measured specificity per window*: the same streams, a negative patient's images called negative with the
  patient-level chance (true specificity 0.80); the product's interval is the same Wilson clustered by patient.
  Measured (2026-12-04, the same 200 streams × 6 windows): 0.936 (band ≥ 0.931); images as independent 0.902.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from benchmarks.calibration import Claim
from data_adapters.tables import CLUSTER
from evaluation.drift import window_report

WINDOWS = 6
PER_WINDOW = 90
REFERENCE = 300
DIM = 8
ALPHA = 0.05
SHIFT = 0.2
ACCURACY = 0.8


#: the any-window alarm rate of the same null streams without Holm's adjustment (what the claim would catch), by
#: ``(sims, seed)`` of the last :func:`claims` run
UNADJUSTED: dict[tuple[int, int], float] = {}


def _part(rng: np.random.Generator, n: int, shift: float = 0.0, n_classes: int = 3) -> dict:
    patients = np.repeat(np.arange(n // 3), 3)
    chance = rng.beta(4, 1, n // 3)[patients]  # mean 0.8
    labels = rng.integers(0, n_classes, n)
    right = rng.random(n) < chance
    wrong = (labels + rng.integers(1, n_classes, n)) % n_classes
    top = np.where(right, labels, wrong)
    probs = np.full((n, n_classes), 0.3 / (n_classes - 1))
    probs[np.arange(n), top] = 0.7
    frame = pd.DataFrame({"label": pd.array(labels, dtype="Int64"), "site": np.array(list("ABC"))[np.arange(n) % 3],
                          "scanner": "S1", "sex": rng.choice(["F", "M"], n), "age": rng.normal(60, 10, n),
                          CLUSTER: patients})
    return {"frame": frame, "embedding": rng.normal(size=(n, DIM)) + shift, "probabilities": probs,
            "intensity": rng.random((n, 4))}


def _binary_part(rng: np.random.Generator, n: int, shift: float = 0.0, spread: float = 1.0) -> dict:
    """A binary model's cases, three images per patient sharing the label; a positive patient's images are detected
    with the patient's own chance (Beta(4 / spread, 1 / spread), mean 0.8; larger ``spread``, more alike within a
    patient), a negative patient's called negative with that chance."""
    patients = np.repeat(np.arange(n // 3), 3)
    positive = (rng.random(n // 3) < 0.4)[patients]
    chance = rng.beta(4 / spread, 1 / spread, n // 3)[patients]
    called = np.where(positive, rng.random(n) < chance, rng.random(n) >= chance)
    p = np.where(called, 0.75, 0.25)
    frame = pd.DataFrame({"label": pd.array(positive.astype(int), dtype="Int64"),
                          "site": np.array(list("ABC"))[np.arange(n) % 3], "scanner": "S1", CLUSTER: patients})
    return {"frame": frame, "embedding": rng.normal(size=(n, DIM)) + shift, "probabilities": np.column_stack([1 - p, p]),
            "intensity": rng.random((n, 4))}


def _stream(rng: np.random.Generator, shifted: tuple[int, ...] = (), part=None):
    part = part or _part
    reference = part(rng, REFERENCE)
    parts = [part(rng, PER_WINDOW, SHIFT if w in shifted else 0.0) for w in range(WINDOWS)]
    for w, part in enumerate(parts):
        part["frame"][CLUSTER] += 10_000 * (w + 1)
    current = {"frame": pd.concat([p["frame"] for p in parts], ignore_index=True),
               **{k: np.concatenate([p[k] for p in parts]) for k in ("embedding", "probabilities", "intensity")}}
    windows = np.repeat([f"2026-{w + 1:02d}" for w in range(WINDOWS)], PER_WINDOW)
    return reference, current, windows


def _report(reference, current, windows, seed, *, sites: bool = True):
    return window_report(reference, current, windows, class_index=None, threshold=None, alpha=ALPHA, n_perm=500,
                         seed=seed, attributes=["site", "sex", "age"] if sites else (), kinds={"age": "numeric"},
                         by_site="site" if sites else None)


def claims(sims: int, seed: int = 0) -> list[Claim]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # many small matrix products: one thread each is fastest on a shared machine
        return _claims(sims, seed)


def _claims(sims: int, seed: int) -> list[Claim]:
    rng = np.random.default_rng(seed)
    window_alarms = site_alarms = attribute_alarms = detected = covered = unadjusted = 0
    for s in range(sims):
        reference, current, windows = _stream(rng)
        report = _report(reference, current, windows, seed + s)
        window_alarms += bool(report.windows["alert"].any())
        unadjusted += bool((report.windows["mmd_p"] < ALPHA).any())
        site_alarms += bool((report.site_windows["mmd_p_adj"] < ALPHA).any())
        attribute_alarms += bool((report.attributes["p_adj"] < ALPHA).any())
        w = report.windows
        covered += int(((w["accuracy_lo"] <= ACCURACY) & (ACCURACY <= w["accuracy_hi"])).sum())
        reference, current, windows = _stream(rng, shifted=(4, 5))
        detected += bool(_report(reference, current, windows, seed + s, sites=False).windows["alert"].any())
    UNADJUSTED[(sims, seed)] = unadjusted / sims
    binary = binary_coverage(sims, seed)
    design = (f"{WINDOWS} windows × {PER_WINDOW} cases against {REFERENCE}, MMD 500 permutations (floored), "
              f"α = {ALPHA}")
    return [
        Claim("drift alert, any window (Holm across windows)", "false alarm", ALPHA, window_alarms, sims, design),
        Claim("site drift alert, any window × site (Holm across them)", "false alarm", ALPHA, site_alarms, sims,
              design + ", 3 sites"),
        Claim("attribute-mix alert, any window × attribute (Holm)", "false alarm", ALPHA, attribute_alarms, sims,
              design + ", site/sex chi-square, age KS"),
        Claim(f"drift alert on a {SHIFT} shift in 2 of {WINDOWS} windows", "power", 0.80, detected, sims, design),
        Claim("measured window accuracy interval (3-class, top class)", "coverage", 0.95, covered, sims * WINDOWS,
              f"{PER_WINDOW} images from {PER_WINDOW // 3} patients a window, patient-level accuracy Beta(4, 1); "
              "Wilson at the effective size"),
        Claim("measured window sensitivity interval (binary, threshold 0.5)", "coverage", 0.95,
              *binary["sensitivity"], f"{PER_WINDOW} images from {PER_WINDOW // 3} patients a window sharing a label "
              "(40% positive), patient-level detection Beta(4, 1); Wilson clustered by patient"),
        Claim("measured window specificity interval (binary, threshold 0.5)", "coverage", 0.95,
              *binary["specificity"], f"{PER_WINDOW} images from {PER_WINDOW // 3} patients a window sharing a label "
              "(60% negative), patient-level correct negative call Beta(4, 1); Wilson clustered by patient"),
    ]


def sensitivity_coverage(sims: int, seed: int = 0, *, keyed: bool = True, spread: float = 1.0) -> tuple[int, int]:
    """Windows whose measured sensitivity interval covered the true 0.80, and windows judged (binary model at 0.5;
    ``keyed=False``: the patient key dropped, so images count as independent)."""
    return binary_coverage(sims, seed, keyed=keyed, spread=spread)["sensitivity"]


def specificity_coverage(sims: int, seed: int = 0, *, keyed: bool = True, spread: float = 1.0) -> tuple[int, int]:
    """As :func:`sensitivity_coverage`, for the measured specificity interval (true 0.80)."""
    return binary_coverage(sims, seed, keyed=keyed, spread=spread)["specificity"]


def binary_coverage(sims: int, seed: int = 0, *, keyed: bool = True,
                    spread: float = 1.0) -> dict[str, tuple[int, int]]:
    """``{"sensitivity": (covered, judged), "specificity": (covered, judged)}`` over the same binary streams: windows
    whose measured interval covered the true 0.80, and windows judged."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng([seed, 80])
    counts = {m: [0, 0] for m in ("sensitivity", "specificity")}
    with threadpool_limits(1):
        for s in range(sims):
            reference, current, windows = _stream(rng, part=functools.partial(_binary_part, spread=spread))
            if not keyed:
                current["frame"] = current["frame"].drop(columns=CLUSTER)
            w = window_report(reference, current, windows, class_index=1, threshold=0.5, alpha=ALPHA, n_perm=50,
                              seed=seed + s, by_site=None).windows
            for m in counts:
                judged = w[f"{m}_lo"].notna()
                counts[m][0] += int(((w[f"{m}_lo"] <= ACCURACY) & (ACCURACY <= w[f"{m}_hi"]))[judged].sum())
                counts[m][1] += int(judged.sum())
    return {m: (c, t) for m, (c, t) in counts.items()}


def old_design(sims: int, seed: int = 0) -> dict[str, float]:
    """What the earlier monitoring read in the same streams: the last class's probability ≥ 0.5 against
    ``label == 1`` (accuracy and its Wilson interval's coverage of the true 0.80), and the permutation p-value's
    gamma tail (the smallest p reported for a clear shift, against 1/(B + 1))."""
    from evaluation.inference import wilson

    rng = np.random.default_rng(seed)
    covered = total = 0
    accuracy = []
    for _ in range(sims):
        _, current, windows = _stream(rng)
        p = current["probabilities"][:, -1]
        y = current["frame"]["label"].to_numpy(int)
        for w in np.unique(windows):
            rows = windows == w
            right = int(((p[rows] >= 0.5) == (y[rows] == 1)).sum())
            lo, hi = wilson(right, int(rows.sum()))
            covered += lo <= ACCURACY <= hi
            total += 1
            accuracy.append(right / rows.sum())
    return {"coverage": covered / total, "accuracy": float(np.mean(accuracy)), "windows": total}
