"""After deployment: does the incoming stream still look like the cohort the model was validated on, and does it
still perform?

Per time window of the current cohort, against the reference cohort:

- **input drift without labels**: a two-sample test in the model's own embedding space: maximum mean discrepancy
  (Gretton et al., JMLR 2012) with a Gaussian kernel (bandwidth: the median pairwise distance of the reference), its
  p-value from permutations, ``(exceed + 1) / (B + 1)`` (Phipson & Smyth 2010), never below what ``B`` permutations
  can show. p-values are Holm-adjusted across windows (one family: "any window drifted" keeps its false-alarm rate)
  and across windows × sites (a second family); a test beyond every permutation is rerun with enough permutations
  that it could cross the alert level after the adjustment (``B + 1 ≥ 2 m / α`` for a family of ``m``, within a
  compute budget; the table says how many were used);
- **metadata drift**: chi-square for categorical attributes (site, scanner, sex), Kolmogorov-Smirnov for numeric
  ones (age), Holm-adjusted across attributes and windows (a third family);
- **intensity**: per-image mean, spread and percentiles, their shift in reference standard deviations;
- **output drift**: the mean probability of the class judged (or of the top class), the share called, the outputs'
  uncertainty (entropy over all classes) and the share a referral rule would send to a reader (entropy above the
  reference's 90th percentile: about 10% while nothing has shifted);
- **performance, by the model's own outcome**: a multi-class model by its top class against the label (or one class
  one-vs-rest, on choice), a binary model at its operating threshold. Where labels have arrived, accuracy with its
  Wilson interval (and sensitivity and specificity for one class, each with its own; clustered by patient where
  patients are known); everywhere, the performance the model's
  probabilities expect once calibrated on the labelled reference (confidence-based estimation, as NannyML's CBPE:
  it assumes the shift changes which images arrive, not how labels follow from what the model sees, so a shift the
  model cannot feel as uncertainty is missed), shown apart from the measured one.

Board views (:meth:`DriftReport.for_board`) hide any site with fewer than ``k`` cases in a window
(``evaluation.suppression``), and no banner names a site whose rows are hidden.
"""
from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from data_adapters.tables import CLUSTER
from evaluation.inference import holm, permutation_p, wilson, wilson_clustered
from evaluation.referral import REFER_FRACTION, referral_cutoff, referred
from evaluation.suppression import Suppression, suppression

__all__ = ["mmd_test", "holm", "permutation_p", "attribute_drift", "window_report", "DriftReport", "drivers",
           "outcome_view", "permutations_for", "bandwidth", "drift_figure"]

