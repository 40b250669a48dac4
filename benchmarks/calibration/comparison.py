"""Calibration suite, comparison area: the claims the Compare page and ``glassbox compare`` make beyond the
non-inferiority gate (that one is in ``subgroups``), simulated against the product's own functions
(``evaluation.version_comparison``: ``flips`` and ``flip_summary`` for McNemar, ``region_shift`` for the region
test, ``paired_error_detection`` for the uncertainty table) with the product's design (the same resampled cases for
both versions; patients resampled where the cohort knows them).

- *McNemar*: two versions equally accurate (85%), their errors independent case by case: ``p < 0.05`` is a false
  alarm; a candidate that fixes 8% of cases and breaks 3% should be found (power). With 1–4 images per patient
  that a version gets right or wrong together, the exact test on images flagged 22% of equal versions (300
  simulations); the product now tests patients (``mcnemar_clustered``: 5.7%).
- *Region test*: each version's mean probability shift when a region is taken away, and the candidate's shift minus
  the baseline's, each with a paired 95% interval; images nested in patients (1–4 each, a patient effect shared by
  both versions), so the population means are known: ``MU`` and their difference.
- *Paired error-detection AUROC*: each version's uncertainty ``u = d e + b + z`` (``e`` its own error, ``b`` a patient
  effect, ``z`` noise correlated between versions), so the population AUROC is ``Φ(d / √(2 (1 + σ_b²)))`` for each
  version and the difference of the two is known; coverage of the difference's 95% interval.

- *TCAV difference* (:func:`tcav_claims`, slow, not in :func:`claims`): ``tcav_difference``'s "differs" (Welch on the
  per-run scores, Holm) for one version run twice holds (0.030 of 100), but for two versions whose population TCAV
  is the same, each with its own gradients at the same 50 inputs, it says "differs" in 0.300 of 100 simulations
  (band ≤ 0.115): the runs' spread carries the CAVs' randomness only, not the sampling of the inputs. An open
  claim: a test over inputs needs per-input scores from ``explainers.concepts`` (paired by input, both versions).

Measured (2026-12-04, seed 0, 400 simulations, 2-core shared box, 250 s): every row of :func:`claims` in its band;
McNemar at equal versions 0.028 on independent cases, 0.035 on patients with the sign-flip test (the old exact test
on images 0.22 of 300); power 0.843; region intervals 0.948 / 0.955 / 0.948; error-detection AUROC intervals 0.950 /
0.953 / difference 0.960; paired sensitivity delta 0.945.

``design="cases"`` drops the patient key (images treated as independent: the wrong design for these cohorts), so the
quick test can show the simulations fail on it.

    python benchmarks/calibration/comparison.py [--sims 200]
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
from evaluation.version_comparison import flip_summary, flips, paired_error_detection, region_shift  # noqa: E402

ALPHA = 0.05
#: resamples per interval: the product's default for the region test and the error-detection table
N_BOOT = 1000
#: the versions' population mean shifts in the region test
MU = {"v1": -0.10, "v2": -0.04}
#: error-detection separation per version (population AUROC Φ(d / √(2 (1 + σ_b²))))
SEPARATION = {"v1": 1.0, "v2": 1.4}
PATIENT_SD = 1.0


def _binary_probs(y: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-class probabilities whose call at 0.5 is right where ``right`` says."""
    called = np.where(right, y, 1 - y)
    p = np.where(called == 1, 0.75, 0.25) + rng.uniform(-0.2, 0.2, len(y))
    return np.column_stack([1 - p, p])


