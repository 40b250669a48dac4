"""Reader agreement: how often readers agree with the model, per group, and with each other (Cohen's kappa).

Inputs are the review record's latest verdict per reader, case and model (``workspace.review.Record.verdicts``)
joined to the cohort's attributes. Intervals: Wilson for shares of verdicts; for kappa a bootstrap over the cases
both readers read (resampling patients where the frame has :data:`~data_adapters.records.CLUSTER`).
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import norm

from evaluation.metrics import cluster_weights
from evaluation.subgroups import MISSING, wilson

__all__ = ["model_vs_reader", "reader_pairs", "kappa"]

AGREEMENT = ("agree", "disagree", "unsure")


def model_vs_reader(verdicts: pd.DataFrame, frame: pd.DataFrame, by: str | Sequence[str] = (), *,
                    level: float = 0.95) -> pd.DataFrame:
    """One row per group (``overall`` first): ``n`` verdicts, ``cases`` and ``readers``, the share of verdicts
    that agree with the model with a Wilson interval (``agree``, ``agree_lo``, ``agree_hi``), the shares that
    disagree or are unsure, how often the explanation was judged useful or misleading (of those judged), corrected
    labels and board flags. ``frame`` gives each case's attributes (``case_id`` plus the ``by`` columns)."""
    by = [by] if isinstance(by, str) else list(by)
    z = float(norm.ppf(0.5 + level / 2))
    data = verdicts.merge(frame[["case_id", *by]].drop_duplicates("case_id"), on="case_id", how="left")
    for b in by:
        data[b] = data[b].astype("string").fillna(MISSING)
    parts = [("overall", data)]
    if by:
        parts += [(" · ".join(map(str, key if isinstance(key, tuple) else (key,))), g)
                  for key, g in data.groupby(by if len(by) > 1 else by[0], sort=True)]
    rows = []
    for name, g in parts:
        n = len(g)
        agree = int((g["agreement"] == "agree").sum())
        lo, hi = wilson(agree, n, z)
        judged = g[g["explanation"] != "not judged"]
        rows.append({
            "group": name, "n": n, "cases": g["case_id"].nunique(), "readers": g["reader"].nunique(),
            "agree": agree / n if n else np.nan, "agree_lo": lo, "agree_hi": hi,
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
    Equal to ``sklearn.metrics.cohen_kappa_score`` for the unweighted row."""
    A, B = _one_hot(a, categories), _one_hot(b, categories)
    w = np.ones((1, len(A))) if weights is None else np.asarray(weights, float)
    total = w.sum(axis=1)
    p_o = w @ (A * B).sum(axis=1) / total
    p_e = ((w @ A) * (w @ B)).sum(axis=1) / total ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_e < 1, (p_o - p_e) / (1 - p_e), np.nan)


def reader_pairs(verdicts: pd.DataFrame, *, clusters: pd.Series | None = None, min_cases: int = 5,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Every pair of readers who read at least ``min_cases`` of the same cases (under the same model): cases in
    common, raw agreement, Cohen's kappa with a bootstrap interval over those cases (patients, where ``clusters``
    maps case id to a patient code)."""
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
        if clusters is not None:
            codes = both["case_id"].map(clusters).astype(object)
            codes = codes.where(codes.notna(), "case:" + both["case_id"].astype(str))  # unknown: its own patient
            weights = cluster_weights(pd.factorize(codes)[0], n_boot, rng)
        else:
            weights = rng.multinomial(len(both), np.full(len(both), 1 / len(both)), size=n_boot).astype(float)
        reps = kappa(a, b, weights=weights)
        lo, hi = np.nanquantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2]) if np.isfinite(reps).any() else (
            np.nan, np.nan)
        rows.append({"reader_1": r1, "reader_2": r2, "cases": len(both), "raw_agreement": float((a == b).mean()),
                     "kappa": point, "kappa_lo": float(lo), "kappa_hi": float(hi)})
    return pd.DataFrame(rows, columns=["reader_1", "reader_2", "cases", "raw_agreement", "kappa", "kappa_lo",
                                       "kappa_hi"])


def in_words(kappa_value: float) -> str:
    """Landis & Koch's (1977) words for a kappa, as clinicians read them."""
    if not np.isfinite(kappa_value):
        return "not defined (one reader used one category only)"
    for bound, word in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if kappa_value <= bound:
            return word
    return "almost perfect"

