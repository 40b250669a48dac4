"""Can I believe this map? A registry of checks, each with its paper, its direction and a stated band.

Every check gives one value per case, computed in batches on the model's device and deterministic for a seed
(noise and random orders are seeded by each case's own content, so a case gets the same value alone or in any
batch). Bands are ``passes`` / ``concern`` / ``fails`` at the thresholds each check states, with the reason:

- ``randomisation`` (model-parameter randomisation; Adebayo et al., NeurIPS 2018): every layer of the model is
  re-initialised (seeded) and the map recomputed; the value is the Spearman rank correlation of |map| before and
  after. A map that survives the loss of everything the model learnt does not explain the model. Low is good:
  passes ≤ 0.3, fails ≥ 0.6 (maps of unrelated models correlate near 0; an input-only "explanation" gives 1).
  This is the plain MPRT at the end of the cascade; its known weakness (it can be passed by noise) is why it is read
  together with faithfulness. Where the map on the randomised model is zero or constant everywhere (Grad-CAM's ReLU
  often leaves nothing on a random network) a rank correlation with it is *undefined*, not 0: that case *could not
  be judged*, never a pass.
- ``deletion`` (pixel flipping; Samek et al., IEEE TNNLS 2017; the deletion curve of Petsiuk et al., BMVC 2018):
  pixels are replaced by the image's mean in ten steps of 10%, most relevant (|map|) first, and the class
  probability is followed; the value is how much faster it falls than with a random order (difference of the two
  curves' areas, over the starting probability). High is good: passes ≥ 0.1, fails ≤ 0 (no better than random).
- ``pointing_game`` (Zhang et al., IJCV 2018), ``relevance_mass`` and ``relevance_rank`` (Arras et al., Information
  Fusion 2022), where a ground-truth mask exists: does the peak of |map| fall in the mask; the share of |map| in
  the mask; the share of the top-|mask| pixels that lie in it. Judged against chance, the mask's share of the image
  (what a random map scores): passes at ≥ 3× chance, fails at ≤ 1.5× (pointing game: a hit passes, a miss fails).
  Over cases the pointing game is a hit rate, always shown with its 95% interval, and read against a stated
  clinical reference as well as chance (:data:`POINTING_REFERENCE`; ``evaluation.explanation_quality``). A case
  without a finding has nothing to point at: not judged. These match Quantus 0.6 (abs=True, normalise=False) on the
  same inputs (``tests/explainers/test_trust.py``).
- ``stability`` (max-sensitivity; Yeh et al., NeurIPS 2019): the largest relative change of the map, ‖m(x+ε) −
  m(x)‖ / ‖m(x)‖, over 4 draws (2 for methods costing ≥ 20 forward passes, e.g. integrated gradients) of uniform
  noise of 2% of the image's intensity range. Low is good: passes ≤ 0.3, fails ≥ 0.8 (a map that changes by most of itself under invisible noise cannot be read pixel by pixel).

Every entry names where its band comes from (``band_source``): most thresholds are Glassbox's own reading of the
paper (the papers define the measures, not pass marks), and say so; the pointing game's clinical reference is a
published radiologist benchmark (``reference``, ``reference_source``). ``undefined`` says when a case's value does
not exist, which is then *could not judge* with that reason, never a pass.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from data_adapters.records import ModelHandle
from data_adapters.registry import Registry
from explainers.inference import probabilities_of
from explainers.seeding import case_seed

__all__ = ["TRUST_CHECKS", "TrustCheck", "CheckInputs", "band", "map_problem", "randomised", "COULD_NOT_JUDGE",
           "UNDEFINED", "POINTING_REFERENCE", "mass", "pointing", "rank", "STABILITY_DRAWS"]

#: a verdict over cases that cannot be reached (every value undefined, too few judged): never a pass
COULD_NOT_JUDGE = "could not judge"
#: the band of one case whose value is undefined (its reason is on the check's entry and the case's problem)
UNDEFINED = "n/a"

#: recomputes maps ``(N, C', *spatial)`` for images ``(N, C, *spatial)`` with a given model
MapFunction = Callable[[ModelHandle, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CheckInputs:
    """What a check sees: the model, the images on its grid ``(N, C, *spatial)``, their maps ``(N, C', *spatial)``,
    the class explained, ground-truth masks ``(N, *spatial)`` where known (else None per case), a way to recompute
    maps, and the seed."""

    handle: ModelHandle
    images: np.ndarray
    maps: np.ndarray
    target: int
    masks: list[np.ndarray | None]
    recompute: MapFunction
    seed: int = 0
    #: noise draws for stability (fewer for costly methods, where the maximum over draws is then a lower bound)
    stability_draws: int = 4


@dataclass(frozen=True)
class TrustCheck:
    name: str
    title: str
    citation: str
    higher_is_better: bool
    passes: float
    fails: float
    meaning: str
    needs_mask: bool = False
    relative_to_chance: bool = False
    compute: Callable[[CheckInputs], np.ndarray] | None = None
    #: where the pass / fail thresholds come from, in words (a paper's figure, or Glassbox's own choice, said so)
    band_source: str = ""
    #: when one case's value is undefined (then "could not judge" for it, never a pass), in words
    undefined: str = ""
    #: over cases, a stated clinical reference the value is read against as well as chance (pointing game)
    reference: float | None = None
    reference_source: str = ""
    #: over cases, passes / fails as multiples of chance (the pointing game's hit rate; per case it is hit or miss)
    chance_passes: float | None = None
    chance_fails: float | None = None
    #: how far below the reference a hit rate may be and still be shown "not worse" (passes needs the 95% lower
    #: bound above ``reference - reference_margin``; fails: the upper bound below it)
    reference_margin: float = 0.0


TRUST_CHECKS: Registry[TrustCheck] = Registry("trust check")


def _magnitude(maps: np.ndarray) -> np.ndarray:
    """|map| summed over channels, flattened: ``(N, P)``."""
    return np.abs(np.asarray(maps, np.float64)).sum(axis=1).reshape(len(maps), -1)


def map_problem(array: np.ndarray) -> str | None:
    """Why a map cannot be read, or None: zero everywhere, or one value everywhere."""
    if not np.any(array):
        return "zero everywhere"
    if np.ptp(array) == 0:
        return "the same value everywhere"
    if not np.isfinite(array).all():
        return "not finite"
    return None


def band(check: TrustCheck, value: float, chance: float | None = None) -> str:
    """``passes`` / ``concern`` / ``fails`` (:data:`UNDEFINED` when undefined) at the check's stated thresholds for
    one case; localisation values are judged as multiples of ``chance``."""
    if value is None or not np.isfinite(value):
        return UNDEFINED
    if check.relative_to_chance:
        if chance is None or not np.isfinite(chance) or chance <= 0:
            return UNDEFINED
        value = value / chance
    if check.higher_is_better:
        return "passes" if value >= check.passes else "fails" if value <= check.fails else "concern"
    return "passes" if value <= check.passes else "fails" if value >= check.fails else "concern"


def _reinitialise_tensors(module: torch.nn.Module) -> int:
    """Re-initialise every parameter and normalisation statistic of ``module`` by name and shape, as PyTorch's own
    layers initialise themselves (a weight of 2 or more dimensions: Kaiming-uniform with ``a=sqrt(5)``, as
    ``Conv``/``Linear``; its bias: uniform in ``±1/sqrt(fan_in)``; a 1-D weight (normalisation scale): 1, its bias:
    0; running mean 0, running variance 1). For a TorchScript archive, whose layers keep no ``reset_parameters``.
    Returns how many tensors were re-initialised."""
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    done = 0
    with torch.no_grad():
        for name, p in params.items():
            owner, _, leaf = name.rpartition(".")
            sibling = params.get(f"{owner}.weight" if owner else "weight")
            if p.dim() >= 2:
                torch.nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            elif leaf == "bias" and sibling is not None and sibling.dim() >= 2:
                fan_in = sibling[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                torch.nn.init.uniform_(p, -bound, bound)
            elif leaf == "bias":
                p.zero_()
            else:
                p.fill_(1.0)
            done += 1
        for name, b in buffers.items():
            leaf = name.rpartition(".")[2]
            if leaf == "running_mean":
                b.zero_()
            elif leaf == "running_var":
                b.fill_(1.0)
            elif leaf == "num_batches_tracked":
                b.zero_()
            else:
                continue
            done += 1
    return done


def randomised(handle: ModelHandle, seed: int = 0) -> ModelHandle | None:
    """A copy of ``handle`` with every layer re-initialised (seeded): what the model learnt is gone. A TorchScript
    archive is re-initialised tensor by tensor (:func:`_reinitialise_tensors`); ``None`` when the model has nothing
    to re-initialise (then the randomisation check could not judge)."""
    with torch.no_grad():  # a TorchScript archive copied under autograd gets non-leaf parameters
        module = copy.deepcopy(handle.module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if not handle.hookable:  # a TorchScript archive: its layers' reset methods are not scripted
            if not _reinitialise_tensors(module):
                return None
        else:
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return dataclasses.replace(handle, module=module, weights_hash=f"{handle.weights_hash}-randomised-{seed}")


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rank correlation per row; NaN where either map is constant (zero everywhere included): a rank correlation
    with a flat map is undefined, not 0. A randomised model whose Grad-CAM vanishes tells nothing about whether the
    map depends on the weights (any map vanishes there), so the case could not be judged."""
    out = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(a, b)):
        if np.ptp(x) > 0 and np.ptp(y) > 0 and np.isfinite(x).all() and np.isfinite(y).all():
            out[i] = spearmanr(x, y).statistic
    return out


