"""Calibration suite, subgroups area: every claim the Subgroups page, ``glassbox subgroups`` (its ``--max-gap``
gate) and ``glassbox compare`` (its ``--max-regression`` gate) make, simulated against the product's own functions
(``subgroup_report``, ``GapJudgement.gate``, ``paired_comparison``, ``noninferiority_gate``) with the product's
design (cases resampled within each group with the class mix varying; patients where known; one max-t over every
metric × pair).

The model of a cohort: a label ``y ~ Bernoulli(prevalence)`` and a score ``p = sigmoid(z)`` with ``z ~ N(a, 1)`` for
positives and ``N(-b, 1)`` for negatives, called positive at 0.5. Every population value is then known exactly:
sensitivity ``Φ(a)``, specificity ``Φ(b)``, AUROC ``Φ((a + b) / √2)``, PPV and NPV by Bayes' rule.

    python benchmarks/calibration/subgroups.py [--sims 400] [--old]   # the claims; --old: the old design's rates

Measured (2026-12-04, 2-core shared machine): "any gap flagged" among equal groups, 3 × 600 — old design (class
counts fixed, each metric adjusted on its own) 0.44 of 100 cohorts, class mix varying but each metric on its own
0.22, the product (class mix varying, one max-t over 9 metrics × pairs) 0.055 of 200; 5 × 1000 — 0.49, 0.19 and
0.040. Every claim of ``claims(200)`` inside its band (3061 s).

Rerun at 400 (2026-12-04, H1): coverage 0.940-0.963; power 0.990; ``--max-gap`` at the limit 0.000, equal groups
pass 0.990; compare worse by exactly the margin 0.043 (band ≤ 0.048; 0.027 in 300 more at seed 1), equal candidate
passes 0.917; any gap (seed 0's 200 plus 200 from seeds 100-103) 5 × 1000 0.043, 3 × 600 0.058, patients 0.055.

Compare's margin row at 1300 (2026-12-04, H11; seeds 0 × 400 and 1-3 × 300, the same cohorts under both bounds): the
old paired-percentile bound passed a candidate worse by exactly the margin 54 of 1300 = 0.042 (band at 1300 ≤ 0.038:
out); Tango's score bound (the product's since then) 22 of 1300 = 0.017, and 49 of 2700 = 0.018 with seeds 4-5 × 700
(band ≤ 0.034). The equally sensitive candidate passes 1158 of 1300 = 0.891 (2434 of 2700 = 0.901; band ≥ 0.777).
The score bound does not depend on ``n_boot`` (no resampling in it), so these rows can run at a small one.
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
from evaluation.subgroups import subgroup_report  # noqa: E402
from evaluation.version_comparison import noninferiority_gate, paired_comparison  # noqa: E402

#: the resamples the suite uses: the product's default for subgroups is 2000; 1000 keeps the full suite within the
#: machine's time, and the error rate a max-t holds does not depend on it (only the Monte Carlo error of the bound)
N_BOOT = 1000


def population(sensitivity: float = 0.8, specificity: float = 0.8, prevalence: float = 0.3) -> dict[str, float]:
    """The population value of each metric under the model above."""
    a, b = norm.ppf(sensitivity), norm.ppf(specificity)
    ppv = prevalence * sensitivity / (prevalence * sensitivity + (1 - prevalence) * (1 - specificity))
    npv = (1 - prevalence) * specificity / ((1 - prevalence) * specificity + prevalence * (1 - sensitivity))
    return {"sensitivity": sensitivity, "specificity": specificity, "ppv": ppv, "npv": npv,
            "auroc": float(norm.cdf((a + b) / np.sqrt(2))), "balanced_accuracy": (sensitivity + specificity) / 2}


def cohort(rng: np.random.Generator, sizes: dict[str, int], *, sensitivity: dict[str, float] | float = 0.8,
           specificity: float = 0.8, prevalence: float = 0.3) -> pd.DataFrame:
    """Groups of the given sizes (each case drawn independently); ``sensitivity`` per group or for all."""
    rows = []
    for g, n in sizes.items():
        sens = sensitivity[g] if isinstance(sensitivity, dict) else sensitivity
        y = rng.random(n) < prevalence
        z = np.where(y, rng.normal(norm.ppf(sens), 1, n), rng.normal(-norm.ppf(specificity), 1, n))
        rows.append(pd.DataFrame({"g": g, "y": y, "p": 1 / (1 + np.exp(-z))}))
    return pd.concat(rows, ignore_index=True)


def patient_cohort(rng: np.random.Generator, groups: int = 3, patients: int = 200, *, prevalence: float = 0.3,
                   spread: float = 0.8) -> pd.DataFrame:
    """Equal groups of patients with 1-3 images each: a patient's label holds for all their images, and a patient
    effect ``N(0, spread)`` shifts all their scores alike (their images are not independent)."""
    rows = []
    pid = 0
    for g in range(groups):
        for _ in range(patients):
            k = int(rng.integers(1, 4))
            y = rng.random() < prevalence
            shift = rng.normal(0, spread)
            z = (norm.ppf(0.8) if y else -norm.ppf(0.8)) + shift + rng.normal(0, 0.6, k)
            rows += [{"g": f"g{g}", "y": y, "p": float(1 / (1 + np.exp(-v))), CLUSTER: f"p{pid}"} for v in z]
            pid += 1
    return pd.DataFrame(rows)


def any_gap_rate(make, sims: int, seed: int, *, n_boot: int = N_BOOT, **design) -> tuple[int, dict[str, int]]:
    """How many of ``sims`` cohorts from ``make(rng)`` had at least one gap flagged, and how often each metric."""
    hits, per = 0, {}
    for s in range(sims):
        frame = make(np.random.default_rng([seed, s]))
        report = subgroup_report(frame, "g", threshold=0.5, n_boot=n_boot, seed=s, **design)
        flagged = report.gaps.loc[report.gaps["flag"] != "", "metric"].tolist()
        hits += bool(flagged)
        for m in flagged:
            per[m] = per.get(m, 0) + 1
    return hits, per


def _equal(groups: int, n: int):
    return lambda rng: cohort(rng, {f"g{i}": n for i in range(groups)})


def coverage_claims(sims: int, seed: int, n: int = 400) -> list[Claim]:
    truth = population()
    covered = dict.fromkeys(truth, 0)
    for s in range(sims):
        frame = cohort(np.random.default_rng([seed, 10, s]), {"g0": n})
        row = subgroup_report(frame, "g", threshold=0.5, n_boot=N_BOOT, seed=s).table.iloc[1]
        for m, value in truth.items():
            covered[m] += bool(row[f"{m}_lo"] <= value <= row[f"{m}_hi"])
    return [Claim(f"{m} 95% interval covers the population value (n={n}, prevalence 0.3)", "coverage", 0.95,
                  covered[m], sims, "cases within group, class mix varying; percentile") for m in truth]


def gap_power(sims: int, seed: int) -> Claim:
    """A known sensitivity gap (0.9 vs 0.7, three groups of 500): flagged as a sensitivity gap."""
    found = 0
    for s in range(sims):
        frame = cohort(np.random.default_rng([seed, 20, s]), {"a": 500, "b": 500, "c": 500},
                       sensitivity={"a": 0.9, "b": 0.9, "c": 0.7})
        gaps = subgroup_report(frame, "g", threshold=0.5, n_boot=N_BOOT, seed=s).gaps.set_index("metric")
        found += bool(gaps.loc["sensitivity", "flag"]) and gaps.loc["sensitivity", "lower_group"] == "c"
    return Claim("sensitivity gap 0.9 vs 0.7 found (3 × 500, prevalence 0.3)", "power", 0.80, found, sims,
                 "one max-t over 9 metrics × 3 pairs")


def gate_claims(sims: int, seed: int, limit: float = 0.1) -> list[Claim]:
    """The ``--max-gap`` gate: a true gap exactly at the limit must not pass more than 5%; equal groups under a
    generous limit should pass (the gate is not one that can never pass)."""
    false_pass = passes = 0
    for s in range(sims):
        frame = cohort(np.random.default_rng([seed, 30, s]), {"a": 500, "b": 500, "c": 500},
                       sensitivity={"a": 0.8, "b": 0.8, "c": 0.8 - limit})
        report = subgroup_report(frame, "g", threshold=0.5, n_boot=N_BOOT, seed=s)
        false_pass += report.gate({"sensitivity": limit}).outcome == "pass"
        frame = cohort(np.random.default_rng([seed, 31, s]), {"a": 1000, "b": 1000, "c": 1000})
        report = subgroup_report(frame, "g", threshold=0.5, n_boot=N_BOOT, seed=s)
        passes += report.gate({"sensitivity": 0.2}).outcome == "pass"
    return [Claim(f"--max-gap sensitivity={limit:g} passes a true gap of {limit:g} (3 × 500)", "false alarm", 0.05,
                  false_pass, sims, "pass only when the simultaneous upper bound ≤ limit"),
            Claim("--max-gap sensitivity=0.2 passes equal groups (3 × 1000)", "power", 0.80, passes, sims,
                  "pass only when the simultaneous upper bound ≤ limit")]


def _paired(rng: np.random.Generator, n: int, *, miss: float, gain: float, sensitivity: float = 0.85,
            prevalence: float = 0.4) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A baseline detecting positives with ``sensitivity`` (specificity 0.9), and a candidate that misses each
    baseline-detected positive with chance ``miss`` and detects each baseline-missed one with chance ``gain``
    (its population sensitivity ``s (1 − miss) + (1 − s) gain``); negatives alike."""
    y = rng.random(n) < prevalence
    base = np.where(y, rng.random(n) < sensitivity, rng.random(n) < 0.1)
    flip = np.where(base, rng.random(n) < miss, rng.random(n) < gain)
    cand = np.where(y, base ^ flip, base)
    score = lambda called: np.where(called, 0.75, 0.25) + rng.uniform(-0.2, 0.2, n)  # noqa: E731
    two = lambda p: np.column_stack([1 - p, p])  # noqa: E731
    return pd.DataFrame({"label": y.astype(int)}), two(score(base)), two(score(cand))


