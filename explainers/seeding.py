"""Per-case randomness: a result depends on the case's content and the seed, never on its batch.

Randomised methods (SmoothGrad, GradientSHAP, MC dropout, test-time augmentation) draw their noise, baselines,
masks and transforms from a seed made of the caller's seed and a digest of the case's own input, so that the
same case gives the same answer alone, in a batch of four, or at another position (the determinism contract in
DESIGN.md), and a cached map is what a fresh run would give.
"""
from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch

__all__ = ["case_seed", "seeded"]


def case_seed(x: np.ndarray | torch.Tensor, seed: int, *salt: int) -> int:
    """A 63-bit seed from one case's input ``x`` (any shape; float32 bytes), ``seed`` and ``salt`` (e.g. a draw
    index)."""
    array = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
    h = hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    h.update(np.asarray([seed, *salt], np.int64).tobytes())
    return int.from_bytes(h.digest()[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Draws inside are reproducible and leave the global random state as it was."""
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()  # Captum's GradientShap draws baselines with numpy's global generator
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % (2 ** 32))
            yield
    finally:
        np.random.set_state(numpy_state)