def _randomisation(inputs: CheckInputs) -> np.ndarray:
    model = randomised(inputs.handle, inputs.seed)
    if model is None:  # nothing to re-initialise: could not judge, never a pass or a fail
        return np.full(len(inputs.images), np.nan)
    shuffled = inputs.recompute(model, inputs.images)
    return _spearman_rows(_magnitude(inputs.maps), _magnitude(shuffled))


DELETION_STEPS = 10


def deletion_curves(handle: ModelHandle, images: np.ndarray, order: np.ndarray, target: int) -> np.ndarray:
    """Class probability as pixels are replaced by the image's mean in ``order`` (``(N, P)`` pixel indices, most
    relevant first), at 0, 10%, …, 100% removed: ``(N, 11)``."""
    n = len(images)
    flat = images.reshape(n, images.shape[1], -1)
    means = flat.mean(axis=2, keepdims=True)
    pixels = flat.shape[2]
    steps = []
    for k in range(DELETION_STEPS + 1):
        removed = int(round(pixels * k / DELETION_STEPS))
        altered = flat.copy()
        for i in range(n):
            idx = order[i, :removed]
            altered[i][:, idx] = means[i]
        steps.append(altered.reshape(images.shape))
    stacked = np.concatenate(steps)  # (11 N, C, *spatial): one batched pass over every step
    return probabilities_of(handle, stacked)[:, target].reshape(DELETION_STEPS + 1, n).T