#: flops one permutation test may spend on extra permutations (the kernel products): about a few seconds
PERMUTATION_BUDGET = 2e10
#: the most permutations a rerun draws
MAX_PERMUTATIONS = 100_000


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
             seed: int = 0, chunk: int = 256) -> tuple[float, float]:
    """``(MMD², permutation p-value)`` of samples ``x`` ``(n, d)`` and ``y`` ``(m, d)`` (the biased V-statistic; the
    permutation test is exact whichever statistic it permutes). Permutations are evaluated ``chunk`` at a time: with
    ``a`` the ±1/n, ±1/m weights of a labelling, MMD² = aᵀKa. The p-value is :func:`permutation_p`: never below
    ``1 / (n_perm + 1)``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    z = np.concatenate([x, y])
    sigma = sigma or bandwidth(x)
    k = np.exp(-_sq_dists(z, z) / (2 * sigma * sigma))
    n, m = len(x), len(y)
    a0 = np.where(np.arange(n + m) < n, 1.0 / n, -1.0 / m)
    observed = float(a0 @ k @ a0)
    rng = np.random.default_rng(seed)
    exceed, done = 0, 0
    while done < n_perm:
        c = min(chunk, n_perm - done)
        a = rng.permuted(np.tile(a0, (c, 1)), axis=1)
        values = np.einsum("pi,pi->p", a @ k, a)
        exceed += int((values >= observed - 1e-12).sum())
        done += c
    return observed, permutation_p(exceed, n_perm)


def permutations_for(family: int, alpha: float, size: int, *, at_least: int = 500) -> int:
    """Permutations enough that a test beyond every one of them can cross ``alpha`` after Holm over ``family`` tests
    (``B + 1 ≥ 2 family / alpha``), capped by :data:`PERMUTATION_BUDGET` for ``size`` pooled cases and by
    :data:`MAX_PERMUTATIONS`."""
    need = int(np.ceil(2 * max(family, 1) / alpha))
    budget = int(PERMUTATION_BUDGET / max(size, 1) ** 2)
    return int(max(at_least, min(need, budget, MAX_PERMUTATIONS)))


def _refined(x: np.ndarray, y: np.ndarray, sigma: float, n_perm: int, family: int, alpha: float,
             seed: int) -> tuple[float, float, int]:
    """:func:`mmd_test` with ``n_perm``; a test beyond every permutation is rerun with :func:`permutations_for`
    (a fresh, seeded set: the p-value reported stays valid, as the rerun is a test of its own)."""
    stat, p = mmd_test(x, y, sigma=sigma, n_perm=n_perm, seed=seed)
    if p > 1.0 / (n_perm + 1):
        return stat, p, n_perm
    more = permutations_for(family, alpha, len(x) + len(y), at_least=n_perm)
    if more <= n_perm:
        return stat, p, n_perm
    return (*mmd_test(x, y, sigma=sigma, n_perm=more, seed=seed + 1), more)


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


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


@dataclass(frozen=True)
class DriftReport:
    """``windows``: one row per window; ``attributes``: per window and attribute; ``sites``: each site's first window
    that differs from the reference (``site_windows``: every window and site tested); ``groups``: performance per
    window and site; ``alerts``: sentences for what crossed ``alpha`` (Holm-adjusted).

    ``view``: how a case's outcome is judged (``top class against the label`` or one class at ``threshold``);
    ``operating_point``: the threshold's provenance in words; ``warnings``: what the reader must know about them
    (e.g. a threshold fitted without a validation split); ``hidden``: the board's suppression (None: nothing hidden)."""

    windows: pd.DataFrame
    attributes: pd.DataFrame
    sites: pd.DataFrame
    alpha: float
    threshold: float
    #: per window and site: cases, labelled cases, accuracy with its Wilson 95% interval, the estimate
    groups: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    site_windows: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    view: str = ""
    class_index: int | None = None
    operating_point: str = ""
    warnings: tuple[str, ...] = ()
    hidden: Suppression | None = None

    @property
    def alerts(self) -> list[str]:
        """What crossed the alert level, in words: one sentence for the windows, one per site, one per attribute
        (on a board view, none naming a hidden site)."""
        out = []
        w = self.windows
        hit = w.loc[w["mmd_p_adj"] < self.alpha, "window"].tolist()
        if hit:
            smallest = float(w["mmd_p_adj"].min())
            out.append(f"the images differ from the reference in the model's feature space in {len(hit)} of {len(w)} "
                       f"window(s): {_span(hit)} (Holm-adjusted p {_p_text(smallest)} at the smallest)")
        for row in self.sites.itertuples():
            if row.mmd_p_adj < self.alpha:
                what = f"; a new scanner appears: {row.new_scanner}" if row.new_scanner else ""
                out.append(f"since {row.window}, site {row.site}'s images differ from the reference (p "
                           f"{_p_text(row.mmd_p_adj)}){what}")
        flagged = self.attributes[self.attributes["p_adj"] < self.alpha]
        for attribute, rows in flagged.groupby("attribute", sort=False):
            new = sorted({n for v in rows["new"] if v for n in v.split(", ")})
            out.append(f"the {attribute} mix differs from the reference ({rows['test'].iloc[0]}) in "
                       f"{_span(rows['window'].tolist())}" + (f"; new: {', '.join(new)}" if new else ""))
        return self.hidden.texts(out) if self.hidden is not None else out

    def for_board(self, k: int, *, site: str = "site") -> DriftReport:
        """The report an ethics board may see: in each window, the sites with fewer than ``k`` cases are hidden
        (``evaluation.suppression``, complementary suppression included) from the per-site tables; a site hidden
        in every window is named nowhere (banners, the attribute mix's new categories)."""
        if self.groups.empty or "site" not in self.groups:
            return dataclasses.replace(self, hidden=Suppression(k=int(k), hidden={}))
        shown = set()
        seen: dict[str, str] = {}
        for w, rows in self.groups.groupby("window", sort=True):
            hide = suppression(dict(zip(rows["site"].astype(str), rows["n"])), k)
            for s in rows["site"].astype(str):
                if hide.shows(s):
                    shown.add((str(w), s))
                else:
                    seen.setdefault(s, hide.hidden[s])
        everywhere = {s: why for s, why in seen.items() if not any(s == b for _, b in shown)}
        hidden = Suppression(k=int(k), hidden=everywhere)

        def keep(frame: pd.DataFrame) -> pd.DataFrame:
            if frame.empty:
                return frame
            pairs = list(zip(frame["window"].astype(str), frame["site"].astype(str)))
            return frame[[p in shown for p in pairs]]

        site_windows = keep(self.site_windows)
        attributes = self.attributes.copy()
        if len(attributes):
            attributes["new"] = [", ".join(n for n in v.split(", ") if n and hidden.shows(n)) if v else ""
                                 for v in attributes["new"]]
        return dataclasses.replace(self, groups=keep(self.groups), site_windows=site_windows,
                                   sites=_first_windows(site_windows) if len(site_windows) else site_windows,
                                   attributes=attributes, hidden=hidden)

    @property
    def note(self) -> str:
        """What a board view hides, in words (empty when nothing is)."""
        if self.hidden is None:
            return ""
        return (f"In each window, sites with fewer than {self.hidden.k} cases are hidden from the per-site tables "
                "(and, where one alone would be derivable from the window's total, the next smallest too)"
                + (f"; {len(self.hidden.hidden)} site(s) are hidden in every window and named nowhere"
                   if self.hidden.hidden else "") + ".")


