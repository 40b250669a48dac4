"""Predictive uncertainty per case: Monte Carlo dropout, test-time augmentation, and ensembles.

Each method returns probability samples ``(T, N, K)``; :func:`summarise` turns them into the mean probability,
its standard deviation, the predictive entropy and the mutual information (the epistemic part; Gal &
Ghahramani 2016, "Dropout as a Bayesian approximation"; Depeweg et al. 2018 for the decomposition).

Draws are per case: dropout masks and augmentations are seeded from the case's own content, the seed and the
draw index (:func:`explainers.seeding.case_seed`), so a case's uncertainty does not depend on its batch. Each
dropout layer is sampled with its own semantics (``Dropout2d`` drops whole channels, ``AlphaDropout`` keeps
self-normalisation, ...), exactly as the layer would in train mode.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAffine,
    RandFlip,
    RandScaleIntensity,
    RandShiftIntensity,
)

from data_adapters.cohort import load_image_batch
from data_adapters.errors import ExplainerError, InvalidInputError
from data_adapters.preprocessing import prepare_batch
from data_adapters.records import Case, ModelHandle
from data_adapters.registry import Registry
from explainers.device import batch_size_for, map_batches, module_device
from explainers.inference import ClassScores, probabilities
from explainers.seeding import case_seed

Progress = Callable[[int, int], None]
#: each dropout class and the functional form it applies in train mode (subclasses are matched by isinstance,
#: most specific first)
DROPOUT_FUNCTIONS: tuple[tuple[type[torch.nn.Module], Callable[..., torch.Tensor]], ...] = (
    (torch.nn.FeatureAlphaDropout, torch.nn.functional.feature_alpha_dropout),
    (torch.nn.AlphaDropout, torch.nn.functional.alpha_dropout),
    (torch.nn.Dropout3d, torch.nn.functional.dropout3d),
    (torch.nn.Dropout2d, torch.nn.functional.dropout2d),
    (torch.nn.Dropout1d, torch.nn.functional.dropout1d),
    (torch.nn.Dropout, torch.nn.functional.dropout),
)
_DROPOUT = tuple(cls for cls, _ in DROPOUT_FUNCTIONS)
EPS = 1e-7


def _entropy(p: np.ndarray, task: str) -> np.ndarray:
    """Entropy in nats over the last axis: categorical for multi-class, summed Bernoullis otherwise."""
    p = np.clip(p, EPS, 1 - EPS)
    if task == "multiclass":
        return -(p * np.log(p)).sum(axis=-1)
    if task == "binary":  # classes are (1-q, q): one Bernoulli
        q = p[..., 1]
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))
    return -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(axis=-1)


def summarise(samples: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """``samples`` ``(T, N, K)`` → ``mean``/``std`` ``(N, K)``, ``entropy`` and ``mutual_information`` ``(N,)``."""
    mean = samples.mean(axis=0)
    entropy = _entropy(mean, task)
    expected = _entropy(samples, task).mean(axis=0)
    return {"mean": mean, "std": samples.std(axis=0), "entropy": entropy,
            "mutual_information": np.maximum(entropy - expected, 0.0)}


def _run(handle: ModelHandle, cases: Sequence[Case], per_batch: Callable[[torch.Tensor, np.ndarray], np.ndarray],
         progress: Progress | None) -> np.ndarray:
    device = module_device(handle.module)
    size = batch_size_for(device, bytes_per_item=int(np.prod(handle.preprocessing.input_shape)) * 4 * 64)

    def run(s: slice) -> list[np.ndarray]:
        images = load_image_batch(cases[s], handle.preprocessing)
        return list(np.moveaxis(per_batch(images, np.arange(s.start, s.stop)), 1, 0))  # (T,b,K) -> b × (T,K)

    return np.moveaxis(np.stack(map_batches(run, len(cases), size, progress)), 0, 1)


def has_dropout(handle: ModelHandle) -> bool:
    return any(isinstance(m, _DROPOUT) and m.p > 0 for m in handle.module.modules())


def default_method(handle: ModelHandle) -> str:
    """The uncertainty method every page, command and report uses when none is chosen: Monte Carlo dropout where
    the model has dropout layers that can be hooked (:attr:`ModelHandle.hookable`), else test-time augmentation.
    The one place this default is decided."""
    return "mc_dropout" if handle.hookable and has_dropout(handle) else "tta"


def dropout_function(module: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """The functional form ``f(input, p, training)`` that ``module`` (a dropout layer) applies in train mode."""
    for cls, fn in DROPOUT_FUNCTIONS:
        if isinstance(module, cls):
            return fn
    raise ExplainerError(f"{type(module).__name__} is not a dropout layer Glassbox knows")


def sample_dropout(module: torch.nn.Module, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """``module``'s train-mode dropout on the batch ``x``, each case ``i`` with its own mask drawn under
    ``seeds[i]``: the same draws the module itself makes in train mode after ``torch.manual_seed(seeds[i])``."""
    fn = dropout_function(module)
    out = []
    for i, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            out.append(fn(x[i:i + 1], module.p, True))
    return torch.cat(out)


#: the most draws per case mc_dropout and tta take: each draw is a forward pass of every case, and the draws of a
#: batch are held together (T × N × K), so the time and memory grow with it
MAX_SAMPLES = 1000


def check_samples(samples: int) -> None:
    """Refuse a draw count outside 1..:data:`MAX_SAMPLES`, naming the limit and why."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= MAX_SAMPLES:
        raise InvalidInputError(f"--samples {samples}: draws per case must be a whole number from 1 to {MAX_SAMPLES} "
                                "(each draw is a forward pass of every case; time and memory grow with it)")


