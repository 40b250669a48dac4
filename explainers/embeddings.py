"""What the model sees: penultimate-layer embeddings (the input of its last linear layer) and per-image intensity
statistics, computed in one batched pass with the predictions. Drift in this space is drift the model can feel
(CheXstray, Soin et al. 2022, used image latents the same way)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from data_adapters.cohort import load_image_batch
from data_adapters.errors import ExplainerError
from data_adapters.preprocessing import prepare_batch
from data_adapters.records import Case, ModelHandle
from explainers.device import batch_size_for, map_batches, module_device
from explainers.inference import ClassScores, probabilities

__all__ = ["embed_cases"]

Progress = Callable[[int, int], None]
#: intensity statistics per image, on the image as read (before the model's normalisation)
INTENSITY = ("intensity_mean", "intensity_std", "intensity_p01", "intensity_p99")


def embedding_layer(handle: ModelHandle) -> torch.nn.Module:
    """The model's last ``nn.Linear``: its input is the embedding."""
    linears = [m for m in handle.module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ExplainerError(f"model {handle.label} has no linear layer whose input could serve as its embedding")
    return linears[-1]


def embed_cases(handle: ModelHandle, cases: Sequence[Case], *,
                progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(embeddings (N, D) float32, probabilities (N, K), intensity (N, 4))`` for ``cases``, batched on the model's
    device; each case's values depend on that case alone."""
    device = module_device(handle.module)
    layer = embedding_layer(handle)
    scorer = ClassScores(handle)
    size = batch_size_for(device, bytes_per_item=int(np.prod(handle.preprocessing.input_shape)) * 4 * 64)

    def run(s: slice) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        raw = load_image_batch(cases[s])
        grid = load_image_batch(cases[s], handle.preprocessing)
        seen: list[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
        try:
            with torch.inference_mode():
                p = probabilities(handle.task, scorer(prepare_batch(handle.preprocessing, grid, device)))
        finally:
            hook.remove()
        emb = seen[-1].flatten(1).float().cpu().numpy()
        flat = raw.reshape(len(raw), -1)
        stats = np.stack([flat.mean(1), flat.std(1), np.quantile(flat, 0.01, axis=1), np.quantile(flat, 0.99, axis=1)],
                         axis=1)
        return [(emb[i], p[i].float().cpu().numpy(), stats[i]) for i in range(len(emb))]

    rows = map_batches(run, len(cases), size, progress)
    if not rows:
        return np.zeros((0, 0), np.float32), np.zeros((0, handle.n_classes)), np.zeros((0, len(INTENSITY)))
    return (np.stack([r[0] for r in rows]).astype(np.float32), np.stack([r[1] for r in rows]).astype(np.float64),
            np.stack([r[2] for r in rows]).astype(np.float64))
