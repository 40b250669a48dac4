"""Integrated gradients (Sundararajan et al., 2017, "Axiomatic attribution for deep networks").

Baseline: the all-zero input in the model's preprocessed space (the cohort mean under z-scoring).
Completeness: the map sums to score(x) - score(baseline), up to the returned convergence delta.
"""
from __future__ import annotations

from captum.attr import IntegratedGradients as CaptumIG

from explainers.saliency.base import SaliencyMethod


class IntegratedGradients(SaliencyMethod):
    title = "Integrated gradients"
    citation = "Sundararajan, Taly & Yan, ICML 2017"
    defaults = {"n_steps": 50}
    relative_cost = 50

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        attr, delta = CaptumIG(scorer).attribute(
            x, target=target, n_steps=params["n_steps"], internal_batch_size=internal_batch_size,
            return_convergence_delta=True)
        return attr, delta
