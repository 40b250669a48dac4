"""Calibration: reliability tables and recalibration (temperature scaling, Guo et al., ICML 2017; Platt scaling for
binary models) fitted and checked on held-out PATIENTS.

For a binary model the scaled logit also gets an offset (``sigmoid(z / T + b)``, i.e. Platt scaling), since a
single temperature cannot move a shifted decision boundary; multi-class models get the temperature alone.

:func:`recalibrate` splits the held-out cases by patient (the cohort's cluster column; each image its own patient
where none is known), fits on one half of the patients and checks on the other: the scaling is applied only when it
is shown to improve calibration there (the log loss's reduction, patients resampled, has a one-sided 97.5% lower
bound above 0, and the ECE is not worse); otherwise it is refused with the figures ("recalibration made calibration worse on held-out patients:
ECE 0.039 → 0.101; not applied"). Fitting on half the images lets a patient's other images judge the fit, which
flatters it; refitting whatever the check says makes a calibrated model worse about half the time
(``benchmarks/calibration/operating_point.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from data_adapters.errors import InvalidInputError

EPS = 1e-7


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-width bins: ``n``, mean predicted probability and observed frequency per non-empty bin."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": index, "p": p, "y": y}).groupby("bin").agg(
        n=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")).reset_index()
    frame["bin_low"] = frame["bin"] / bins
    return frame


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    table = reliability_table(y, p, bins)
    return float((table["n"] * (table["observed"] - table["predicted"]).abs()).sum() / max(len(y), 1))


@dataclass(frozen=True)
class TemperatureScaling:
    temperature: float
    bias: float
    task: str

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """``(N, K)`` probabilities → calibrated ``(N, K)``."""
        probs = np.clip(np.asarray(probs, float), EPS, 1 - EPS)
        if self.task == "multiclass":
            z = np.log(probs) / self.temperature
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        z = np.log(probs / (1 - probs)) / self.temperature + self.bias
        scaled = 1 / (1 + np.exp(-z))
        if self.task == "binary":  # columns are (1 - q, q): scale q, keep them complementary
            return np.column_stack([1 - scaled[:, 1], scaled[:, 1]])
        return scaled


def fit_temperature(probs: np.ndarray, labels: np.ndarray, task: str) -> TemperatureScaling:
    """Minimise the negative log-likelihood of held-out ``labels`` (class indices) under scaled ``probs``."""
    probs = np.clip(np.asarray(probs, float), EPS, 1 - EPS)
    labels = np.asarray(labels, int)
    if len(labels) < 10 or len(np.unique(labels)) < 2:
        raise InvalidInputError(f"temperature scaling needs at least 10 held-out cases of two classes or more; "
                                f"got {len(labels)} cases of {len(np.unique(labels))} class(es)")
    if task == "multilabel":
        raise InvalidInputError("temperature scaling is fitted for binary and multi-class models only")

    def nll(params: np.ndarray) -> float:
        scaler = TemperatureScaling(float(np.exp(params[0])), float(params[1]) if task == "binary" else 0.0, task)
        q = np.clip(scaler.apply(probs), EPS, 1 - EPS)
        picked = q[np.arange(len(labels)), labels]
        return float(-np.log(picked).mean())

    result = minimize(nll, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    return TemperatureScaling(float(np.exp(result.x[0])), float(result.x[1]) if task == "binary" else 0.0, task)


def held_out_split(case_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded half of the cases (boolean mask) to fit on; the other half measures the effect."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(case_ids), bool)
    mask[rng.permutation(len(case_ids))[: len(case_ids) // 2]] = True
    return mask


def patient_split(clusters: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded half of the patients (boolean mask over cases: every image of a patient on the same side)."""
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    inverse = inverse.reshape(-1)
    n = int(inverse.max()) + 1 if len(inverse) else 0
    chosen = np.zeros(n, bool)
    chosen[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return chosen[inverse]


def _log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each case's negative log-likelihood of its outcome ``y`` (0/1) under probability ``p``."""
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


@dataclass(frozen=True)
class Recalibration:
    """A recalibration fitted on ``fit_patients`` held-out patients and checked on ``check_patients`` others.

    ``ece_before``/``ece_after``: on the check patients; ``improvement_lo``: the one-sided 97.5% lower bound of the
    log loss's reduction there (patients resampled); ``applied``: whether the scaling is used (shown to improve);
    ``message``: what a page or report says."""

    method: str
    scaler: TemperatureScaling | None
    fit_cases: int
    fit_patients: int
    check_cases: int
    check_patients: int
    ece_before: float
    ece_after: float
    improvement_lo: float
    applied: bool
    message: str
    #: which of the cases given were the check patients' (for the reliability diagram)
    check: np.ndarray | None = field(default=None, repr=False, compare=False)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """The probabilities to use: scaled when :attr:`applied`, else as they were."""
        return self.scaler.apply(probs) if self.applied and self.scaler is not None else np.asarray(probs, float)


#: the fewest patients on each side of the split for the check to mean anything
MIN_PATIENTS = 10


def recalibrate(probs: np.ndarray, labels: np.ndarray, task: str, *, clusters: np.ndarray | None = None,
                class_index: int | None = None, seed: int = 0, n_boot: int = 1000, bins: int = 10,
                always: bool = False) -> Recalibration:
    """Fit temperature (multi-class) or Platt (binary) scaling on half the held-out patients, check it on the other
    half, and apply it only when it is shown to improve there: the log loss's reduction has a one-sided 97.5%
    patient-bootstrap lower bound above 0, and the ECE is not worse. ``probs`` ``(N, K)`` of held-out cases,
    ``labels`` their class indices, ``clusters`` the patient of each (None: each case its own); ``class_index``: the calibration judged (:func:`calibration_target`; None the
    top class). ``always``: apply whatever the check says (the earlier design, kept to measure it)."""
    from evaluation.inference import cluster_weights

    probs = np.asarray(probs, float)
    labels = np.asarray(labels, int)
    clusters = np.arange(len(labels)) if clusters is None else np.asarray(clusters)
    method = "temperature" if task == "multiclass" else "Platt (temperature and offset)"
    fit = patient_split(clusters, seed)
    n_fit, n_check = len(np.unique(clusters[fit])), len(np.unique(clusters[~fit]))
    if min(n_fit, n_check) < MIN_PATIENTS:
        why = (f"recalibration not judged: {n_fit + n_check} held-out patients, at least {2 * MIN_PATIENTS} are "
               "needed to fit on half and check on the other half")
        return Recalibration(method, None, int(fit.sum()), n_fit, int((~fit).sum()), n_check, np.nan, np.nan,
                             np.nan, False, why, check=~fit)
    scaler = fit_temperature(probs[fit], labels[fit], task)
    before, y = calibration_target(probs[~fit], labels[~fit], class_index)
    after, _ = calibration_target(scaler.apply(probs[~fit]), labels[~fit], class_index)
    y = y.astype(float)
    ece_before, ece_after = expected_calibration_error(y, before, bins), expected_calibration_error(y, after, bins)
    # the decision: the log loss (proper, and far less noisy than the ECE at a few hundred cases) shown to improve
    # on the check patients (one-sided 97.5% lower bound of the paired difference, patients resampled), and the
    # ECE not worse there
    loss = _log_loss(y, before) - _log_loss(y, after)
    w = cluster_weights(clusters[~fit], n_boot, np.random.default_rng(seed + 1)).astype(float)
    lo = float(np.quantile((w @ loss) / w.sum(axis=1), 0.025))
    shown = lo > 0 and ece_after <= ece_before
    applied = bool(always or shown)
    figures = f"ECE {ece_before:.3f} → {ece_after:.3f}"
    where = f"on {n_check} held-out patients ({int((~fit).sum())} cases) not used to fit it"
    if shown:
        message = f"recalibration ({method}) improved calibration {where}: {figures}; applied"
    elif applied:
        message = f"recalibration ({method}) applied without its check ({figures} {where})"
    elif ece_after > ece_before:
        message = f"recalibration made calibration worse on held-out patients: {figures}; not applied"
    else:
        message = (f"recalibration did not improve calibration beyond its noise on held-out patients: {figures}, "
                   f"log loss lower by {loss.mean():+.4f} (97.5% lower bound {lo:+.4f}); not applied")
    return Recalibration(method, scaler, int(fit.sum()), n_fit, int((~fit).sum()), n_check, ece_before,
                         ece_after, lo, applied, message, check=~fit)


def calibration_target(probs: np.ndarray, labels: np.ndarray, class_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """What a reliability diagram compares: with ``class_index``, that class's probability against "the label is
    that class"; with None (a multi-class model's top-class view), the top class's probability against "the top
    class is the label" (top-label calibration)."""
    probs = np.asarray(probs, float)
    labels = np.asarray(labels)
    if class_index is None:
        return probs.max(axis=1), probs.argmax(axis=1) == labels
    return probs[:, class_index], labels == class_index


def ece_expected_by_chance(p: np.ndarray, bins: int = 10, n_sims: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would read on these scores: the expectation of
    :func:`expected_calibration_error` (``bins`` equal-width bins) when each outcome is drawn ``y ~ Bernoulli(p)``,
    at this ``n``. ECE is an absolute value of noise, so it is above 0 even for a perfect model, most at small ``n``
    (about 0.07 at n = 200 for scores spread over 0..1); a board reads an ECE beside this figure ("0.071; 0.06
    expected by chance"). ``n_sims`` seeded simulations up to 50,000 scores; beyond, each bin's sum of
    ``y - p`` is normal to within 1/√n and the expectation is ``Σ_b sqrt(2 V_b / π) / n`` (``V_b = Σ p(1 - p)``)."""
    p = np.clip(np.asarray(p, np.float64).ravel(), 0.0, 1.0)
    n = len(p)
    if n == 0:
        return float("nan")
    index = np.minimum((p * bins).astype(int), bins - 1)
    if n > 50_000:
        v = np.bincount(index, weights=p * (1 - p), minlength=bins)
        return float(np.sqrt(2 * v / np.pi).sum() / n)
    rng = np.random.default_rng(seed)
    onehot = np.zeros((n, bins))
    onehot[np.arange(n), index] = 1.0
    total, done = 0.0, 0
    chunk = max(1, min(n_sims, 2_000_000 // n))
    while done < n_sims:
        b = min(chunk, n_sims - done)
        residual = (rng.random((b, n)) < p).astype(np.float64) - p
        total += np.abs(residual @ onehot).sum()
        done += b
    return float(total / n_sims / n)


@dataclass(frozen=True)
class MiscalibrationTest:
    """"Miscalibration shown" by consistency resampling (Bröcker & Smith 2007): the ECE a perfectly calibrated model
    would read on these very scores, drawn ``n_sims`` times with ``y* ~ Bernoulli(p)``, is ECE's null distribution;
    ``p_value`` is ``(1 + #{ECE* ≥ ECE}) / (n_sims + 1)``, valid at any ``n`` when the outcomes are independent given
    the scores. ``chance``: the null's mean (what :func:`ece_expected_by_chance` estimates)."""

    ece: float
    chance: float
    p_value: float
    n_sims: int
    n: int

    def shown(self, alpha: float = 0.05) -> bool:
        return bool(self.p_value < alpha)

    def words(self, alpha: float = 0.05) -> str:
        if not np.isfinite(self.p_value):
            return "miscalibration not judged (no cases)"
        verb = "shown" if self.shown(alpha) else "not shown"
        return (f"miscalibration {verb} (p = {self.p_value:.3f}, consistency resampling, {self.n_sims} draws of the "
                f"outcomes a perfectly calibrated model would give)")


#: a bin with at least this many cases draws its sum of ``y* - p`` as a normal (error under 1/sqrt(count))
NORMAL_BIN_FROM = 2000
#: outcome draws of the consistency test (its smallest p-value is 1 / (MISCALIBRATION_SIMS + 1))
MISCALIBRATION_SIMS = 999


def miscalibration_test(y: np.ndarray, p: np.ndarray, bins: int = 10, n_sims: int = MISCALIBRATION_SIMS,
                        seed: int = 0, *, clusters: np.ndarray | None = None) -> MiscalibrationTest:
    """Whether the ECE (``bins`` equal-width bins, :func:`expected_calibration_error`) of outcomes ``y`` (0/1)
    under scores ``p`` exceeds what a perfectly calibrated model reads at this ``n``: ECE's null distribution by
    consistency resampling (``y* ~ Bernoulli(p)``, the scores held as they are), the p-value with the +1
    correction. ECE is an absolute value of noise, so it is biased upward at small ``n`` and its resampled interval
    does not cover a calibrated model's 0 (``benchmarks/calibration/ece.py`` measures it); the test is calibrated
    at every ``n``.

    Without ``clusters`` cases are independent given their scores; a bin of ``NORMAL_BIN_FROM`` cases or more then
    draws its residual sum as a normal with the Bernoulli variance, so the cost is bounded at any ``n``. With
    ``clusters`` (the patient of each image) a patient's images are drawn together, ``y*_ij = [u_i < p_ij]`` with one
    uniform ``u_i`` per patient: each image still ``Bernoulli(p_ij)``, the patient's images as alike as they can be
    (where they share a label, as they do when the label is the patient's). Treating them as independent there calls
    a calibrated model miscalibrated in about half of all cohorts (``ece.py``); draws are then exact, at most
    ``5e7 / n`` of them (and at least 199)."""
    y = np.asarray(y, np.float64).ravel()
    p = np.clip(np.asarray(p, np.float64).ravel(), 0.0, 1.0)
    if len(y) != len(p) or (clusters is not None and len(clusters) != len(p)):
        got = f"{len(y)} outcomes for {len(p)} scores"
        raise InvalidInputError(f"miscalibration test: {got}" + (f" and {len(clusters)} patients"
                                                                  if clusters is not None else ""))
    n = len(p)
    if n == 0:
        return MiscalibrationTest(np.nan, np.nan, np.nan, n_sims, 0)
    index = np.minimum((p * bins).astype(int), bins - 1)
    observed = float(np.abs(np.bincount(index, weights=y - p, minlength=bins)).sum() / n)
    count = np.bincount(index, minlength=bins)
    rng = np.random.default_rng(seed)
    if clusters is not None:
        # one uniform per patient (patients in sorted order of their keys, so row order does not matter)
        _, patient = np.unique(np.asarray(clusters), return_inverse=True)
        patient = patient.reshape(-1)
        n_sims = int(max(199, min(n_sims, 50_000_000 // n)))
        onehot = np.zeros((n, bins))
        onehot[np.arange(n), index] = 1.0
        null = np.empty(n_sims)
        chunk = max(1, 2_000_000 // n)
        for start in range(0, n_sims, chunk):
            stop = min(start + chunk, n_sims)
            u = rng.random((stop - start, int(patient.max()) + 1))[:, patient]
            null[start:stop] = np.abs(((u < p) - p) @ onehot).sum(axis=1) / n
    else:
        # the null depends on the scores alone: drawn over them sorted, so the answer does not depend on row order
        p = np.sort(p, kind="stable")
        index = np.minimum((p * bins).astype(int), bins - 1)
        sums = np.zeros((n_sims, bins))
        big = count >= NORMAL_BIN_FROM
        if big.any():
            v = np.bincount(index, weights=p * (1 - p), minlength=bins)[big]
            sums[:, big] = rng.normal(size=(n_sims, int(big.sum()))) * np.sqrt(v)
        exact = ~big[index]
        if exact.any():
            pe, ie = p[exact], index[exact]
            onehot = np.zeros((len(pe), bins))
            onehot[np.arange(len(pe)), ie] = 1.0
            chunk = max(1, 2_000_000 // len(pe))
            for start in range(0, n_sims, chunk):
                stop = min(start + chunk, n_sims)
                sums[start:stop] += ((rng.random((stop - start, len(pe))) < pe) - pe) @ onehot
        null = np.abs(sums).sum(axis=1) / n
    exceed = int((null >= observed - 1e-12).sum())
    return MiscalibrationTest(observed, float(null.mean()), (1 + exceed) / (n_sims + 1), n_sims, n)


def miscalibration_holm(table: pd.DataFrame) -> pd.DataFrame:
    """A subgroup table's ``ece_p_holm``: the groups' miscalibration p-values (``ece_p``) Holm-adjusted over the
    groups (not ``overall``, which is its own test), so "shown" in any group controls the family-wise error."""
    from evaluation.inference import holm

    out = table.copy()
    groups = (out["group"] != "overall").to_numpy()
    adjusted = np.full(len(out), np.nan)
    adjusted[groups] = holm(out.loc[groups, "ece_p"].to_numpy(float))
    adjusted[~groups] = out.loc[~groups, "ece_p"].to_numpy(float)
    out["ece_p_holm"] = adjusted
    return out


#: the level under which the miscalibration test's p (Holm over the groups) says miscalibration is shown
MISCALIBRATION_ALPHA = 0.05


def miscalibration_verdict(p: float) -> str:
    """The miscalibration test's verdict in words: ``"shown"`` where ``p`` is under :data:`MISCALIBRATION_ALPHA`,
    ``"not shown"`` otherwise (the one place every view takes it from)."""
    return "shown" if p < MISCALIBRATION_ALPHA else "not shown"


def ece_text(ece: float, chance: float, p: float = float("nan")) -> str:
    """One printable ECE cell: ``0.149 (0.060 by chance; miscalibration shown, p 0.003)`` (ECE beside what a
    perfectly calibrated model reads at that n, with no interval, as ECE is biased at small n, and the test's
    verdict); without a finite ``p``, ``0.149 (0.060 by chance)``; ``""`` without a finite ECE."""
    if not np.isfinite(ece):
        return ""
    if not np.isfinite(p):
        return f"{ece:.3f} ({chance:.3f} by chance)"
    return f"{ece:.3f} ({chance:.3f} by chance; miscalibration {miscalibration_verdict(p)}, p {p:.3f})"


def check_reliability(result: Recalibration, probs: np.ndarray, labels: np.ndarray, class_index: int | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a recalibration's reliability diagram draws, on its check patients only (never the fit half):
    ``(outcome, before, after)`` from :func:`calibration_target` of the probabilities as they were and as the
    fitted scaler makes them (whether or not it is applied). ``probs``/``labels``: the cases given to
    :func:`recalibrate`."""
    if result.scaler is None or result.check is None:
        raise InvalidInputError(f"no reliability to draw: {result.message}")
    probs, labels = np.asarray(probs, float)[result.check], np.asarray(labels, int)[result.check]
    before, y = calibration_target(probs, labels, class_index)
    after, _ = calibration_target(result.scaler.apply(probs), labels, class_index)
    return y, before, after