def _span(windows: list[str]) -> str:
    """``2026-05 to 2026-12`` for a run, else the windows listed."""
    windows = sorted(windows)
    return windows[0] if len(windows) == 1 else f"{windows[0]} to {windows[-1]}" + (
        f" ({len(windows)} windows)" if len(windows) > 2 else "")



def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of ``(N, K)`` probabilities (a ``(N,)`` vector: the binary entropy)."""
    probs = np.asarray(probs, float)
    if probs.ndim == 1:
        probs = np.column_stack([1 - probs, probs])
    q = np.clip(probs, 1e-12, 1.0)
    return -(probs * np.log(q)).sum(axis=1)


def _probabilities(part: dict) -> np.ndarray:
    """``probabilities`` ``(N, K)``, or a binary model's ``p`` ``(N,)`` as ``(1 - p, p)``."""
    if "probabilities" in part:
        return np.asarray(part["probabilities"], float)
    p = np.asarray(part["p"], float)
    return np.column_stack([1 - p, p])


@dataclass(frozen=True)
class _Outcome:
    """Each case's outcome under one view: ``score`` the probability the view calibrates (the class's, or the top
    class's), ``called`` (one class: called that class; top class: the predicted class), ``confidence``."""

    score: np.ndarray
    called: np.ndarray
    entropy: np.ndarray

    def correct(self, labels: np.ndarray, class_index: int | None) -> np.ndarray:
        if class_index is None:
            return self.called == labels
        return self.called == (labels == class_index)


def outcome_view(probabilities: np.ndarray, class_index: int | None, threshold: float | None) -> _Outcome:
    """How the model's outputs are judged: ``class_index`` None, each case's top class (``called`` its index,
    ``score`` its probability); else that class one-vs-rest, called at ``threshold``."""
    probs = np.asarray(probabilities, float)
    if class_index is None:
        return _Outcome(score=probs.max(axis=1), called=probs.argmax(axis=1), entropy=_entropy(probs))
    p = probs[:, class_index]
    return _Outcome(score=p, called=p >= threshold, entropy=_entropy(probs))


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(labelled mask, class index or -1)`` from a frame's ``label`` column (class indices, as the cohort loader
    maps the model's class names)."""
    labels = frame["label"]
    has = labels.notna().to_numpy()
    return has, labels.to_numpy(dtype=float, na_value=-1).astype(int)


