"""Reader agreement: how often readers agree with the model, per group, and with each other (Cohen's kappa).

Inputs are the review record's latest verdict per reader, case and model (``workspace.review.Record.verdicts``)
joined to the cohort's attributes.

Intervals and the error they control (95% coverage of the stated quantity, per row; rows are not adjusted against
each other):

- **Share of verdicts that agree with the model**: several readers read one case, and their verdicts on it are
  correlated (a hard case is hard for everyone), so verdicts are not independent. The interval is a Wilson interval
  on the *effective* number of verdicts, ``n / deff``, where the design effect ``deff`` is the ratio of the
  cluster-robust variance of the share (clusters: cases, or patients where the cohort knows them; the variance of
  statsmodels' ``OLS(...).fit(cov_type="cluster")`` on the same verdicts) to the binomial one, never below 1, with
  Student's t on ``clusters − 1`` degrees of freedom (Korn & Graubard, Survey Methodology 1998). Where the share is 0
  or 1 the correlation cannot be estimated and every case counts once (``deff`` = verdicts per case). Readers are
  taken as fixed (the statement is about these readers); ``readers="random"`` adds the reader as a second cluster
  dimension (two-way cluster-robust variance, Cameron, Gelbach & Miller, JBES 2011), for a statement about readers
  like them (wide with few readers, as it should be). Measured: ``benchmarks/calibration/agreement.py`` (3 readers per
  case, within-case correlation 1/3: the plain Wilson interval covers 0.87, this one ≥ 0.94).
- **Cohen's kappa** of a pair of readers: percentile bootstrap over the cases both read (whole patients where the
  cohort has :data:`~data_adapters.tables.CLUSTER`). Kappa is undefined when both readers used one and the same
  category only (chance agreement 1): the pair is then *could not judge*, with the reason, never a number; so is the
  interval when more than :data:`UNDEFINED_SHARE` of the resamples are undefined. The interval is BCa (jackknife
  over the same units). A pair is two fixed readers, so the reader is no sampling unit here.
- **Mean kappa over pairs** (Light's kappa, :func:`mean_kappa`): cases resampled for these readers; for readers
  like these, readers resampled as well, independently of cases (two-way; Owen 2007). Measured in the calibration
  suite: 6 readers, the two-way interval covers 0.94, resampling cases alone 0.71.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

from data_adapters.errors import InvalidInputError
from data_adapters.tables import CLUSTER
from evaluation.inference import (bca_interval, case_weights, cluster_weights, design_effect, percentile_interval,
                                  wilson)
from evaluation.subgroups import MISSING

__all__ = ["model_vs_reader", "reader_pairs", "pairs_in_words", "mean_kappa", "kappa", "in_words",
           "clustered_proportion", "COULD_NOT_JUDGE"]

AGREEMENT = ("agree", "disagree", "unsure")
COULD_NOT_JUDGE = "could not judge"
#: a kappa interval is not given when more than this share of its bootstrap resamples has kappa undefined
UNDEFINED_SHARE = 0.05


def _cluster_variance(residuals: np.ndarray, groups: np.ndarray) -> float:
    """Cluster-robust (sandwich) variance of a mean with the small-sample factor G / (G − 1), as statsmodels'
    ``cov_type="cluster"`` gives it for an intercept-only OLS."""
    codes, _ = pd.factorize(pd.Series(groups, dtype=object))
    g = int(codes.max()) + 1 if len(codes) else 0
    if g < 2:
        return np.nan
    sums = np.bincount(codes, weights=residuals, minlength=g)
    n = len(residuals)
    return float(g / (g - 1) * np.sum(sums ** 2) / n ** 2)


def clustered_proportion(successes: Sequence[float], clusters: Sequence, *, second: Sequence | None = None,
                         level: float = 0.95) -> dict[str, float]:
    """A share of correlated binary outcomes with its interval: ``successes`` (0/1 per verdict) grouped by
    ``clusters`` (case or patient per verdict) and, for a two-way design, by ``second`` (reader per verdict).
    Returns ``p``, ``lo``, ``hi``, ``design_effect``, ``clusters`` (the degrees of freedom come from the smaller
    dimension) and ``variance`` (cluster-robust). See the module docstring for the method."""
    y = np.asarray(successes, float)
    n = len(y)
    if n == 0:
        return {"p": np.nan, "lo": np.nan, "hi": np.nan, "design_effect": np.nan, "clusters": 0, "variance": np.nan}
    if len(clusters) != n or (second is not None and len(second) != n):
        raise InvalidInputError(f"clustered_proportion: {n} outcomes but {len(clusters)} cluster labels")
    p = float(y.mean())
    e = y - p
    c1 = pd.Series(clusters, dtype=object)
    g = int(c1.nunique())
    variance = _cluster_variance(e, c1.to_numpy())
    if second is not None:
        c2 = pd.Series(second, dtype=object)
        both = (c1.astype(str) + "\x1f" + c2.astype(str)).to_numpy()
        variance = variance + _cluster_variance(e, c2.to_numpy()) - _cluster_variance(e, both)
        g = min(g, int(c2.nunique()))
    if second is None:
        deff = design_effect(y, c1.to_numpy())  # Kish's, from evaluation.inference
    elif 0 < p < 1 and g >= 2 and np.isfinite(variance):
        deff = max(1.0, variance / (p * (1 - p) / n))
    else:  # no variation to estimate the correlation from: every cluster counts once
        deff = n / max(g, 1)
    z = float(student_t.ppf(0.5 + level / 2, g - 1)) if g >= 2 else float(norm.ppf(0.5 + level / 2))
    n_eff = n / deff
    lo, hi = wilson(p * n_eff, n_eff, z)
    return {"p": p, "lo": lo, "hi": hi, "design_effect": float(deff), "clusters": g, "variance": variance}


def _clusters_of(data: pd.DataFrame) -> pd.Series:
    """The sampling unit of each verdict: the patient where the cohort knows it, else the case."""
    own = "case:" + data["case_id"].astype(str)
    if CLUSTER in data:
        patient = data[CLUSTER]
        return ("patient:" + patient.astype(str)).where(patient.notna(), own)
    return own


def model_vs_reader(verdicts: pd.DataFrame, frame: pd.DataFrame, by: str | Sequence[str] = (), *,
                    level: float = 0.95, readers: str = "fixed") -> pd.DataFrame:
    """One row per group (``overall`` first): ``n`` verdicts, ``cases`` and ``readers``, the share of verdicts
    that agree with the model with its interval clustered by case or patient (``agree``, ``agree_lo``,
    ``agree_hi``, ``design_effect``), the shares that disagree or are unsure, how often the explanation was judged
    useful or misleading (of those judged), corrected labels and board flags. ``frame`` gives each case's attributes
    (``case_id`` plus the ``by`` columns, and the patient cluster where known). ``readers``: ``"fixed"`` (these
    readers) or ``"random"`` (readers like them: two-way clustering by case and reader)."""
    if readers not in ("fixed", "random"):
        raise InvalidInputError(f"readers={readers!r}: give 'fixed' or 'random'")
    by = [by] if isinstance(by, str) else list(by)
    keep = ["case_id", *by, *([CLUSTER] if CLUSTER in frame and CLUSTER not in by else [])]
    data = verdicts.merge(frame[keep].drop_duplicates("case_id"), on="case_id", how="left")
    for b in by:
        data[b] = data[b].astype("string").fillna(MISSING)
    data["_unit"] = _clusters_of(data)
    parts = [("overall", data)]
    if by:
        parts += [(" · ".join(map(str, key if isinstance(key, tuple) else (key,))), g)
                  for key, g in data.groupby(by if len(by) > 1 else by[0], sort=True)]
    rows = []
    for name, g in parts:
        n = len(g)
        agree = (g["agreement"] == "agree").to_numpy(float)
        share = clustered_proportion(agree, g["_unit"].to_numpy(),
                                     second=g["reader"].to_numpy() if readers == "random" else None, level=level)
        judged = g[g["explanation"] != "not judged"]
        rows.append({
            "group": name, "n": n, "cases": g["case_id"].nunique(), "readers": g["reader"].nunique(),
            "agree": share["p"], "agree_lo": share["lo"], "agree_hi": share["hi"],
            "design_effect": share["design_effect"],
            "disagree": float((g["agreement"] == "disagree").mean()) if n else np.nan,
            "unsure": float((g["agreement"] == "unsure").mean()) if n else np.nan,
            "explanation_useful": float((judged["explanation"] == "useful").mean()) if len(judged) else np.nan,
            "explanation_misleading": float((judged["explanation"] == "misleading").mean()) if len(judged) else np.nan,
            "corrected": int(g["corrected_label"].notna().sum()), "flagged": int(g["flag_board"].sum()),
            "notes": "",
        })
    return pd.DataFrame(rows)


def _one_hot(values: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    return (np.asarray(values)[:, None] == np.asarray(categories)[None, :]).astype(float)


def kappa(a: Sequence[str], b: Sequence[str], *, weights: np.ndarray | None = None,
          categories: Sequence[str] = AGREEMENT) -> np.ndarray:
    """Cohen's kappa of two readers' categorical verdicts on the same cases, once per row of ``weights``
    ``(R, n)`` (case weights of bootstrap replicates; default one row of ones): ``(p_o - p_e) / (1 - p_e)`` with
    ``p_o`` the observed agreement and ``p_e`` the agreement expected from each reader's own category shares.
    Equal to ``sklearn.metrics.cohen_kappa_score`` for the unweighted row; NaN where it is undefined (both readers
    used one and the same category only: ``p_e = 1``), as scikit-learn's is."""
    A, B = _one_hot(a, categories), _one_hot(b, categories)
    w = np.ones((1, len(A))) if weights is None else np.asarray(weights, float)
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o = w @ (A * B).sum(axis=1) / total
        p_e = ((w @ A) * (w @ B)).sum(axis=1) / total ** 2
        return np.where(p_e < 1 - 1e-12, (p_o - p_e) / (1 - p_e), np.nan)


