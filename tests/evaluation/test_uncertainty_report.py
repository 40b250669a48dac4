"""What `glassbox uncertainty` states, computed in evaluation.uncertainty_report: cohort means with their intervals."""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from evaluation.uncertainty_report import mean_with_interval


def test_the_mean_interval_has_the_normal_theory_width_and_widens_for_patients():
    rng = np.random.default_rng(0)
    v = rng.normal(1.0, 1.0, 2000)
    mean, lo, hi = mean_with_interval(v, n_boot=2000)
    half = norm.ppf(0.975) * v.std(ddof=1) / np.sqrt(len(v))
    assert mean == v.mean() and lo < mean < hi
    assert abs((hi - lo) / 2 - half) < 0.1 * half, (lo, hi, half)
    # 100 patients with 20 identical images each: 100 independent values, not 2000
    patients = np.repeat(np.arange(100), 20)
    same = np.repeat(rng.normal(1.0, 1.0, 100), 20)
    _, c_lo, c_hi = mean_with_interval(same, patients, n_boot=2000)
    _, i_lo, i_hi = mean_with_interval(same, n_boot=2000)
    assert (c_hi - c_lo) > 3 * (i_hi - i_lo), "resampling patients widens the interval by about sqrt(20)"
    assert np.isnan(mean_with_interval(np.array([np.nan]))[0])
