"""Where work runs and in what batch sizes: CUDA when present, else CPU; back off on out-of-memory."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from data_adapters.errors import ExplainerError

T = TypeVar("T")
Progress = Callable[[int, int], None]

#: on the CPU bigger batches stop paying off early; on a GPU this is only the starting cap
CPU_BATCH = 32
GPU_BATCH_CAP = 1024


def best_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


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
