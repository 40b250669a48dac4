"""Explanation trust: the bands ``glassbox trust``, the Explanation quality page and the board report print,
simulated with the product's own functions (``explainers.trust`` checks, ``evaluation.explanation_quality``
summaries) under a known truth.

- *A map that vanishes on the randomised model* (Grad-CAM's ReLU often leaves nothing on a random network): the
  randomisation check must never pass (could not judge). 10 cases of a small linear model per simulation.
- *Maps unrelated to the model* (uniform noise, redrawn on every recomputation): randomisation, deletion, stability
  and the pointing game run on them; the method must not be called trustworthy.
- *The pointing game's verdict against a known hit rate*: each of ``n`` findings is hit with probability ``h``
  (chance, the finding's share of the image, 0.6% as in the demo). At ``h`` = the clinical reference less its margin
  (0.701) "passes" and "fails" are each a one-sided 2.5% error (nominal 0.05 shown); at ``h`` = 0.09 (the demo's
  saliency, 1 of 11) it must not pass; at ``h`` = 0.95 with 30 findings it should pass (power ≥ 0.8).

``claims(..., old=True)`` runs the same simulations against the code before this change (``git show`` of
:data:`OLD_COMMIT`: a flat map correlated as 0, the hit rate judged against chance only).
"""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.calibration import Claim
from data_adapters.records import ModelCard, ModelHandle, Preprocessing

#: the last commit before trust verdicts learnt "could not judge" and the clinical reference
OLD_COMMIT = "e704c9c376a532cfc6aae9294694c073badd8c40"
ROOT = Path(__file__).resolve().parents[2]
SIDE = 8


def _modules(old: bool):
    """``(trust, explanation_quality)``: the product's, or the old commit's loaded from git into private modules."""
    if not old:
        from evaluation import explanation_quality
        from explainers import trust

        return trust, explanation_quality
    if "glassbox_old_trust" not in sys.modules:
        def load(name: str, path: str, replace: tuple[str, str] | None = None):
            source = subprocess.run(["git", "show", f"{OLD_COMMIT}:{path}"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout
            if replace:
                source = source.replace(*replace)
            module = types.ModuleType(name)
            module.__file__ = f"{OLD_COMMIT[:7]}:{path}"
            sys.modules[name] = module
            exec(compile(source, module.__file__, "exec"), module.__dict__)
            return module

        load("glassbox_old_trust", "explainers/trust.py")
        load("glassbox_old_explanation_quality", "evaluation/explanation_quality.py",
             ("from explainers.trust import", "from glassbox_old_trust import"))
    return sys.modules["glassbox_old_trust"], sys.modules["glassbox_old_explanation_quality"]


def _handle(seed: int) -> ModelHandle:
    g = torch.Generator().manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, 2))
    with torch.no_grad():
        module[1].weight.copy_(torch.randn(module[1].weight.shape, generator=g))
    module.eval()
    return ModelHandle(name="sim", version="s", module=module,
                       preprocessing=Preprocessing(in_channels=1, spatial_size=(SIDE, SIDE)),
                       class_names=("negative", "positive"), task="multiclass", weights_hash=f"sim-{seed}",
                       card=ModelCard(), source="benchmarks")


def _frame(trust, name: str, values: np.ndarray, masks: list, problems: list[str] | None = None) -> pd.DataFrame:
    check = trust.TRUST_CHECKS.get(name)
    chances = [trust.chance_of(m) if check.needs_mask else None for m in masks]
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(len(values))], "method": "sim", "check": name,
                         "value": values, "chance": chances,
                         "band": [trust.band(check, float(v), c) for v, c in zip(values, chances)],
                         "problem": problems or [""] * len(values)})


