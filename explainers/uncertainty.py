"""Predictive uncertainty per case: Monte Carlo dropout, test-time augmentation, and ensembles.

Each method returns probability samples ``(T, N, K)``; :func:`summarise` turns them into the mean probability,
its standard deviation, the predictive entropy and the mutual information (the epistemic part; Gal &
Ghahramani 2016, "Dropout as a Bayesian approximation"; Depeweg et al. 2018 for the decomposition).
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

Progress = Callable[[int, int], None]
_DROPOUT = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)
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


def mc_dropout(handle: ModelHandle, cases: Sequence[Case], *, samples: int = 16, seed: int = 0,
               progress: Progress | None = None) -> np.ndarray:
    """Dropout kept on at inference (through per-call hooks, so the shared model is never put in train mode)."""
    if isinstance(handle.module, torch.jit.ScriptModule):
        raise ExplainerError("mc_dropout needs layer hooks, which TorchScript models do not allow; use tta or ensemble")
    layers = [m for m in handle.module.modules() if isinstance(m, _DROPOUT) and m.p > 0]
    if not has_dropout(handle):
        raise ExplainerError(f"model {handle.label} has no dropout layer, so Monte Carlo dropout does not apply; "
                             "use tta or ensemble")
    scorer = ClassScores(handle)
    device = module_device(handle.module)

    def hook(module, inputs, _output):
        return torch.nn.functional.dropout(inputs[0], module.p, training=True)

    def per_batch(images: np.ndarray, index: np.ndarray) -> np.ndarray:
        x = prepare_batch(handle.preprocessing, images, device)
        handles = [m.register_forward_hook(hook) for m in layers]
        try:
            out = []
            with torch.inference_mode():
                for t in range(samples):
                    torch.manual_seed(seed * 1_000_003 + int(index[0]) * 131 + t)
                    out.append(probabilities(handle.task, scorer(x)).float().cpu().numpy())
        finally:
            for h in handles:
                h.remove()
        return np.stack(out)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
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
    scorer = ClassScores(handle)
    device = module_device(handle.module)

    def per_batch(images: np.ndarray, index: np.ndarray) -> np.ndarray:
        out = []
        for t in range(samples):
            transform = tta_transform(handle.spatial_dims, seed * 1_000_003 + int(index[0]) * 131 + t)
            augmented = np.stack([np.asarray(transform(image), dtype=np.float32) for image in images])
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
