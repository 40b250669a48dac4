"""Reader agreement: the intervals the Reader agreement page and the board report print, simulated with the product's
own functions (``evaluation.reader_agreement``) under a known truth.

- *Agreement share with 3 readers per case*: each case has its own chance that a reader agrees with the model,
  drawn from Beta(1.6, 0.4) (mean 0.80; within-case correlation of verdicts 1 / (1.6 + 0.4 + 1) = 1/3); three
  readers read each of 60 cases. The claim: the interval of ``model_vs_reader`` covers 0.80 in ≥ 95% of cohorts.
  The old design (Wilson on 180 verdicts as if independent) is :func:`claims` with ``old=True``.
- *Agreement share for readers like these* (``readers="random"``): 40 cases x 6 readers, agreement on the logit
  scale 1.4 + a case effect N(0, 1) + a reader effect N(0, 0.7); the target is the share over cases and readers
  (numerical integral). The two-way interval must cover it.
- *Cohen's kappa of two readers*: each case has a true category (agree / disagree / unsure with shares 0.6, 0.3, 0.1);
  each reader reports it with probability 0.7, else one of the three at random. The population kappa follows from
  the joint table exactly. 60 cases, and a second design with 30 patients of 2 images that share the truth (the
  interval must resample patients: the old report called ``reader_pairs`` without the patient map); a reader reads
  a patient's second image as the first with probability 0.9.
- *Mean kappa over readers like these* (Light's kappa, ``mean_kappa(readers="random")``): 6 readers per case whose
  faithfulness is drawn from Beta(7, 3), 60 cases; the target is the expected kappa of two readers drawn from that
  population. Resampling cases only (readers fixed) is the wrong design for it and is what ``old=True`` measures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import beta

from benchmarks.calibration import Claim
from data_adapters.tables import CLUSTER
from evaluation.reader_agreement import kappa, mean_kappa, model_vs_reader, reader_pairs
from evaluation.subgroups import wilson

CATEGORIES = np.array(["agree", "disagree", "unsure"])
TRUTH_SHARES = np.array([0.6, 0.3, 0.1])
FAITHFUL = 0.7
#: how often a reader's read of a patient's further image repeats the read of the first
SHARED = 0.9


def _share_cohort(rng: np.random.Generator, cases: int = 60, readers: int = 3, a: float = 1.6, b: float = 0.4):
    chance = rng.beta(a, b, cases)
    case_ids = np.repeat([f"c{i}" for i in range(cases)], readers)
    agree = rng.random(cases * readers) < np.repeat(chance, readers)
    verdicts = pd.DataFrame({"case_id": case_ids, "reader": np.tile([f"r{j}" for j in range(readers)], cases),
                             "agreement": np.where(agree, "agree", "disagree"), "explanation": "not judged",
                             "corrected_label": None, "flag_board": False})
    frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(cases)]})
    return verdicts, frame, a / (a + b)


READER_DESIGN = dict(cases=40, readers=6, mu=1.4, case_sd=1.0, reader_sd=0.7)


def _reader_effects_cohort(rng: np.random.Generator, cases: int, readers: int, mu: float, case_sd: float,
                           reader_sd: float):
    logit = mu + rng.normal(0, case_sd, cases)[:, None] + rng.normal(0, reader_sd, readers)[None, :]
    agree = rng.random((cases, readers)) < 1 / (1 + np.exp(-logit))
    verdicts = pd.DataFrame({"case_id": np.repeat([f"c{i}" for i in range(cases)], readers),
                             "reader": np.tile([f"r{j}" for j in range(readers)], cases),
                             "agreement": np.where(agree.ravel(), "agree", "disagree"), "explanation": "not judged",
                             "corrected_label": None, "flag_board": False})
    return verdicts, pd.DataFrame({"case_id": [f"c{i}" for i in range(cases)]})


def population_share(mu: float, case_sd: float, reader_sd: float) -> float:
    """E[expit(mu + u + v)] over case and reader effects (Gauss-Hermite, 60 x 60 nodes)."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    logit = mu + case_sd * x[:, None] + reader_sd * x[None, :]
    return float(w @ (1 / (1 + np.exp(-logit))) @ w)