def mcnemar_p(rng: np.random.Generator, n: int, *, fixed: float, broken: float, accuracy: float = 0.85) -> float:
    """McNemar's p-value as the product computes it (``flips`` then ``flip_summary``) for a candidate that fixes a
    share ``fixed`` of the cases and breaks ``broken``; with ``fixed == broken`` both versions are right with chance
    ``accuracy`` independently."""
    y = (rng.random(n) < 0.4).astype(int)
    if fixed == broken:
        right_b, right_c = rng.random(n) < accuracy, rng.random(n) < accuracy
    else:
        u = rng.random(n)
        right_b = u >= 1 - accuracy  # baseline wrong on the first 1 - accuracy
        right_c = right_b.copy()
        right_c[u < fixed] = True  # fixed: baseline wrong, candidate right
        right_c[(u >= 1 - accuracy) & (u < 1 - accuracy + broken)] = False  # broken
    frame = pd.DataFrame({"label": y})
    table = flips(frame, _binary_probs(y, right_b, rng), _binary_probs(y, right_c, rng), class_index=1)
    return flip_summary(table)["mcnemar_p"]


def _patients(rng: np.random.Generator, patients: int) -> np.ndarray:
    return np.repeat(np.arange(patients), rng.integers(1, 5, patients))


def mcnemar_patients_p(rng: np.random.Generator, patients: int = 150, *, old: bool = False) -> float:
    """McNemar's p-value for two equally accurate versions (85%) on 1–4 images per patient, where a version is right
    or wrong on a patient's images together (90% of images follow their patient). ``old``: the exact test on images
    as the product did before (the patient key ignored)."""
    cluster = _patients(rng, patients)
    n = len(cluster)
    y = (rng.random(patients) < 0.4).astype(int)[cluster]
    right = [np.where(rng.random(n) < 0.9, (rng.random(patients) < 0.85)[cluster], rng.random(n) < 0.85)
             for _ in range(2)]
    frame = pd.DataFrame({"label": y} if old else {"label": y, CLUSTER: cluster})
    table = flips(frame, _binary_probs(y, right[0], rng), _binary_probs(y, right[1], rng), class_index=1)
    return flip_summary(table)["mcnemar_p"]


def _frame(cluster: np.ndarray, rng: np.random.Generator, design: str) -> pd.DataFrame:
    frame = pd.DataFrame({"g": np.where(rng.random(cluster.max() + 1) < 0.5, "a", "b")[cluster]})
    if design == "patients":
        frame[CLUSTER] = cluster
    return frame


def region_coverage(rng: np.random.Generator, seed: int, *, patients: int = 150, design: str = "patients",
                    patient_sd: float = 0.08) -> tuple[bool, bool, bool]:
    """Does each interval of ``region_shift``'s overall rows cover its population mean? (v1, v2, v2 − v1)."""
    cluster = _patients(rng, patients)
    n = len(cluster)
    effect = rng.normal(0, patient_sd, patients)[cluster]  # a patient's images move alike, for both versions
    shifts = {v: mu + effect + rng.normal(0, 0.06, n) for v, mu in MU.items()}
    table = region_shift(_frame(cluster, rng, design), shifts, "g", n_boot=N_BOOT, seed=seed)
    overall = table[table["group"] == "overall"].set_index("version")
    truth = {**MU, "v2 − v1": MU["v2"] - MU["v1"]}
    return tuple(bool(overall.loc[v, "lo"] <= t <= overall.loc[v, "hi"]) for v, t in truth.items())


def population_error_auroc(separation: float, patient_sd: float = PATIENT_SD) -> float:
    return float(norm.cdf(separation / np.sqrt(2 * (1 + patient_sd ** 2))))


def error_detection_coverage(rng: np.random.Generator, seed: int, *, patients: int = 150, design: str = "patients",
                             patient_sd: float = PATIENT_SD) -> tuple[bool, bool, bool]:
    """Do ``paired_error_detection``'s intervals cover each version's population AUROC and their difference?"""
    cluster = _patients(rng, patients)
    n = len(cluster)
    propensity = rng.beta(2, 6, patients)[cluster]  # some patients' images are harder, for both versions
    shared = rng.normal(size=n)
    b = rng.normal(0, patient_sd, patients)[cluster]
    errors, uncertainty = {}, {}
    for v, d in SEPARATION.items():
        e = rng.random(n) < propensity
        z = 0.6 * shared + 0.8 * rng.normal(size=n)
        errors[v], uncertainty[v] = e, d * e + b + z
    table = paired_error_detection(_frame(cluster, rng, design), uncertainty, errors, n_boot=N_BOOT,
                                   seed=seed).set_index("version")
    truth = {v: population_error_auroc(d, patient_sd) for v, d in SEPARATION.items()}
    truth["v2 − v1"] = truth["v2"] - truth["v1"]
    return tuple(bool(table.loc[v, "lo"] <= t <= table.loc[v, "hi"]) for v, t in truth.items())