def margin_claim(sims: int, seed: int, margin: float = 0.05, n: int = 1000, *, proportion_bound: str = "score",
                 n_boot: int | None = None, prevalence: float = 0.4) -> Claim:
    """``compare --max-regression sensitivity=margin`` on a candidate truly worse by exactly the margin (it breaks
    each baseline-detected positive with chance ``margin / 0.85`` and fixes none): it must pass at most 2.5% (the
    one-sided level). ``proportion_bound="percentile"``: the old design (the paired bootstrap's percentile bound),
    which took its spread at the observed difference."""
    s0 = 0.85
    extra = {} if n_boot is None else {"n_boot": n_boot}
    false_pass = 0
    for s in range(sims):
        frame, b, c = _paired(np.random.default_rng([seed, 40, s]), n, miss=margin / s0, gain=0.0,
                              prevalence=prevalence)
        report = paired_comparison(frame, b, c, [], class_index=1, margins={"sensitivity": margin}, seed=s,
                                   proportion_bound=proportion_bound, **extra)
        false_pass += noninferiority_gate(report, ["sensitivity"]).outcome == "pass"
    return Claim(f"compare passes a candidate worse by exactly the margin ({margin:g}, sensitivity, n={n})",
                 "false alarm", 0.025, false_pass, sims, _BOUND[proportion_bound])


