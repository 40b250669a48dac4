"""Calibration: reliability tables and temperature scaling (Guo et al., ICML 2017) fitted on held-out cases.

For a binary model the scaled logit also gets an offset (``sigmoid(z / T + b)``, i.e. Platt scaling), since a
single temperature cannot move a shifted decision boundary; multi-class models get the temperature alone.
"""
from __future__ import annotations

from dataclasses import dataclass

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