def delta_coverage(rng: np.random.Generator, seed: int, n: int = 1000, *, level: float = 0.95) -> bool:
    """Does the paired delta interval of sensitivity (the Compare table's ``delta_lo`` to ``delta_hi``, the report's
    "95% interval") cover the population difference? The candidate of ``benchmarks.calibration.subgroups._paired``
    misses 5% of the baseline's detected positives and finds 10% of its missed ones."""
    from benchmarks.calibration.subgroups import _paired
    from evaluation.version_comparison import paired_comparison

    s0, miss, gain = 0.85, 0.05, 0.10
    frame, b, c = _paired(rng, n, miss=miss, gain=gain, sensitivity=s0)
    row = paired_comparison(frame, b, c, [], class_index=1, seed=seed, level=level).verdicts("sensitivity").iloc[0]
    truth = s0 * (1 - miss) + (1 - s0) * gain - s0
    return bool(row["delta_lo"] <= truth <= row["delta_hi"])


def claims(sims: int, seed: int = 0, *, design: str = "patients") -> list[Claim]:
    n = 400
    null = sum(mcnemar_p(np.random.default_rng([seed, 50, s]), n, fixed=0.0, broken=0.0) < ALPHA
               for s in range(sims))
    found = sum(mcnemar_p(np.random.default_rng([seed, 51, s]), n, fixed=0.08, broken=0.03) < ALPHA
                for s in range(sims))
    out = [Claim(f"McNemar p < {ALPHA:g} between equally accurate versions (n={n})", "false alarm", ALPHA, null, sims,
                 "exact binomial on the discordant cases, cases independent"),
           Claim(f"McNemar p < {ALPHA:g}: candidate fixes 8%, breaks 3% (n={n})", "power", 0.80, found, sims,
                 "exact binomial on the discordant cases")]
    clustered = sum(mcnemar_patients_p(np.random.default_rng([seed, 54, s]), old=design != "patients") < ALPHA
                    for s in range(sims))
    out.append(Claim(f"McNemar p < {ALPHA:g} between equally accurate versions (150 patients, 1-4 images that go "
                     "together)", "false alarm", ALPHA, clustered, sims,
                     "patients' sign-flip test" if design == "patients" else "exact on images (wrong here)"))
    covered = sum(delta_coverage(np.random.default_rng([seed, 57, s]), s) for s in range(sims))
    out.append(Claim("compare: sensitivity delta (candidate − baseline), 95% interval (n=1000)", "coverage", 0.95,
                     covered, sims, "paired case bootstrap, class mix varying; percentile"))
    tag = "patients resampled" if design == "patients" else "images as independent (wrong here)"
    region = np.array([region_coverage(np.random.default_rng([seed, 52, s]), s, design=design)
                       for s in range(sims)]).sum(axis=0)
    for (what, hits) in zip(("v1's", "v2's", "the difference v2 − v1 of"), region):
        out.append(Claim(f"region test: {what} mean shift, 95% interval (150 patients, 1-4 images)", "coverage",
                         0.95, int(hits), sims, f"paired bootstrap, {tag}; percentile"))
    detect = np.array([error_detection_coverage(np.random.default_rng([seed, 53, s]), s, design=design)
                       for s in range(sims)]).sum(axis=0)
    for (what, hits) in zip(("v1's", "v2's", "the paired difference v2 − v1 of"), detect):
        out.append(Claim(f"compare: {what} error-detection AUROC, 95% interval (150 patients)", "coverage", 0.95,
                         int(hits), sims, f"paired bootstrap, {tag}; percentile"))
    return out


if __name__ == "__main__":  # the suite's own runner, this area only
    import sys

    from benchmarks.calibration_suite import main

    sys.exit(main(["--only", "comparison", *sys.argv[1:]]))