#: Light's kappa over readers like these: 6 readers whose faithfulness is drawn from Beta(7, 3), 60 cases
LIGHT_DESIGN = dict(cases=60, readers=6, a=7.0, b=3.0)


def pair_kappa(f1: float, f2: float, shares: np.ndarray = TRUTH_SHARES) -> float:
    """Population kappa of two readers with faithfulness ``f1`` and ``f2``."""
    k = len(shares)
    r1, r2 = f1 * np.eye(k) + (1 - f1) / k, f2 * np.eye(k) + (1 - f2) / k
    joint = np.einsum("t,ti,tj->ij", shares, r1, r2)
    p_o, p_e = np.trace(joint), float(joint.sum(1) @ joint.sum(0))
    return (p_o - p_e) / (1 - p_e)


def population_light_kappa(a: float, b: float, nodes: int = 200) -> float:
    """E[kappa] over two independent readers' faithfulness ~ Beta(a, b) (midpoint rule on the quantile scale)."""
    f = beta.ppf((np.arange(nodes) + 0.5) / nodes, a, b)
    return float(np.mean([[pair_kappa(x, y) for y in f] for x in f]))


def _light_cohort(rng: np.random.Generator, cases: int, readers: int, a: float, b: float) -> pd.DataFrame:
    faithful = rng.beta(a, b, readers)
    truth = rng.choice(len(TRUTH_SHARES), cases, p=TRUTH_SHARES)
    reads = np.where(rng.random((readers, cases)) < faithful[:, None], truth[None, :],
                     rng.integers(0, len(CATEGORIES), (readers, cases)))
    return pd.DataFrame({"case_id": np.tile([f"c{i}" for i in range(cases)], readers),
                         "reader": np.repeat([f"r{j}" for j in range(readers)], cases), "model_hash": "m",
                         "agreement": CATEGORIES[reads.ravel()]})


def population_kappa(shares: np.ndarray = TRUTH_SHARES, faithful: float = FAITHFUL) -> float:
    """Kappa of the population joint table of two readers who each report the truth with ``faithful``, else a
    category at random."""
    k = len(shares)
    report = faithful * np.eye(k) + (1 - faithful) / k  # P(report j | truth t), rows t
    joint = np.einsum("t,ti,tj->ij", shares, report, report)
    p_o, p_e = np.trace(joint), float(joint.sum(1) @ joint.sum(0))
    return (p_o - p_e) / (1 - p_e)


def _kappa_cohort(rng: np.random.Generator, patients: int, images: int):
    truth = np.repeat(rng.choice(len(TRUTH_SHARES), patients, p=TRUTH_SHARES), images)
    n = len(truth)

    first = np.repeat(np.arange(patients) * images, images)  # each image's patient's first image

    def read():
        keep = rng.random(n) < FAITHFUL
        own = np.where(keep, truth, rng.integers(0, len(CATEGORIES), n))
        # a reader reads a patient's images alike: each further image repeats the first image's read w.p. SHARED
        return CATEGORIES[np.where(rng.random(n) < SHARED, own[first], own)]

    ids = [f"c{i}" for i in range(n)]
    verdicts = pd.DataFrame({"case_id": ids * 2, "reader": ["r1"] * n + ["r2"] * n, "model_hash": "m",
                             "agreement": np.concatenate([read(), read()])})
    return verdicts, pd.Series(np.repeat(np.arange(patients), images), index=ids, name=CLUSTER)