def calibration_map(reference: dict, class_index: int | None = None, threshold: float | None = None):
    """The view's score → the probability its outcome holds, fitted on the labelled reference (isotonic regression;
    the identity without 20 labelled cases). One class: P(label is the class | its probability); top class:
    P(top class is right | its probability). Confidence-based estimation is only as good as this map: it assumes the
    shift changes which images arrive, not how labels follow from what the model sees."""
    from sklearn.isotonic import IsotonicRegression

    has, labels = _labels(reference["frame"])
    if has.sum() < 20:
        return lambda p: np.asarray(p, float)
    view = outcome_view(_probabilities(reference)[has], class_index, threshold)
    target = view.called == labels[has] if class_index is None else labels[has] == class_index
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(view.score, target.astype(float))
    return lambda p: iso.predict(np.asarray(p, float))


def _performance(view: _Outcome, q: np.ndarray, has: np.ndarray, labels: np.ndarray,
                 class_index: int | None, clusters: np.ndarray | None = None) -> dict:
    """Measured (where labelled) and estimated performance of one set of cases; intervals are Wilson's, at the
    effective sample size where ``clusters`` says which patient each image came from."""
    if class_index is None:
        row = {"estimated_accuracy": float(q.mean()) if len(q) else np.nan}
    else:
        called = view.called.astype(bool)
        row = {"estimated_accuracy": float(np.where(called, q, 1 - q).mean()) if len(q) else np.nan,
               "estimated_sensitivity": float((q * called).sum() / q.sum()) if q.sum() > 0 else np.nan,
               "estimated_specificity": float(((1 - q) * ~called).sum() / (1 - q).sum()) if (1 - q).sum() > 0
               else np.nan}
    row["labelled"] = int(has.sum())
    empty = dict(accuracy=np.nan, accuracy_lo=np.nan, accuracy_hi=np.nan, sensitivity=np.nan,
                 sensitivity_lo=np.nan, sensitivity_hi=np.nan, specificity=np.nan, specificity_lo=np.nan,
                 specificity_hi=np.nan, prevalence=np.nan)
    if not has.any():
        return {**row, **empty}
    y = labels[has]
    right = view.correct(labels, class_index)[has]
    correct = int(right.sum())
    row.update(empty)
    row["accuracy"] = correct / len(y)
    within = clusters[has] if clusters is not None else None
    row["accuracy_lo"], row["accuracy_hi"] = (wilson(correct, len(y)) if within is None
                                              else wilson_clustered(right, within))
    if class_index is not None:
        pos = y == class_index
        c = view.called.astype(bool)[has]
        if pos.any():
            row["sensitivity"] = float(c[pos].mean())
            row["sensitivity_lo"], row["sensitivity_hi"] = (
                wilson(int(c[pos].sum()), int(pos.sum())) if within is None else wilson_clustered(c[pos], within[pos]))
        neg = ~pos
        if neg.any():
            row["specificity"] = float((~c[neg]).mean())
            row["specificity_lo"], row["specificity_hi"] = (
                wilson(int((~c[neg]).sum()), int(neg.sum())) if within is None
                else wilson_clustered(~c[neg], within[neg]))
        row["prevalence"] = float(pos.mean())
    return row