def _deletion(inputs: CheckInputs) -> np.ndarray:
    relevance = _magnitude(inputs.maps)
    n, p = relevance.shape
    random_order = np.stack([np.random.default_rng(case_seed(inputs.images[i], inputs.seed, 1)).permutation(p)
                             for i in range(n)])
    # most relevant first; ties broken by the case's random order, so a flat map is no better than random
    ranks = np.argsort(random_order, axis=1)
    map_order = np.lexsort((ranks, -relevance), axis=1) if n else random_order
    curves = deletion_curves(inputs.handle, np.concatenate([inputs.images, inputs.images]),
                             np.concatenate([map_order, random_order]), inputs.target)
    by_map, by_random = curves[:n], curves[n:]
    start = np.maximum(by_map[:, 0], 1e-6)
    return (np.trapezoid(by_random, axis=1) - np.trapezoid(by_map, axis=1)) / DELETION_STEPS / start


def _masked(inputs: CheckInputs, fn: Callable[[np.ndarray, np.ndarray], float]) -> np.ndarray:
    relevance = _magnitude(inputs.maps)
    out = np.full(len(relevance), np.nan)
    for i, mask in enumerate(inputs.masks):
        if mask is not None and mask.any():
            out[i] = fn(relevance[i], mask.reshape(-1).astype(bool))
    return out