# -- TCAV difference between versions (Compare page): measured, and an open claim -------------------------------------
def tcav_difference_alarm(rng: np.random.Generator, *, same_inputs_gradients: bool, old_welch: bool = False) -> bool:
    """``tcav_difference`` says "differs" for two versions whose population TCAV is the same: the concept along the
    class gradient (``benchmarks.calibration.concepts``, kind *aligned*), the same concept folder, random pool and 50
    inputs for both versions; each version's gradients at those inputs its own draw around the same mean
    (``same_inputs_gradients=False``: two retrainings of one model), or the very same gradients (one version run twice
    with other seeds: only the CAVs' randomness differs)."""
    from benchmarks.calibration import concepts as world
    from evaluation.concept_significance import concept_scores
    from evaluation.version_comparison import tcav_difference
    from explainers.concepts import layer_runs

    concept, pool, gradients = world._world(rng, "aligned")
    mean = np.zeros(world.DIM)
    mean[:world._MEAN_UNITS] = 1.0 / np.sqrt(world._MEAN_UNITS)

    def version(g: np.ndarray) -> pd.DataFrame:
        runs = layer_runs({"c": concept}, pool, g, seed=int(rng.integers(2**31)),
                          overlap={"c": world._overlap(concept, pool)}, layer="sim", target=1)
        (s,) = concept_scores(runs)
        return pd.DataFrame([{"concept": "c", "layer": "sim", "target": 1, "score": s.score, "spread": s.spread,
                              "runs": s.runs, "significant": s.significant, "effect": s.effect,
                              "effect_lo": s.effect_lo, "effect_hi": s.effect_hi, "verdict": s.verdict}])

    def redraw() -> np.ndarray:
        g = np.zeros_like(gradients)
        g[:, :world._GRADIENT_UNITS] = rng.normal(0, 0.3, (len(g), world._GRADIENT_UNITS))
        return g + mean

    a, b = (version(gradients), version(gradients)) if same_inputs_gradients else (version(redraw()),
                                                                                  version(redraw()))
    if old_welch:  # the earlier product's test of the difference: Welch on per-run TCAV scores (Holm over one test)
        from scipy.stats import ttest_ind_from_stats

        ra, rb = a.iloc[0], b.iloc[0]
        return bool(ttest_ind_from_stats(ra.score, max(ra.spread, 1e-12), max(int(ra.runs), 2), rb.score,
                                         max(rb.spread, 1e-12), max(int(rb.runs), 2), equal_var=False).pvalue < 0.05)
    # the product now shows each version's own verdict: an alarm is the two verdicts disagreeing
    return tcav_difference(a, b)["verdicts"].iloc[0].endswith("only")


def tcav_claims(sims: int, seed: int = 0, *, old: bool = False) -> list[Claim]:
    """The TCAV version rows of the Compare page (slow: two TCAV runs per simulation). The page shows each version's
    own calibrated verdict side by side and makes no test of the difference; the alarm measured is the two verdicts
    disagreeing for versions whose population TCAV is equal (a concept along the class gradient, so both should be
    significant). ``old=True`` measures the earlier design instead: Welch on the per-run TCAV scores, which carries the
    CAVs' randomness only, not the sampling of the inputs each version's gradients are taken at (0.30 of 100)."""
    same = sum(tcav_difference_alarm(np.random.default_rng([seed, 55, s]), same_inputs_gradients=True, old_welch=old)
               for s in range(sims))
    retrained = sum(tcav_difference_alarm(np.random.default_rng([seed, 56, s]), same_inputs_gradients=False,
                                          old_welch=old) for s in range(sims))
    design = ("Welch on per-run TCAV scores (earlier design)" if old else
              "each version's verdict against its own 250 reference concepts, side by side")
    what = "'differs'" if old else "verdicts disagree"
    return [Claim(f"TCAV {what}: one version run twice (other CAV seeds)", "false alarm", 0.05, same, sims, design),
            Claim(f"TCAV {what}: two versions with the same population TCAV (own gradients, same 50 inputs)",
                  "false alarm", 0.05, retrained, sims, design)]