def _first_windows(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep each site's first alerting window only (\"since March\")."""
    alerted = frame[frame["alert"]]
    return alerted.sort_values("window").drop_duplicates("site")


def window_report(reference: dict, current: dict, windows: Sequence[str], *, threshold: float | None = 0.5,
                  class_index: int | None = -1, alpha: float = 0.01, n_perm: int = 500, reference_cap: int = 1000,
                  seed: int = 0, by_site: str | None = "site", attributes: Sequence[str] = (),
                  kinds: dict[str, str] | None = None, operating_point: str = "",
                  warnings: Sequence[str] = ()) -> DriftReport:
    """``reference`` and ``current``: ``frame`` (attributes, ``label`` as class indices), ``embedding`` (N, D),
    ``probabilities`` (N, K) (or a binary model's ``p`` (N,)), ``intensity`` (N, 4); ``windows`` the window of each
    current row.

    ``operating_point``: the threshold's provenance in words and ``warnings`` (e.g. it was fitted without a
    validation split), carried into the report for every view that shows it.

    ``class_index``: None judges each case by its top class against the label (a multi-class model's own outcome);
    an index judges that class one-vs-rest at ``threshold`` (-1: the last class, a binary model's positive one)."""
    kinds = kinds or {}
    ref_probs, cur_probs = _probabilities(reference), _probabilities(current)
    if class_index is not None and class_index < 0:
        class_index = ref_probs.shape[1] + class_index
    if class_index is not None and threshold is None:
        raise ValueError("one class one-vs-rest needs its threshold")
    rng = np.random.default_rng(seed)
    ref_emb = reference["embedding"]
    keep = rng.permutation(len(ref_emb))[:reference_cap]
    ref_sample = ref_emb[keep]
    sigma = bandwidth(ref_sample, seed=seed)
    ref_int = reference["intensity"]
    mu, sd = ref_int.mean(0), ref_int.std(0) + 1e-9
    windows = np.asarray(windows).astype(str)
    calibrate = calibration_map(reference, class_index, threshold)
    # uncertainty from the outputs: the entropy of each case's probabilities; a case is referred when it is above
    # the reference's referral cutoff (evaluation.referral), so a stream like the reference refers about 10%
    refer_cutoff = referral_cutoff(_entropy(ref_probs), REFER_FRACTION)
    view = outcome_view(cur_probs, class_index, threshold)
    q_all = calibrate(view.score)
    has_all, labels_all = _labels(current["frame"])
    clusters = (current["frame"][CLUSTER].to_numpy() if CLUSTER in current["frame"]
                and current["frame"][CLUSTER].notna().all() else None)
    cur_frame = current["frame"].reset_index(drop=True)
    levels = sorted(set(windows))
    site_tests = []  # (window, site, rows) tested for drift, counted first: the family Holm adjusts over
    if by_site and by_site in cur_frame:
        for w in levels:
            idx = np.flatnonzero(windows == w)
            for site, sub in cur_frame.loc[idx].groupby(by_site):
                site_tests.append((w, str(site), sub.index.to_numpy()))
    n_classes = cur_probs.shape[1]
    rows, attr_rows, site_rows, group_rows = [], [], [], []
    for w in levels:
        idx = np.flatnonzero(windows == w)
        stat, p, used = _refined(ref_sample, current["embedding"][idx], sigma, n_perm, len(levels), alpha, seed)
        shift = (current["intensity"][idx].mean(0) - mu) / sd
        called = view.called[idx]
        row = {"window": w, "n": len(idx), "mmd": stat, "mmd_p": p, "permutations": used,
               "mean_probability": float(view.score[idx].mean()),
               "called_positive": float(called.astype(bool).mean()) if class_index is not None else np.nan,
               "entropy": float(view.entropy[idx].mean()),
               "referred": float(referred(view.entropy[idx], cutoff=refer_cutoff).mean()),
               "intensity_shift_sd": float(shift[0]), "noise_shift_sd": float(shift[1])}
        if class_index is None:
            row.update({f"predicted_{k}": float((called == k).mean()) for k in range(n_classes)})
        sub_view = _Outcome(view.score[idx], view.called[idx], view.entropy[idx])
        row.update(_performance(sub_view, q_all[idx], has_all[idx], labels_all[idx], class_index,
                                None if clusters is None else clusters[idx]))
        rows.append(row)
        for a in attribute_drift(reference["frame"], cur_frame.loc[idx], attributes, kinds):
            attr_rows.append({"window": w, **a})
    family = sum(len(r) >= 10 for _, _, r in site_tests)
    for w, site, rows_s in site_tests:
        sub_view = _Outcome(view.score[rows_s], view.called[rows_s], view.entropy[rows_s])
        entry = {"window": w, "site": site, "n": len(rows_s)}
        perf = _performance(sub_view, q_all[rows_s], has_all[rows_s], labels_all[rows_s], class_index,
                            None if clusters is None else clusters[rows_s])
        entry.update({k: perf[k] for k in ("labelled", "estimated_accuracy", "accuracy", "accuracy_lo",
                                           "accuracy_hi")})
        group_rows.append(entry)
        if len(rows_s) < 10:
            continue
        ref_rows = np.flatnonzero(reference["frame"][by_site].astype(str).to_numpy() == site)
        base = ref_emb[ref_rows] if len(ref_rows) >= 10 else ref_sample
        stat_s, p_s, used = _refined(base[:reference_cap], current["embedding"][rows_s], sigma, n_perm, family,
                                     alpha, seed)
        sub = cur_frame.loc[rows_s]
        scanners = set(sub["scanner"].astype(str)) if "scanner" in sub else set()
        known = set(reference["frame"]["scanner"].astype(str)) if "scanner" in reference["frame"] else set()
        site_rows.append({"window": w, "site": site, "n": len(rows_s), "mmd": stat_s, "mmd_p": p_s,
                          "permutations": used, "new_scanner": ", ".join(sorted(scanners - known))})
    table = pd.DataFrame(rows)
    table["mmd_p_adj"] = holm(table["mmd_p"])
    table["alert"] = table["mmd_p_adj"] < alpha
    sites = pd.DataFrame(site_rows, columns=["window", "site", "n", "mmd", "mmd_p", "permutations", "new_scanner"])
    sites["mmd_p_adj"] = holm(sites["mmd_p"]) if len(sites) else []
    sites["alert"] = sites["mmd_p_adj"] < alpha
    attrs = pd.DataFrame(attr_rows, columns=["window", "attribute", "test", "statistic", "p", "new"])
    attrs["p_adj"] = holm(attrs["p"]) if len(attrs) else []
    described = "top class against the label" if class_index is None else f"class {class_index} at {threshold:.3f}"
    return DriftReport(windows=table, attributes=attrs, sites=_first_windows(sites) if len(sites) else sites,
                       alpha=alpha, threshold=float("nan") if threshold is None or class_index is None
                       else float(threshold), groups=pd.DataFrame(group_rows), site_windows=sites, view=described,
                       class_index=class_index, operating_point=operating_point, warnings=tuple(warnings))
def drivers(reference_embedding: np.ndarray, embedding: np.ndarray, case_ids: Sequence[str], *, k: int = 10,
            neighbours: int = 5) -> pd.DataFrame:
    """The ``k`` current cases farthest from the reference: mean distance to their ``neighbours`` nearest reference
    embeddings (the most out-of-distribution ones, to open in Case review)."""
    d = np.sqrt(_sq_dists(embedding.astype(np.float64), reference_embedding.astype(np.float64)))
    score = np.sort(d, axis=1)[:, :neighbours].mean(1)
    order = np.argsort(-score)[:k]
    return pd.DataFrame({"case_id": np.asarray(case_ids)[order], "distance": score[order]})


def drift_figure(report: DriftReport, class_names: Sequence[str] | None = None):
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
    top = report.class_index is None
    fig.add_trace(go.Scatter(x=w["window"], y=w["mean_probability"], mode="lines+markers",
                             name="mean top-class probability" if top else "mean probability"), 2, 1)
    if top:
        for column in [c for c in w.columns if c.startswith("predicted_")]:
            name = class_names[int(column.split("_")[1])] if class_names else column.split("_")[1]
            fig.add_trace(go.Scatter(x=w["window"], y=w[column], mode="lines", name=f"predicted {name}"), 2, 1)
    else:
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


#: the attributes whose mix a monitor reports per window, where both cohorts have them
DRIFT_ATTRIBUTES = ("site", "scanner", "sex", "age")


def drift_attributes(reference_schema, current_schema) -> list[str]:
    """The :data:`DRIFT_ATTRIBUTES` both cohorts carry (attribute schemas: name → kind), in that order."""
    return [a for a in DRIFT_ATTRIBUTES if a in current_schema and a in reference_schema]


__all__ += ["DRIFT_ATTRIBUTES", "drift_attributes"]