def _vanished(trust, quality, rng, cases: int = 10) -> str:
    handle = _handle(int(rng.integers(2 ** 31)))
    images = rng.random((cases, 1, SIDE, SIDE)).astype(np.float32)
    maps = rng.random((cases, 1, SIDE, SIDE)).astype(np.float32)
    inputs = trust.CheckInputs(handle, images, maps, 1, [None] * cases, lambda h, x: np.zeros_like(x), 0)
    values = trust.TRUST_CHECKS.get("randomisation").compute(inputs)
    return quality.quality_summary(_frame(trust, "randomisation", values, [None] * cases)).iloc[0]["band"]


def _random_maps(trust, quality, rng, cases: int = 10) -> str:
    handle = _handle(int(rng.integers(2 ** 31)))
    images = rng.random((cases, 1, SIDE, SIDE)).astype(np.float32)
    maps = rng.random((cases, 1, SIDE, SIDE)).astype(np.float32)
    masks = []
    for _ in range(cases):
        m = np.zeros((SIDE, SIDE), bool)
        y, x = rng.integers(0, SIDE - 2, 2)
        m[y:y + 2, x:x + 2] = True
        masks.append(m)
    inputs = trust.CheckInputs(handle, images, maps, 1, masks, lambda h, x: rng.random(x.shape).astype(np.float32),
                               0, 2)
    frames = [_frame(trust, name, trust.TRUST_CHECKS.get(name).compute(inputs), masks)
              for name in ("randomisation", "deletion", "pointing_game", "stability")]
    (line,) = quality.in_words(quality.quality_summary(pd.concat(frames, ignore_index=True)))
    return line


def _pointing(trust, quality, rng, hit_rate: float, n: int, chance: float = 0.006) -> str:
    hits = (rng.random(n) < hit_rate).astype(float)
    side = 64
    mask = np.zeros((side, side), bool)
    mask.flat[: max(1, int(round(chance * side * side)))] = True
    frame = _frame(trust, "pointing_game", hits, [mask] * n)
    return quality.quality_summary(frame).iloc[0]["band"]


def _counts(outcomes: list[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in pd.Series(outcomes).value_counts().items())


def claims(sims: int, seed: int = 0, *, old: bool = False) -> list[Claim]:
    """The trust claims at ``sims`` simulations each (``old=True``: the code of :data:`OLD_COMMIT`)."""
    trust, quality = _modules(old)
    rng = np.random.default_rng(seed)
    tag = " (old)" if old else ""
    out = []
    bands = [_vanished(trust, quality, rng) for _ in range(sims)]
    out.append(Claim(f"randomisation passes a map that vanishes on the randomised model{tag}", "false alarm", 0.05,
                     sum(b == "passes" for b in bands), sims,
                     f"10 cases, map zero on the randomised model; outcomes {_counts(bands)}"))
    lines = [_random_maps(trust, quality, rng) for _ in range(sims)]
    out.append(Claim(f"random maps called trustworthy{tag}", "false alarm", 0.05,
                     sum("trustworthy" in ln or "passes every check" in ln for ln in lines), sims,
                     "10 cases, uniform-noise maps redrawn per recomputation; randomisation, deletion, pointing game "
                     "(2x2 finding on 8x8), stability"))
    for h, n, kind, nominal, target, what in (
            (0.701, 30, "false alarm", 0.05, "passes", "at the reference less its margin (0.701)"),
            (0.701, 30, "false alarm", 0.05, "fails", "at the reference less its margin (0.701)"),
            (0.09, 11, "false alarm", 0.05, "passes", "at the demo's 9% (1 of 11)"),
            (0.95, 30, "power", 0.80, "passes", "at 0.95")):
        got = [_pointing(trust, quality, rng, h, n) for _ in range(sims)]
        out.append(Claim(f"pointing game {target} with true hit rate {what}{tag}", kind, nominal,
                         sum(g == target for g in got), sims,
                         f"{n} findings hit w.p. {h}, chance 0.006; outcomes {_counts(got)}"))
    return out


if __name__ == "__main__":
    from benchmarks.calibration import table

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(table(claims(n) + claims(n, old=True)))