def pointing(a: np.ndarray, s: np.ndarray) -> float:
    return float(np.any(s & (a == a.max())))


def mass(a: np.ndarray, s: np.ndarray) -> float:
    total = a.sum()
    return float(a[s].sum() / total) if total > 0 else np.nan


def rank(a: np.ndarray, s: np.ndarray) -> float:
    k = int(s.sum())
    top = np.argsort(-a, kind="stable")[:k]
    return float(s[top].sum() / k)


STABILITY_DRAWS = 4
STABILITY_RADIUS = 0.02


def _stability(inputs: CheckInputs) -> np.ndarray:
    images = inputs.images
    span = (images.reshape(len(images), -1).max(axis=1) - images.reshape(len(images), -1).min(axis=1))
    base = _magnitude(inputs.maps)
    worst = np.zeros(len(images))
    for d in range(inputs.stability_draws):
        noisy = np.stack([img + np.random.default_rng(case_seed(img, inputs.seed, 2, d)).uniform(
            -1, 1, img.shape).astype(np.float32) * STABILITY_RADIUS * max(float(s), 1e-6)
            for img, s in zip(images, span)])
        moved = _magnitude(inputs.recompute(inputs.handle, noisy))
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.linalg.norm(moved - base, axis=1) / np.linalg.norm(base, axis=1)
        worst = np.maximum(worst, np.where(np.isfinite(change), change, np.nan))
    return worst


#: the clinical reference the pointing game's hit rate is read against (over cases): the radiologist human benchmark
#: on CheXlocalize (Saporta et al. 2022). See the entry's ``reference_source`` for the figure's provenance.
POINTING_REFERENCE = 0.801
POINTING_REFERENCE_SOURCE = (
    "human benchmark of Saporta et al., 'Benchmarking saliency methods for chest X-ray interpretation', Nature "
    "Machine Intelligence (2022), doi:10.1038/s42256-022-00536-x: three board-certified radiologists' "
    "most-representative points on the CheXlocalize test set (668 chest X-rays, 10 pathologies), hit rate 80.1% "
    "averaged over pathologies, as quoted by the BenchmarkCards summary of arXiv:2509.18015 "
    "(github.com/SokolAnn/BenchmarkCards, chexlocalize.md). The paper's own per-pathology table was not available "
    "to us, so this is a secondary quotation; it is a chest X-ray "
    "benchmark, so an operator with a reader benchmark for their own task and modality should state that instead. "
    "Saporta et al. found every saliency method they tested significantly below it.")
CHANCE_BANDS = "3x / 1.5x chance: Glassbox's multiples of what a random map scores (the finding's share of the image)"