def claims(sims: int, seed: int = 0, *, old: bool = False, n_boot: int = 1000) -> list[Claim]:
    """The reader-agreement claims at ``sims`` simulated cohorts each; ``old=True`` measures the designs the code had
    before (plain Wilson over verdicts; kappa resampled by image where patients have two)."""
    rng = np.random.default_rng(seed)
    covered = 0
    for _ in range(sims):
        verdicts, frame, truth = _share_cohort(rng)
        if old:
            agree = int((verdicts["agreement"] == "agree").sum())
            lo, hi = wilson(agree, len(verdicts), 1.959963984540054)
        else:
            row = model_vs_reader(verdicts, frame).iloc[0]
            lo, hi = row["agree_lo"], row["agree_hi"]
        covered += bool(lo <= truth <= hi)
    name = "plain Wilson over verdicts (old)" if old else "clustered by case"
    out = [Claim(f"reader agreement with the model: 95% interval ({name})", "coverage", 0.95, covered, sims,
                 "60 cases x 3 readers, per-case agreement chance Beta(1.6, 0.4), ICC 1/3")]
    d = READER_DESIGN
    truth_share = population_share(d["mu"], d["case_sd"], d["reader_sd"])
    covered = 0
    for _ in range(sims):
        verdicts, frame = _reader_effects_cohort(rng, **d)
        if old:
            lo, hi = wilson(int((verdicts["agreement"] == "agree").sum()), len(verdicts), 1.959963984540054)
        else:
            row = model_vs_reader(verdicts, frame, readers="random").iloc[0]
            lo, hi = row["agree_lo"], row["agree_hi"]
        covered += bool(lo <= truth_share <= hi)
    name = "(plain Wilson over verdicts (old))" if old else "(two-way: case and reader)"
    out.append(Claim(f"reader agreement for readers like these: 95% interval {name}", "coverage", 0.95, covered, sims,
                     f"{d['cases']} cases x {d['readers']} readers, logit agreement {d['mu']} + case N(0, "
                     f"{d['case_sd']}) + reader N(0, {d['reader_sd']}); population share {truth_share:.3f}"))
    truth = population_kappa()
    for patients, images, label in ((60, 1, "60 cases"), (30, 2, "30 patients x 2 images")):
        covered = undefined = 0
        for _ in range(sims):
            verdicts, clusters = _kappa_cohort(rng, patients, images)
            use = None if (old and images > 1) else clusters
            row = reader_pairs(verdicts, clusters=use, n_boot=n_boot, seed=int(rng.integers(2 ** 31))).iloc[0]
            if not np.isfinite(row["kappa_lo"]):
                undefined += 1
                continue
            covered += bool(row["kappa_lo"] <= truth <= row["kappa_hi"])
        design = (f"{label}, truth shares 0.6/0.3/0.1, each reader faithful 0.7, kappa {truth:.3f}; "
                  f"{'image' if old and images > 1 else 'patient' if images > 1 else 'case'} bootstrap x {n_boot}"
                  + (f"; {undefined} without interval" if undefined else ""))
        out.append(Claim(f"Cohen's kappa of two readers: 95% interval ({label}{', old' if old and images > 1 else ''})",
                         "coverage", 0.95, covered, sims, design))
    d = LIGHT_DESIGN
    truth = population_light_kappa(d["a"], d["b"])
    covered = 0
    for _ in range(sims):
        row = mean_kappa(_light_cohort(rng, **d), readers="fixed" if old else "random", n_boot=n_boot,
                         seed=int(rng.integers(2 ** 31)))
        covered += bool(row["kappa_lo"] <= truth <= row["kappa_hi"])
    name = "cases resampled only (old design)" if old else "two-way: cases and readers"
    out.append(Claim(f"mean kappa over readers like these: 95% interval ({name})", "coverage", 0.95, covered, sims,
                     f"{d['cases']} cases x {d['readers']} readers, faithfulness Beta({d['a']:g}, {d['b']:g}), "
                     f"population mean pairwise kappa {truth:.3f}; bootstrap x {n_boot}"))
    return out


if __name__ == "__main__":
    import sys

    from benchmarks.calibration import table

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(table(claims(n) + claims(n, old=True)))
    print("population kappa", population_kappa(), kappa(["agree"], ["agree"]))