def mc_dropout(handle: ModelHandle, cases: Sequence[Case], *, samples: int = 16, seed: int = 0,
               progress: Progress | None = None) -> np.ndarray:
    """Dropout kept on at inference (through per-call hooks, so the shared model is never put in train mode),
    each layer with its own semantics and each case with masks of its own."""
    check_samples(samples)
    if not handle.hookable:
        raise ExplainerError("mc_dropout needs layer hooks, which TorchScript models do not allow; use tta or ensemble")
    layers = [m for m in handle.module.modules() if isinstance(m, _DROPOUT) and m.p > 0]
    if not has_dropout(handle):
        raise ExplainerError(f"model {handle.label} has no dropout layer, so Monte Carlo dropout does not apply; "
                             "use tta or ensemble")
    scorer = ClassScores(handle)
    device = module_device(handle.module)

    def per_batch(images: np.ndarray, _index: np.ndarray) -> np.ndarray:
        x = prepare_batch(handle.preprocessing, images, device)
        base = [case_seed(image, seed) for image in images]
        draw = {"t": 0}

        def hook(module, inputs, _output):
            k = layers.index(module)
            return sample_dropout(module, inputs[0], [(b + 7919 * draw["t"] + 104729 * k) % (1 << 63)
                                                      for b in base])

        handles = [m.register_forward_hook(hook) for m in layers]
        try:
            out = []
            with torch.inference_mode():
                for t in range(samples):
                    draw["t"] = t
                    out.append(probabilities(handle.task, scorer(x)).float().cpu().numpy())
        finally:
            for h in handles:
                h.remove()
        return np.stack(out)

    return _run(handle, cases, per_batch, progress)


def tta_transform(spatial_dims: int, seed: int) -> Compose:
    """Flips, a small affine (±0.1 rad, ±4 px, ±5% scale) and intensity jitter, as MONAI transforms."""
    t = Compose([
        RandFlip(prob=0.5, spatial_axis=spatial_dims - 1),
        RandAffine(prob=1.0, rotate_range=0.1, translate_range=4, scale_range=0.05, padding_mode="border"),
        RandScaleIntensity(factors=0.05, prob=1.0),
        RandShiftIntensity(offsets=0.02, prob=1.0),
    ])
    t.set_random_state(seed=seed)
    return t


def tta(handle: ModelHandle, cases: Sequence[Case], *, samples: int = 8, seed: int = 0,
        progress: Progress | None = None) -> np.ndarray:
    """Test-time augmentation: the same case seen ``samples`` times under random small transforms."""
    check_samples(samples)
    scorer = ClassScores(handle)
    device = module_device(handle.module)

    def per_batch(images: np.ndarray, _index: np.ndarray) -> np.ndarray:
        out = []
        for t in range(samples):  # one transform per case and draw, seeded from the case: batch-invariant
            augmented = np.stack([np.asarray(tta_transform(handle.spatial_dims, case_seed(image, seed, t) % (2 ** 32))(
                image), dtype=np.float32) for image in images])
            with torch.inference_mode():
                x = prepare_batch(handle.preprocessing, augmented, device)
                out.append(probabilities(handle.task, scorer(x)).float().cpu().numpy())
        return np.stack(out)

    return _run(handle, cases, per_batch, progress)


def ensemble(handles: Sequence[ModelHandle], cases: Sequence[Case], *, progress: Progress | None = None) -> np.ndarray:
    """One sample per model version; the versions must agree on classes, task and input."""
    if len(handles) < 2:
        raise InvalidInputError(f"an ensemble needs at least two models, got {len(handles)}")
    first = handles[0]
    for h in handles[1:]:
        geometry = (h.preprocessing.input_shape, h.preprocessing.spacing, h.preprocessing.resize)
        if (h.class_names, h.task, geometry) != (first.class_names, first.task, (
                first.preprocessing.input_shape, first.preprocessing.spacing, first.preprocessing.resize)):
            raise InvalidInputError(f"models {first.label} and {h.label} differ in classes, task or input shape; "
                                    "an ensemble needs them equal")
    scorers = [ClassScores(h) for h in handles]

    def per_batch(images: np.ndarray, index: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for h, scorer in zip(handles, scorers):
                x = prepare_batch(h.preprocessing, images, module_device(h.module))
                out.append(probabilities(h.task, scorer(x)).float().cpu().numpy())
        return np.stack(out)

    return _run(first, cases, per_batch, progress)


#: draws per case when none is asked for
DEFAULT_SAMPLES = {"mc_dropout": 16, "tta": 8}
#: name → ``(handles, cases, samples, seed, progress) -> (T, N, K)``; mc_dropout and tta use the first handle
UNCERTAINTY_METHODS: Registry[Callable[..., np.ndarray]] = Registry("uncertainty method")
UNCERTAINTY_METHODS.register(lambda handles, cases, samples, seed, progress: mc_dropout(
    handles[0], cases, samples=samples, seed=seed, progress=progress), "mc_dropout")
UNCERTAINTY_METHODS.register(lambda handles, cases, samples, seed, progress: tta(
    handles[0], cases, samples=samples, seed=seed, progress=progress), "tta")
UNCERTAINTY_METHODS.register(lambda handles, cases, samples, seed, progress: ensemble(
    handles, cases, progress=progress), "ensemble")
METHODS = tuple(UNCERTAINTY_METHODS.names())
