"""After deployment: does the incoming stream still look like the cohort the model was validated on, and does it
still perform?

Per time window of the current cohort, against the reference cohort:

- **input drift without labels**: a two-sample test in the model's own embedding space: maximum mean discrepancy
  (Gretton et al., JMLR 2012) with a Gaussian kernel (bandwidth: the median pairwise distance of the reference), its
  p-value from permutations (written here: alibi-detect's detectors moved to a source-available licence; checked
  against a direct double-sum in the tests). p-values across windows are Holm-adjusted, so "any window drifted" keeps
  its false-alarm rate; also per site where the cohort has one;
- **metadata drift**: chi-square for categorical attributes (site, scanner, sex), Kolmogorov-Smirnov for numeric
  ones (age), Holm-adjusted across attributes and windows;
- **intensity**: per-image mean, spread and percentiles, their shift in reference standard deviations;
- **output drift**: mean probability, the share called positive at the shared threshold, the outputs' uncertainty
  (binary entropy) and the share a referral rule would send to a reader (entropy above the reference's 90th
  percentile: about 10% while nothing has shifted);
- **performance**: where labels have arrived, accuracy, sensitivity and specificity with Wilson intervals; everywhere,
  the accuracy the model's probabilities expect once calibrated on the labelled reference (confidence-based
  estimation, as NannyML's CBPE: it assumes the shift changes which images arrive, not how labels follow from what
  the model sees, so a shift the model cannot feel as uncertainty is missed), shown apart from the measured one.
"""
from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from evaluation.subgroups import wilson

__all__ = ["mmd_test", "holm", "attribute_drift", "window_report", "DriftReport", "drivers"]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def bandwidth(reference: np.ndarray, *, cap: int = 1000, seed: int = 0) -> float:
    """The median pairwise distance among (up to ``cap``) reference embeddings."""
    rng = np.random.default_rng(seed)
    x = reference[rng.permutation(len(reference))[:cap]]
    d = _sq_dists(x, x)[np.triu_indices(len(x), 1)]
    return float(np.sqrt(np.median(d))) if len(d) else 1.0


def mmd_test(x: np.ndarray, y: np.ndarray, *, sigma: float | None = None, n_perm: int = 500,
             seed: int = 0) -> tuple[float, float]:
    """``(MMD², permutation p-value)`` of samples ``x`` ``(n, d)`` and ``y`` ``(m, d)`` (the biased V-statistic; the
    permutation test is exact whichever statistic it permutes). All permutations are evaluated at once: with
    ``a`` the ±1/n, ±1/m weights of a labelling, MMD² = aᵀKa. A statistic beyond every permutation gets the tail of a
    gamma fitted to the permutation null (never above the smallest empirical p)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    z = np.concatenate([x, y])
    sigma = sigma or bandwidth(x)
    k = np.exp(-_sq_dists(z, z) / (2 * sigma * sigma))
    n, m = len(x), len(y)
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_perm + 1, n + m), bool)
    labels[0, :n] = True
    for i in range(1, n_perm + 1):
        labels[i, rng.permutation(n + m)[:n]] = True
    a = np.where(labels, 1.0 / n, -1.0 / m)
    values = np.einsum("pi,pi->p", a @ k, a)
    observed, null = float(values[0]), values[1:]
    exceed = int((null >= observed - 1e-12).sum())
    if exceed or null.var() <= 0:
        return observed, float((1 + exceed) / (n_perm + 1))
    # beyond every permutation: the tail of a gamma fitted to the permutation null by its moments (Gretton et al.,
    # NeurIPS 2009), so that a clear shift is not capped at 1/(n_perm + 1) before a multiple-comparison adjustment
    shape, scale = null.mean() ** 2 / null.var(), null.var() / null.mean()
    return observed, float(min(1.0 / (n_perm + 1), stats.gamma.sf(observed, shape, scale=scale)))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error control; NaN stays NaN)."""
    p = np.asarray(p, float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out


def attribute_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str],
                    kinds: dict[str, str]) -> list[dict]:
    """Per attribute: the test, its statistic and p-value (chi-square on the categories' counts, or KS)."""
    rows = []
    for column in columns:
        a, b = reference[column].dropna(), current[column].dropna()
        if len(a) < 2 or len(b) < 2:
            continue
        if kinds.get(column) == "numeric":
            stat, p = stats.ks_2samp(a.astype(float), b.astype(float))
            rows.append({"attribute": column, "test": "KS", "statistic": float(stat), "p": float(p), "new": ""})
            continue
        table = pd.crosstab(pd.concat([a.astype(str), b.astype(str)]),
                            np.r_[np.zeros(len(a), int), np.ones(len(b), int)])
        new = sorted(set(b.astype(str)) - set(a.astype(str)))
        if len(table) < 2:
            continue
        stat, p, _, _ = stats.chi2_contingency(table.to_numpy())
        rows.append({"attribute": column, "test": "chi-square", "statistic": float(stat), "p": float(p),
                     "new": ", ".join(new)})
    return rows