def why_undefined(a: Sequence[str], b: Sequence[str]) -> str:
    """Why kappa of ``a`` and ``b`` cannot be judged, in words ('' when it can)."""
    used = set(np.asarray(a).tolist()) | set(np.asarray(b).tolist())
    if len(a) == 0:
        return "no cases in common"
    if len(used) == 1:
        return (f"both readers gave '{next(iter(used))}' on every shared case: agreement expected by chance is 1, so "
                "kappa is undefined")
    return ""


def reader_pairs(verdicts: pd.DataFrame, *, clusters: pd.Series | None = None, min_cases: int = 5,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Every pair of readers who read at least ``min_cases`` of the same cases (under the same model): cases in
    common, raw agreement, Cohen's kappa with a bootstrap interval over those cases (patients, where ``clusters``
    maps case id to a patient code), and ``verdict`` (``judged`` or ``could not judge``) with its ``reason``."""
    rows = []
    rng = np.random.default_rng(seed)
    key = ["case_id", "model_hash"]
    readers = sorted(verdicts["reader"].unique())
    for r1, r2 in combinations(readers, 2):
        both = (verdicts[verdicts["reader"] == r1].merge(verdicts[verdicts["reader"] == r2], on=key,
                                                          suffixes=("_1", "_2")))
        if len(both) < min_cases:
            continue
        a, b = both["agreement_1"].to_numpy(), both["agreement_2"].to_numpy()
        point = float(kappa(a, b)[0])
        row = {"reader_1": r1, "reader_2": r2, "cases": len(both), "raw_agreement": float((a == b).mean()),
               "kappa": point, "kappa_lo": np.nan, "kappa_hi": np.nan, "verdict": "judged", "reason": ""}
        if not np.isfinite(point):
            row.update(verdict=COULD_NOT_JUDGE, reason=why_undefined(a, b))
            rows.append(row)
            continue
        if clusters is not None:
            codes = both["case_id"].map(clusters).astype(object)
            codes = codes.where(codes.notna(), "case:" + both["case_id"].astype(str))  # unknown: its own patient
            units = pd.factorize(codes)[0]
        else:
            units = np.arange(len(both))
        weights = cluster_weights(units, n_boot, rng) if clusters is not None else case_weights(len(both), n_boot,
                                                                                                 rng)
        leave_one_out = (units[None, :] != np.unique(units)[:, None]).astype(float)  # (G, n) jackknife weights
        reps = kappa(a, b, weights=weights)
        undefined = float(np.mean(~np.isfinite(reps)))
        if undefined > UNDEFINED_SHARE:
            row["reason"] = (f"interval not given: kappa is undefined in {undefined:.0%} of resamples (one category "
                             "only); more shared cases with disagreement or other categories are needed")
        else:
            jack = kappa(a, b, weights=leave_one_out)
            lo, hi = bca_interval(point, reps, jack, level) if np.isfinite(jack).all() else (np.nan, np.nan)
            if not np.isfinite(lo):  # a jackknife replicate undefined: the plain percentile interval
                lo, hi = percentile_interval(reps, level)
            row.update(kappa_lo=float(lo), kappa_hi=float(hi))
        rows.append(row)
    return pd.DataFrame(rows, columns=["reader_1", "reader_2", "cases", "raw_agreement", "kappa", "kappa_lo",
                                       "kappa_hi", "verdict", "reason"])


def in_words(kappa_value) -> str:
    """Landis & Koch's (1977) words for a kappa, as clinicians read them; *could not judge* for anything that is
    not a finite number (undefined kappa, a blank cell of a printed table)."""
    try:
        value = float(kappa_value)
    except (TypeError, ValueError):
        value = np.nan
    if not np.isfinite(value):
        return f"{COULD_NOT_JUDGE} (kappa undefined: the readers used one category only)"
    for bound, word in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if value <= bound:
            return word
    return "almost perfect"


def pairs_in_words(verdicts: pd.DataFrame, frame: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
    """:func:`reader_pairs` with patients resampled where ``frame`` (the cohort's frame) knows them, and a
    ``words`` column: Landis & Koch's word, or *could not judge* with the reason; what the page and the report
    print."""
    clusters = frame.set_index("case_id")[CLUSTER] if frame is not None and CLUSTER in frame else None
    pairs = reader_pairs(verdicts, clusters=clusters, **kwargs)
    pairs["words"] = [f"{COULD_NOT_JUDGE}: {reason}" if verdict == COULD_NOT_JUDGE else
                      in_words(k) + (f"; {reason}" if reason else "")
                      for k, verdict, reason in zip(pairs["kappa"], pairs["verdict"], pairs["reason"])]
    return pairs


def mean_kappa(verdicts: pd.DataFrame, *, clusters: pd.Series | None = None, readers: str = "fixed",
               min_cases: int = 5, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Light's kappa: the mean of Cohen's kappa over every pair of readers with at least ``min_cases`` shared cases
    (Light, Psychological Bulletin 1971), with a percentile bootstrap interval. ``readers="fixed"`` resamples cases
    (patients where ``clusters`` maps case to patient) for a statement about these readers; ``"random"`` resamples
    readers as well, independently of cases (the two-way "pigeonhole" bootstrap of Owen, Annals of Applied Statistics
    2007, cautious by design), for readers like these. Pairs with kappa undefined are left out of the mean (and
    counted in ``undefined_pairs``); *could not judge* when none is left."""
    if readers not in ("fixed", "random"):
        raise InvalidInputError(f"readers={readers!r}: give 'fixed' or 'random'")
    out = {"kappa": np.nan, "kappa_lo": np.nan, "kappa_hi": np.nan, "pairs": 0, "undefined_pairs": 0,
           "readers": 0, "verdict": COULD_NOT_JUDGE, "reason": ""}
    key = ["case_id", "model_hash"] if "model_hash" in verdicts else ["case_id"]
    items = verdicts[key].drop_duplicates().reset_index(drop=True)
    index = pd.MultiIndex.from_frame(items)
    names = sorted(verdicts["reader"].unique())
    wide = np.full((len(items), len(names)), None, dtype=object)
    for j, r in enumerate(names):
        sub = verdicts[verdicts["reader"] == r]
        wide[index.get_indexer(pd.MultiIndex.from_frame(sub[key])), j] = sub["agreement"].to_numpy()
    if clusters is not None:
        codes = items["case_id"].map(clusters).astype(object)
        units = pd.factorize(codes.where(codes.notna(), "case:" + items["case_id"].astype(str)))[0]
    else:
        units = np.arange(len(items))
    rng = np.random.default_rng(seed)
    case_w = cluster_weights(units, n_boot, rng).astype(float)
    pairs, points, reps = [], [], []
    for i, j in combinations(range(len(names)), 2):
        shared = np.flatnonzero((wide[:, i] != None) & (wide[:, j] != None))  # noqa: E711 (object array)
        if len(shared) < min_cases:
            continue
        point = float(kappa(wide[shared, i], wide[shared, j])[0])
        if not np.isfinite(point):
            out["undefined_pairs"] += 1
            continue
        pairs.append((i, j))
        points.append(point)
        reps.append(kappa(wide[shared, i], wide[shared, j], weights=case_w[:, shared]))
    out.update(pairs=len(pairs), readers=len({r for p in pairs for r in p}))
    if not pairs:
        out["reason"] = "no pair of readers with a defined kappa on at least {min_cases} shared cases".format(
            min_cases=min_cases)
        return out
    reps = np.vstack(reps)  # (pairs, B)
    if readers == "random":
        counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_boot).astype(float)
        pair_w = np.stack([counts[:, i] * counts[:, j] for i, j in pairs])  # self-pairs never count
    else:
        pair_w = np.ones_like(reps)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(reps)
        w = np.where(ok, pair_w, 0.0)
        boot = (np.where(ok, reps, 0.0) * w).sum(axis=0) / w.sum(axis=0)
    lo, hi = percentile_interval(boot, level)
    out.update(kappa=float(np.mean(points)), kappa_lo=lo, kappa_hi=hi, verdict="judged")
    return out
