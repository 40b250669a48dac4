"""Calibration suite, calibration-error area: what the Subgroups page, ``glassbox subgroups`` and the board report say
about calibration (binary and multi-class): "ECE x; y expected by chance; miscalibration shown / not shown (p)", and
the Brier score's 95% interval.

ECE has no interval any more. Its plug-in estimate is an absolute value of noise, biased upward at small n, so the
percentile interval of its resamples (what the product printed) sits above the population value: it cannot cover 0
for a calibrated model and under-covers a miscalibrated one (:func:`old_interval_coverage` measures it with the same
product functions the old table used). In its place a calibrated test, consistency resampling (Bröcker & Smith 2007,
``evaluation.calibration.miscalibration_test``): outcomes redrawn ``y* ~ Bernoulli(p)`` on the cohort's own scores
give ECE's null distribution at that n; p-value with the +1 correction; per group Holm-adjusted over the groups.

The models (all probabilities known, so every population value is exact):

- *binary, calibrated*: ``p ~ Beta(2, 2)``, ``y ~ Bernoulli(p)``; *overconfident*: the model reports
  ``sigmoid(OVERCONFIDENT · logit p)`` for the same outcomes.
- *3-class, calibrated*: probabilities ``Dirichlet(1, 1, 1)``, label drawn from them (so the top class is right with
  chance its confidence); *overconfident*: the same probabilities sharpened (softmax of ``OVERCONFIDENT · log P``).
- *patients*: 150 patients of 1–4 images sharing the patient's risk (the score) and label; the product draws a
  patient's images together where patients are known (:func:`clustered_rates`: images as independent there).
- *Brier*: binary scores ``sigmoid(logit p + 0.3)`` (a mild shift) against ``y ~ Bernoulli(p)``: population Brier
  ``E[s² − 2 s p + p]`` by quadrature (scipy); 3-class Brier is the multiclass area's row.

Measured (2026-12-04, 2-core shared box; 400 simulations as seeds 0 and 1 × 200): every claim in its band —
false alarms 0.060 (n=200), 0.037 (any of 3 groups, Holm), 0.060 (150 patients), 3-class 0.055 and 0.068; power
0.877 (binary, logit × 2), 0.988 (3-class); Brier coverage 0.955. The old ECE interval (200, seed 0) covered a
calibrated model's population ECE of 0 in 0.000 of cohorts and an overconfident model's 0.102 in 0.685; "ECE above
0.05" called the calibrated model miscalibrated in 0.885; on the patient cohorts the test with images as independent
alarmed in 0.595 (the product's 0.060), and found the overconfident patients' model in 0.82.

    python benchmarks/calibration/ece.py [--sims 400] [--old]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import integrate, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.calibration import Claim  # noqa: E402
from data_adapters.tables import CLUSTER, probability_column  # noqa: E402
from evaluation.multiclass import multiclass_report  # noqa: E402
from evaluation.subgroups import subgroup_report  # noqa: E402

ALPHA = 0.05
N_SMALL = 200
N = 400
OVERCONFIDENT = 2.0
SHIFT = 0.3
#: the subgroup report's resamples for Brier's interval; the ECE test makes its own draws (999), so the reports
#: judged only for it use few
N_BOOT = 1000
FEW_BOOT = 20
CLASSES = ("a", "b", "c")


def _logit(p):
    return np.log(p / (1 - p))


def binary_cohort(rng: np.random.Generator, sizes: dict[str, int], *, sharpen: float = 1.0,
                  shift: float = 0.0) -> pd.DataFrame:
    parts = []
    for g, n in sizes.items():
        p = rng.beta(2, 2, n)
        y = rng.random(n) < p
        s = 1 / (1 + np.exp(-(sharpen * _logit(p) + shift)))
        parts.append(pd.DataFrame({"g": g, "y": y, "p": s}))
    return pd.concat(parts, ignore_index=True)


def patient_cohort(rng: np.random.Generator, patients: int = 150, *, keyed: bool = True,
                   sharpen: float = 1.0) -> pd.DataFrame:
    """Patients of 1–4 images that share the patient's risk ``r ~ Beta(2, 2)`` (scores ``r`` plus a little image
    noise) and the patient's label ``y ~ Bernoulli(r)``: every image calibrated, a patient's images alike."""
    k = rng.integers(1, 5, patients)
    cluster = np.repeat(np.arange(patients), k)
    r = rng.beta(2, 2, patients)
    y = (rng.random(patients) < r)[cluster]
    p = np.clip(r[cluster] + rng.normal(0, 0.02, len(cluster)), 0.001, 0.999)
    s = 1 / (1 + np.exp(-sharpen * _logit(p)))
    frame = pd.DataFrame({"g": "g0", "y": y, "p": s})
    if keyed:
        frame[CLUSTER] = cluster
    return frame


def multiclass_cohort(rng: np.random.Generator, sizes: dict[str, int], *, sharpen: float = 1.0) -> pd.DataFrame:
    parts = []
    for g, n in sizes.items():
        P = rng.dirichlet(np.ones(len(CLASSES)), n)
        y = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
        Q = np.exp(sharpen * np.log(np.clip(P, 1e-12, 1)))
        Q /= Q.sum(axis=1, keepdims=True)
        probabilities = {probability_column(k): Q[:, k] for k in range(len(CLASSES))}
        parts.append(pd.DataFrame({"g": g, "label": y, **probabilities}))
    return pd.concat(parts, ignore_index=True)


def population_brier(shift: float = SHIFT) -> float:
    """``E[(s − y)²] = E[s² − 2 s p + p]`` over ``p ~ Beta(2, 2)`` with ``s = sigmoid(logit p + shift)``."""
    def f(p):
        s = 1 / (1 + np.exp(-(_logit(p) + shift)))
        return (s * s - 2 * s * p + p) * stats.beta.pdf(p, 2, 2)
    return float(integrate.quad(f, 0, 1)[0])


def _binary(frame: pd.DataFrame, seed: int, n_boot: int = FEW_BOOT):
    return subgroup_report(frame, "g", threshold=0.5, n_boot=n_boot, seed=seed).table.set_index("group")


def _multiclass(frame: pd.DataFrame, seed: int):
    return multiclass_report(frame, "g", CLASSES, n_boot=FEW_BOOT, seed=seed).table.set_index("group")


def claims(sims: int, seed: int = 0) -> list[Claim]:
    overall = any_group = power = brier = mc_overall = mc_group = mc_power = clustered = 0
    truth = population_brier()
    for s in range(sims):
        rng = np.random.default_rng([seed, 70, s])
        t = _binary(binary_cohort(rng, {"g0": N_SMALL}), s)
        overall += t.loc["overall", "ece_p"] < ALPHA
        t = _binary(binary_cohort(rng, {"a": N_SMALL, "b": N_SMALL, "c": N_SMALL}), s)
        any_group += bool((t.drop("overall")["ece_p_holm"] < ALPHA).any())
        t = _binary(binary_cohort(rng, {"g0": N_SMALL}, sharpen=OVERCONFIDENT), s)
        power += t.loc["overall", "ece_p"] < ALPHA
        t = _binary(binary_cohort(rng, {"g0": N}, shift=SHIFT), s, N_BOOT)
        brier += t.loc["overall", "brier_lo"] <= truth <= t.loc["overall", "brier_hi"]
        t = _multiclass(multiclass_cohort(rng, {"g0": N_SMALL}), s)
        mc_overall += t.loc["overall", "ece_p"] < ALPHA
        t = _multiclass(multiclass_cohort(rng, {"a": N_SMALL, "b": N_SMALL, "c": N_SMALL}), s)
        mc_group += bool((t.drop("overall")["ece_p_holm"] < ALPHA).any())
        t = _multiclass(multiclass_cohort(rng, {"g0": N_SMALL}, sharpen=OVERCONFIDENT), s)
        mc_power += t.loc["overall", "ece_p"] < ALPHA
        t = _binary(patient_cohort(rng), s)
        clustered += t.loc["overall", "ece_p"] < ALPHA
    test = "consistency resampling y* ~ Bernoulli(p), 999 draws, p with +1"
    return [
        Claim(f"miscalibration shown, calibrated model (n={N_SMALL})", "false alarm", ALPHA, overall, sims, test),
        Claim(f"miscalibration shown in any of 3 calibrated groups × {N_SMALL}", "false alarm", ALPHA, any_group,
              sims, test + "; Holm over groups"),
        Claim(f"miscalibration shown, overconfident model (logit × {OVERCONFIDENT}, n={N_SMALL})", "power", 0.80,
              power, sims, test),
        Claim(f"Brier 95% interval covers the population Brier (n={N})", "coverage", 0.95, brier, sims,
              "cases within group, class mix varying; percentile"),
        Claim("miscalibration shown, calibrated model (150 patients, 1-4 images sharing label and risk)",
              "false alarm", ALPHA, clustered, sims, "consistency resampling, a patient's images drawn together "
              "(one uniform per patient), 999 draws"),
        Claim(f"3-class top-label miscalibration shown, calibrated model (n={N_SMALL})", "false alarm", ALPHA,
              mc_overall, sims, test + " (top-class confidence)"),
        Claim(f"3-class: miscalibration shown in any of 3 calibrated groups × {N_SMALL}", "false alarm", ALPHA,
              mc_group, sims, test + "; Holm over groups"),
        Claim(f"3-class miscalibration shown, overconfident model (log P × {OVERCONFIDENT}, n={N_SMALL})", "power",
              0.80, mc_power, sims, test),
    ]


def population_ece(sharpen: float, bins: int = 10) -> float:
    """The binary model's population ECE (``bins`` equal-width bins of the reported score): ``Σ_b |∫_b (p − s) dF|``
    by quadrature over ``p ~ Beta(2, 2)``."""
    if sharpen == 1.0:
        return 0.0
    inv = lambda x: 1 / (1 + np.exp(-_logit(x) / sharpen))  # noqa: E731  the p whose reported score is x
    total = 0.0
    for b in range(bins):
        lo, hi = inv(max(b / bins, 1e-12)), inv(min((b + 1) / bins, 1 - 1e-12))
        gap = integrate.quad(lambda p: (p - 1 / (1 + np.exp(-sharpen * _logit(p)))) * stats.beta.pdf(p, 2, 2),
                             lo, hi)[0]
        total += abs(gap)
    return total


def old_interval_coverage(sims: int, seed: int = 0, *, n: int = N_SMALL, sharpen: float = 1.0) -> float:
    """How often the ECE interval the product printed (the percentile interval of ECE over the group's resamples:
    the same ``counts``/``METRICS["ece"]``/``percentile_interval`` the table used, ``N_BOOT`` resamples) covered the
    population ECE: 0 for the calibrated model (``sharpen`` 1), :func:`population_ece` otherwise."""
    from evaluation.inference import case_weights, percentile_interval
    from evaluation.metrics import counts, metric

    truth = population_ece(sharpen)
    covered = 0
    for s in range(sims):
        rng = np.random.default_rng([seed, 71, s])
        frame = binary_cohort(rng, {"g0": n}, sharpen=sharpen)
        y, p = frame["y"].to_numpy(bool), frame["p"].to_numpy(float)
        boot = counts(case_weights(n, N_BOOT, rng), y, p, p >= 0.5)
        lo, hi = percentile_interval(metric("ece")(boot), 0.95)
        covered += lo <= truth <= hi
    return covered / sims


def clustered_rates(sims: int, seed: int = 0) -> dict[str, float]:
    """On the patient cohorts of :func:`patient_cohort`: the test with the patient key dropped (images as
    independent, wrong here) on calibrated cohorts, and the product's test's power on overconfident ones."""
    naive = power = 0
    for s in range(sims):
        rng = np.random.default_rng([seed, 73, s])
        naive += _binary(patient_cohort(rng, keyed=False), s).loc["overall", "ece_p"] < ALPHA
        power += _binary(patient_cohort(rng, sharpen=OVERCONFIDENT), s).loc["overall", "ece_p"] < ALPHA
    return {"images as independent, false alarms": naive / sims, "patients, power (logit × 2)": power / sims}


def fixed_cut_false_alarms(sims: int, seed: int = 0, cut: float = 0.05) -> float:
    """The reading the issue found wrong: "miscalibrated" whenever ECE exceeds a fixed ``cut`` (no chance figure),
    on the calibrated model at n = ``N_SMALL``."""
    from evaluation.calibration import expected_calibration_error

    alarms = 0
    for s in range(sims):
        frame = binary_cohort(np.random.default_rng([seed, 72, s]), {"g0": N_SMALL})
        alarms += expected_calibration_error(frame["y"].to_numpy(float), frame["p"].to_numpy()) > cut
    return alarms / sims


if __name__ == "__main__":
    import argparse

    from benchmarks.calibration import table

    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old", action="store_true", help="also the old ECE interval's coverage")
    args = parser.parse_args()
    print(table(claims(args.sims, args.seed)))
    if args.old:
        for sharpen in (1.0, OVERCONFIDENT):
            print(f"old ECE interval (n={N_SMALL}, sharpen {sharpen}, population ECE {population_ece(sharpen):.4f}) "
                  f"covered in {old_interval_coverage(args.sims, args.seed, sharpen=sharpen):.3f}")
        print(f"ECE > 0.05 called miscalibrated (calibrated model): {fixed_cut_false_alarms(args.sims, args.seed):.3f}")
        print(clustered_rates(args.sims, args.seed))