@dataclass(frozen=True)
class DriftReport:
    """``windows``: one row per window; ``attributes``: per window and attribute; ``sites``: MMD per window and site;
    ``alerts``: sentences for what crossed ``alpha`` (Holm-adjusted)."""

    windows: pd.DataFrame
    attributes: pd.DataFrame
    sites: pd.DataFrame
    alpha: float
    threshold: float
    #: per window and site: cases, labelled cases, accuracy with its Wilson 95% interval, the estimate
    groups: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    @property
    def alerts(self) -> list[str]:
        """What crossed the alert level, in words: one sentence for the windows, one per site, one per attribute."""
        out = []
        w = self.windows
        hit = w.loc[w["mmd_p_adj"] < self.alpha, "window"].tolist()
        if hit:
            smallest = float(w["mmd_p_adj"].min())
            out.append(f"the images differ from the reference in the model's feature space in {len(hit)} of {len(w)} "
                       f"window(s): {_span(hit)} (Holm-adjusted p "
                       f"{'< 0.001' if smallest < 0.001 else f'= {smallest:.3f}'} at the smallest)")
        for row in self.sites.itertuples():
            if row.mmd_p_adj < self.alpha:
                what = f"; a new scanner appears: {row.new_scanner}" if row.new_scanner else ""
                out.append(f"since {row.window}, site {row.site}'s images differ from the reference (p "
                           f"{'< 0.001' if row.mmd_p_adj < 0.001 else f'= {row.mmd_p_adj:.3f}'}){what}")
        flagged = self.attributes[self.attributes["p_adj"] < self.alpha]
        for attribute, rows in flagged.groupby("attribute", sort=False):
            new = sorted({n for v in rows["new"] if v for n in v.split(", ")})
            out.append(f"the {attribute} mix differs from the reference ({rows['test'].iloc[0]}) in "
                       f"{_span(rows['window'].tolist())}" + (f"; new: {', '.join(new)}" if new else ""))
        return out


def _span(windows: list[str]) -> str:
    """``2026-05 to 2026-12`` for a run, else the windows listed."""
    windows = sorted(windows)
    return windows[0] if len(windows) == 1 else f"{windows[0]} to {windows[-1]}" + (
        f" ({len(windows)} windows)" if len(windows) > 2 else "")


#: the share of the reference a referral rule sends to a reader; the stream's share is compared with it
REFER_FRACTION = 0.1


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def calibration_map(reference: dict):
    """Probabilities → calibrated probabilities, fitted on the labelled reference (isotonic regression; the identity
    without labels). Confidence-based estimation is only as good as this map: it assumes the shift changes which
    images arrive, not how labels follow from what the model sees."""
    from sklearn.isotonic import IsotonicRegression

    labels = reference["frame"]["label"]
    has = labels.notna().to_numpy()
    if has.sum() < 20:
        return lambda p: np.asarray(p, float)
    y = labels[has].astype(int).to_numpy() == 1
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(reference["p"][has], y.astype(float))
    return lambda p: iso.predict(np.asarray(p, float))


