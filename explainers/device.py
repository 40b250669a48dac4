"""Where work runs and in what batch sizes: CUDA when present, else CPU; back off on out-of-memory."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from data_adapters.errors import ExplainerError

__all__ = ["CPU_BATCH", "best_device", "module_device", "batch_size_for", "map_batches"]

T = TypeVar("T")
Progress = Callable[[int, int], None]

#: on the CPU bigger batches stop paying off early; on a GPU this is only the starting cap
CPU_BATCH = 32
GPU_BATCH_CAP = 1024


def best_device() -> torch.device:
    """CUDA when present, in full float32: TF32 (PyTorch's default for cuDNN convolutions) rounds inputs to 10
    mantissa bits, which moved demo probabilities by up to 7e-5 between batch compositions on an H100 and put
    predictions 1e-5 away from the CPU's; a review tool's numbers must not depend on the batch a case fell in.
    cuDNN's deterministic algorithms too: with the default ones, integrated gradients of one case differed by 5e-5
    (relative to the map's peak) between two identical runs on an H100; with these, 1e-8."""
    if torch.cuda.is_available():
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        return torch.device("cuda")
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def batch_size_for(device: torch.device, bytes_per_item: int, cap: int = GPU_BATCH_CAP) -> int:
    """Items per batch: a fixed size on the CPU; on CUDA, what fits in half the free memory."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, int(free * 0.5) // max(1, bytes_per_item)))


def map_batches(fn: Callable[[slice], list[T]], n: int, batch_size: int,
                progress: Progress | None = None) -> list[T]:
    """``fn`` over consecutive slices of ``range(n)``; halves the batch on out-of-memory and retries."""
    out: list[T] = []
    i = 0
    size = max(1, batch_size)
    while i < n:
        try:
            out.extend(fn(slice(i, min(n, i + size))))
        except torch.OutOfMemoryError as e:
            if size == 1:
                raise ExplainerError("out of memory with a batch of one; use a smaller model or input") from e
            size = max(1, size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        i = min(n, i + size)
        if progress:
            progress(i, n)
    return out