#: the design of each bound, in words (the table's design column)
_BOUND = {"score": "Tango score bound, variance under the null; one-sided 97.5%",
          "percentile": "paired case bootstrap percentile (old design); one-sided 97.5%"}


def compare_claims(sims: int, seed: int, margin: float = 0.05, n: int = 1000, *,
                   proportion_bound: str = "score") -> list[Claim]:
    """``compare --max-regression sensitivity=margin``: a candidate truly worse by exactly the margin must pass at
    most 2.5% (:func:`margin_claim`); one truly equal (but different case by case: it breaks 5% of the detected
    positives and fixes as many of the missed) should pass."""
    s0 = 0.85
    passes = 0
    for s in range(sims):
        q = 0.05
        frame, b, c = _paired(np.random.default_rng([seed, 41, s]), n, miss=q, gain=s0 * q / (1 - s0))
        report = paired_comparison(frame, b, c, [], class_index=1, margins={"sensitivity": margin}, seed=s,
                                   proportion_bound=proportion_bound)
        passes += noninferiority_gate(report, ["sensitivity"]).outcome == "pass"
    return [margin_claim(sims, seed, margin, n, proportion_bound=proportion_bound),
            Claim(f"compare passes an equally sensitive candidate (margin {margin:g}, n={n})", "power", 0.80, passes,
                  sims, _BOUND[proportion_bound])]


def claims(sims: int, seed: int = 0) -> list[Claim]:
    out = []
    for (groups, n) in ((5, 1000), (3, 600)):
        hits, _ = any_gap_rate(_equal(groups, n), sims, seed)
        out.append(Claim(f"any gap flagged among {groups} equal groups × {n}", "false alarm", 0.05, hits, sims,
                         "cases within group; one max-t over 9 metrics × pairs"))
    hits, _ = any_gap_rate(lambda rng: patient_cohort(rng), sims, seed)
    out.append(Claim("any gap flagged among 3 equal groups × 200 patients (1-3 images each)", "false alarm", 0.05,
                     hits, sims, "cluster bootstrap of patients; one max-t"))
    out += coverage_claims(sims, seed)
    out.append(gap_power(sims, seed))
    out += gate_claims(sims, seed)
    out += compare_claims(sims, seed)
    return out


def old_design_rates(sims: int, seed: int = 0) -> dict[str, float]:
    """The same any-gap simulations under the old design (class counts fixed, each metric adjusted on its own):
    what the product flagged before."""
    out = {}
    for (groups, n) in ((5, 1000), (3, 600)):
        hits, _ = any_gap_rate(_equal(groups, n), sims, seed, design="fixed class counts", family="per metric")
        out[f"{groups} × {n}, old design"] = hits / sims
        hits, _ = any_gap_rate(_equal(groups, n), sims, seed, design="cases within group", family="per metric")
        out[f"{groups} × {n}, class mix varying but each metric on its own"] = hits / sims
    return out


if __name__ == "__main__":
    import argparse

    from benchmarks.calibration import table

    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old", action="store_true", help="also the old design's any-gap rates")
    args = parser.parse_args()
    print(table(claims(args.sims, args.seed)))
    if args.old:
        for name, rate in old_design_rates(args.sims, args.seed).items():
            print(f"{name}: any gap flagged in {rate:.3f}")