def _first_windows(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep each site's first alerting window only (\"since March\")."""
    alerted = frame[frame["alert"]]
    return alerted.sort_values("window").drop_duplicates("site")


def window_report(reference: dict, current: dict, windows: Sequence[str], *, threshold: float, alpha: float = 0.01,
                  n_perm: int = 500, reference_cap: int = 1000, seed: int = 0, by_site: str | None = "site",
                  attributes: Sequence[str] = (), kinds: dict[str, str] | None = None) -> DriftReport:
    """``reference`` and ``current``: ``frame`` (attributes, ``label``), ``embedding`` (N, D), ``p`` (N,) the
    positive class's probability, ``intensity`` (N, 4); ``windows`` the window of each current row."""
    kinds = kinds or {}
    rng = np.random.default_rng(seed)
    ref_emb = reference["embedding"]
    keep = rng.permutation(len(ref_emb))[:reference_cap]
    ref_sample = ref_emb[keep]
    sigma = bandwidth(ref_sample, seed=seed)
    ref_int = reference["intensity"]
    mu, sd = ref_int.mean(0), ref_int.std(0) + 1e-9
    windows = np.asarray(windows).astype(str)
    calibrate = calibration_map(reference)
    # uncertainty from the outputs: the binary entropy of each probability; a case is referred when it is above the
    # reference's 90th percentile, so a stream like the reference refers about 10%
    refer_cutoff = float(np.quantile(_entropy(reference["p"]), 1 - REFER_FRACTION))
    rows, attr_rows, site_rows, group_rows = [], [], [], []
    cur_frame = current["frame"].reset_index(drop=True)
    for w in sorted(set(windows)):
        idx = np.flatnonzero(windows == w)
        stat, p = mmd_test(ref_sample, current["embedding"][idx], sigma=sigma, n_perm=n_perm, seed=seed)
        probs = current["p"][idx]
        called = probs >= threshold
        shift = (current["intensity"][idx].mean(0) - mu) / sd
        q = calibrate(probs)
        row = {"window": w, "n": len(idx), "mmd": stat, "mmd_p": p, "mean_probability": float(probs.mean()),
               "called_positive": float(called.mean()), "entropy": float(_entropy(probs).mean()),
               "referred": float((_entropy(probs) > refer_cutoff).mean()), "intensity_shift_sd": float(shift[0]),
               "noise_shift_sd": float(shift[1]),
               "estimated_accuracy": float(np.where(called, q, 1 - q).mean())}
        labels = cur_frame.loc[idx, "label"]
        has = labels.notna().to_numpy()
        row["labelled"] = int(has.sum())
        if has.sum():
            y = labels[has].astype(int).to_numpy() == 1
            c = called[has]
            correct = int((y == c).sum())
            row["accuracy"] = correct / len(y)
            row["accuracy_lo"], row["accuracy_hi"] = wilson(correct, len(y), 1.96)
            row["sensitivity"] = float(c[y].mean()) if y.any() else np.nan
            row["specificity"] = float((~c[~y]).mean()) if (~y).any() else np.nan
            row["prevalence"] = float(y.mean())
        else:
            row.update(accuracy=np.nan, accuracy_lo=np.nan, accuracy_hi=np.nan, sensitivity=np.nan,
                       specificity=np.nan, prevalence=np.nan)
        rows.append(row)
        for a in attribute_drift(reference["frame"], cur_frame.loc[idx], attributes, kinds):
            attr_rows.append({"window": w, **a})
        if by_site and by_site in cur_frame:
            for site, sub in cur_frame.loc[idx].groupby(by_site):
                rows_s = sub.index.to_numpy()
                q_s = calibrate(current["p"][rows_s])
                c_s = current["p"][rows_s] >= threshold
                lab = sub["label"].notna().to_numpy()
                entry = {"window": w, "site": str(site), "n": len(sub), "labelled": int(lab.sum()),
                         "estimated_accuracy": float(np.where(c_s, q_s, 1 - q_s).mean()), "accuracy": np.nan,
                         "accuracy_lo": np.nan, "accuracy_hi": np.nan}
                if lab.any():
                    right = int(((sub["label"][lab].astype(int).to_numpy() == 1) == c_s[lab]).sum())
                    entry["accuracy"] = right / int(lab.sum())
                    entry["accuracy_lo"], entry["accuracy_hi"] = wilson(right, int(lab.sum()), 1.96)
                group_rows.append(entry)
                if len(sub) < 10:
                    continue
                ref_rows = np.flatnonzero(reference["frame"][by_site].astype(str).to_numpy() == str(site))
                base = ref_emb[ref_rows] if len(ref_rows) >= 10 else ref_sample
                stat_s, p_s = mmd_test(base[:reference_cap], current["embedding"][sub.index.to_numpy()],
                                       sigma=sigma, n_perm=n_perm, seed=seed)
                scanners = set(sub["scanner"].astype(str)) if "scanner" in sub else set()
                known = set(reference["frame"]["scanner"].astype(str)) if "scanner" in reference["frame"] else set()
                site_rows.append({"window": w, "site": str(site), "n": len(sub), "mmd": stat_s, "mmd_p": p_s,
                                  "new_scanner": ", ".join(sorted(scanners - known))})
    table = pd.DataFrame(rows)
    table["mmd_p_adj"] = holm(table["mmd_p"])
    table["alert"] = table["mmd_p_adj"] < alpha
    sites = pd.DataFrame(site_rows, columns=["window", "site", "n", "mmd", "mmd_p", "new_scanner"])
    sites["mmd_p_adj"] = holm(sites["mmd_p"]) if len(sites) else []
    sites["alert"] = sites["mmd_p_adj"] < alpha
    attrs = pd.DataFrame(attr_rows, columns=["window", "attribute", "test", "statistic", "p", "new"])
    attrs["p_adj"] = holm(attrs["p"]) if len(attrs) else []
    return DriftReport(windows=table, attributes=attrs, sites=_first_windows(sites) if len(sites) else sites,
                       alpha=alpha, threshold=threshold, groups=pd.DataFrame(group_rows))


def drivers(reference_embedding: np.ndarray, embedding: np.ndarray, case_ids: Sequence[str], *, k: int = 10,
            neighbours: int = 5) -> pd.DataFrame:
    """The ``k`` current cases farthest from the reference: mean distance to their ``neighbours`` nearest reference
    embeddings (the most out-of-distribution ones, to open in Case review)."""
    d = np.sqrt(_sq_dists(embedding.astype(np.float64), reference_embedding.astype(np.float64)))
    score = np.sort(d, axis=1)[:, :neighbours].mean(1)
    order = np.argsort(-score)[:k]
    return pd.DataFrame({"case_id": np.asarray(case_ids)[order], "distance": score[order]})


def drift_figure(report: DriftReport):
    """Three panels over the windows: the feature-space drift test (Holm-adjusted p, log scale, with the alert
    level), the outputs (mean probability, share called positive), and performance (measured with its 95% interval
    where labels exist; the calibrated confidence-based estimate, dashed, everywhere)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    w = report.windows
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("Input drift in the model's feature space (MMD, Holm-adjusted p)",
                                        "Outputs", "Performance: measured (labels) and estimated (no labels)"))
    p = np.clip(w["mmd_p_adj"].to_numpy(float), 1e-12, 1)
    fig.add_trace(go.Scatter(x=w["window"], y=p, mode="lines+markers", name="MMD p (adjusted)",
                             marker=dict(color=np.where(w["alert"], "#c53030", "#2b6cb0"), size=9)), 1, 1)
    fig.add_hline(y=report.alpha, line=dict(dash="dash", color="#c53030"), row=1, col=1,
                  annotation_text=f"alert p < {report.alpha:g}")
    fig.update_yaxes(type="log", title_text="p", row=1, col=1)
    fig.add_trace(go.Scatter(x=w["window"], y=w["mean_probability"], mode="lines+markers",
                             name="mean probability"), 2, 1)
    fig.add_trace(go.Scatter(x=w["window"], y=w["called_positive"], mode="lines+markers",
                             name=f"called positive (p ≥ {report.threshold:.2f})"), 2, 1)
    fig.add_trace(go.Scatter(x=w["window"], y=w["referred"], mode="lines+markers", line=dict(dash="dot"),
                             name="referred (entropy above the reference's 90th percentile)"), 2, 1)
    measured = w[w["labelled"] > 0]
    fig.add_trace(go.Scatter(x=measured["window"], y=measured["accuracy"], mode="lines+markers",
                             name="accuracy, measured", error_y=dict(
                                 type="data", symmetric=False, array=measured["accuracy_hi"] - measured["accuracy"],
                                 arrayminus=measured["accuracy"] - measured["accuracy_lo"])), 3, 1)
    fig.add_trace(go.Scatter(x=w["window"], y=w["estimated_accuracy"], mode="lines+markers",
                             line=dict(dash="dash"), name="accuracy, estimated (calibrated confidence)"), 3, 1)
    fig.update_yaxes(range=[0, 1.02], row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], row=3, col=1)
    fig.update_layout(height=760, margin=dict(l=40, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.08))
    return fig