for _check in (
    TrustCheck("randomisation", "Randomisation", "Adebayo et al., NeurIPS 2018", False, 0.3, 0.6,
               "how much of the map survives when the model's weights are replaced by random ones (rank correlation; "
               "low: the map depends on what the model learnt)", compute=_randomisation,
               band_source="0.3 / 0.6: Glassbox's thresholds (the paper shows maps should change, without a pass "
                           "mark); maps of unrelated models correlate near 0, an input-only map gives 1",
               undefined="the map on the randomised model is zero or constant everywhere, so a rank correlation with "
                         "it is undefined (not 0); or the model has no weights to re-initialise"),
    TrustCheck("deletion", "Faithfulness (deletion)", "Samek et al., IEEE TNNLS 2017", True, 0.1, 0.0,
               "how much faster the class probability falls when the map's most relevant pixels are removed first "
               "than in a random order (0: no better than random)", compute=_deletion,
               band_source="0.1 / 0: Glassbox's thresholds; 0 is the random-order baseline the check subtracts",
               undefined="the map is zero or constant everywhere, so it gives no order to delete in"),
    TrustCheck("pointing_game", "Pointing game", "Zhang et al., IJCV 2018", True, 1.0, 0.0,
               "whether the map's peak lies inside the ground-truth finding (over cases: the hit rate, with its "
               "interval, against chance and against radiologists)", needs_mask=True,
               compute=lambda i: _masked(i, pointing),
               band_source=f"per case a hit passes, a miss fails; over cases {CHANCE_BANDS}, and against the "
                           f"clinical reference {POINTING_REFERENCE:.3f}: passes when the hit rate's 95% lower bound "
                           "is above the reference minus 0.1 (shown not worse by more than 0.1, a margin of "
                           "Glassbox's choosing) and ≥ 3x chance; fails when its upper bound is below that, or the "
                           "hit rate is ≤ 1.5x chance; otherwise a concern (not shown either way)",
               undefined="the case has no ground-truth finding (mask missing or empty) to point at",
               reference=POINTING_REFERENCE, reference_source=POINTING_REFERENCE_SOURCE, chance_passes=3.0,
               chance_fails=1.5, reference_margin=0.1),
    TrustCheck("relevance_mass", "Relevance mass", "Arras et al., Information Fusion 2022", True, 3.0, 1.5,
               "the share of the map inside the finding, as a multiple of the finding's share of the image",
               needs_mask=True, relative_to_chance=True, compute=lambda i: _masked(i, mass),
               band_source=CHANCE_BANDS + "; no published clinical reference for this measure (Saporta et al. "
                                          "2022 benchmark hit rate and mIoU, not relevance mass)",
               undefined="the case has no ground-truth finding (mask missing or empty), or the map is zero"),
    TrustCheck("relevance_rank", "Relevance rank", "Arras et al., Information Fusion 2022", True, 3.0, 1.5,
               "the share of the map's top pixels (as many as the finding has) that lie inside it, as a multiple of "
               "chance", needs_mask=True, relative_to_chance=True, compute=lambda i: _masked(i, rank),
               band_source=CHANCE_BANDS + "; no published clinical reference for this measure",
               undefined="the case has no ground-truth finding (mask missing or empty) to rank against"),
    TrustCheck("stability", "Stability", "Yeh et al., NeurIPS 2019", False, 0.3, 0.8,
               "the largest relative change of the map under invisible input noise (max-sensitivity; low: stable)",
               compute=_stability,
               band_source="0.3 / 0.8: Glassbox's thresholds (the paper defines the measure without a pass mark)",
               undefined="the map is zero everywhere, so a change relative to it is undefined"),
):
    TRUST_CHECKS.register(_check, _check.name)


def chance_of(mask: np.ndarray | None) -> float | None:
    """What a random map scores on a localisation check: the mask's share of the image."""
    return float(mask.mean()) if mask is not None and mask.any() else None


def applicable_checks(checks=None, *, masks_known: bool) -> list[str]:
    """The checks to run (``checks``, default every registered one), less those that need a finding's mask when no
    case has one."""
    names = list(checks or TRUST_CHECKS.names())
    return [n for n in names if masks_known or not TRUST_CHECKS.get(n).needs_mask]


def stability_draws(relative_cost: float) -> int:
    """Noisy re-explanations per case for the stability check: :data:`STABILITY_DRAWS`, or 2 for a method 20 times
    as costly as a gradient or more."""
    return STABILITY_DRAWS if relative_cost < 20 else 2


def check_rows(inputs: CheckInputs, case_ids, method: str, names, progress=None) -> list[dict]:
    """Per case and check: the value (NaN where the map itself is unreadable, :func:`map_problem`), chance
    (localisation checks, from each case's mask), band and the map's problem."""
    problems = [map_problem(m) for m in inputs.maps]
    rows = []
    for k, name in enumerate(names):
        check = TRUST_CHECKS.get(name)
        values = check.compute(inputs)
        for i, case_id in enumerate(case_ids):
            value = np.nan if problems[i] else float(values[i])
            chance = chance_of(inputs.masks[i]) if check.needs_mask else None
            rows.append({"case_id": case_id, "method": method, "check": name, "value": value,
                         "chance": chance, "band": band(check, value, chance), "problem": problems[i] or ""})
        if progress:
            progress(k + 1, len(names))
    return rows


__all__ += ["applicable_checks", "check_rows", "stability_draws"]
