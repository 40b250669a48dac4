"""Integrated gradients (Sundararajan et al., 2017, "Axiomatic attribution for deep networks").

Baseline: the all-zero input in the model's preprocessed space. Under z-scoring each image is normalised by its
own statistics, so zero there is that image's own mean intensity per channel (never the cohort's); under min-max
or range scaling it is the bottom of the scale.
Completeness: the map sums to score(x) - score(baseline), up to the returned convergence delta.

The path integral uses Captum's Gauss-Legendre rule. ``n_steps`` > 0 fixes the number of steps (default 50).
``n_steps=0`` chooses them per case: the rule is run with :data:`LADDER` steps in turn and a case stops at the first
whose completeness error ``|delta|`` is within ``tolerance`` × ``|score(x) - score(baseline)|`` (or 1e-4 absolute),
so easy cases cost few model evaluations and hard ones get more. Each case's steps depend on that case alone (never
its batch); the steps used are recorded with its map. Measured in ``benchmarks/integrated_gradients.py``.
"""
from __future__ import annotations

import torch
from captum.attr import IntegratedGradients as CaptumIG

from explainers.saliency.base import SaliencyMethod

__all__ = ["IntegratedGradients"]

#: the step counts tried in turn when ``n_steps`` is 0
LADDER = (12, 24, 48, 96)
ABSOLUTE_FLOOR = 1e-4


class IntegratedGradients(SaliencyMethod):
    title = "Integrated gradients"
    citation = "Sundararajan, Taly & Yan, ICML 2017"
    defaults = {"n_steps": 50, "tolerance": 0.05}
    relative_cost = 50
    zero_means = ("n_steps",)
    #: Gauss-Legendre nodes for n steps cost an n×n float64 matrix (numpy's leggauss): 1000 steps take 8 MB,
    #: 100000 would take 74.5 GiB
    maxima = {"n_steps": (1000, "the Gauss-Legendre rule for n steps needs n² × 8 bytes: 1000 steps take 8 MB")}

    @classmethod
    def params(cls, given):
        full = super().params(given)
        if full["n_steps"] > 0:
            full.pop("tolerance")  # fixed steps: the tolerance plays no part (nor in the cache key)
        return full

    def compute(self, scorer, x, target, layer, params, internal_batch_size):
        ig = CaptumIG(scorer)
        if params["n_steps"] > 0:
            attr, delta = ig.attribute(x, target=target, n_steps=params["n_steps"], method="gausslegendre",
                                       internal_batch_size=internal_batch_size, return_convergence_delta=True)
            self.steps_used = [params["n_steps"]] * len(x)
            return attr, delta
        with torch.no_grad():
            gap = (scorer(x)[:, target] - scorer(torch.zeros_like(x))[:, target]).abs()
        maps = torch.zeros_like(x)
        deltas = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        steps = [0] * len(x)
        todo = torch.arange(len(x), device=x.device)
        for n in LADDER:
            part = x[todo].detach().requires_grad_(True)
            attr, delta = ig.attribute(part, target=target, n_steps=n, method="gausslegendre",
                                       internal_batch_size=internal_batch_size, return_convergence_delta=True)
            maps[todo] = attr.detach()
            deltas[todo] = delta.detach().to(deltas.dtype)
            for i in todo.tolist():
                steps[i] = n
            ok = (delta.abs() <= params["tolerance"] * gap[todo]) | (delta.abs() <= ABSOLUTE_FLOOR)
            todo = todo[~ok]
            if len(todo) == 0:
                break
        self.steps_used = steps
        return maps, deltas
