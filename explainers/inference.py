"""Class scores and probabilities for any task (binary, multi-class, multi-label), batched on the device."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from data_adapters.cohort import load_image_batch
from data_adapters.preprocessing import prepare_batch
from data_adapters.records import Case, ModelHandle, Prediction
from explainers.device import batch_size_for, map_batches, module_device

__all__ = ["ClassScores", "probabilities", "predict_cases", "probabilities_of", "explained_class"]

Progress = Callable[[int, int], None]


class ClassScores(torch.nn.Module):
    """Wraps a model so that output column ``k`` is the score (logit) of class ``k`` for every task.

    A binary model's single logit ``z`` becomes ``(-z, z)``: sigmoid of each is that class's probability,
    and attributing class 0 attributes "not positive". Multi-class scores are logits (softmax),
    multi-label scores are per-class logits (sigmoid).
    """

    def __init__(self, handle: ModelHandle) -> None:
        super().__init__()
        self.model = handle.module
        self.task = handle.task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        if self.task == "binary":
            z = z.reshape(z.shape[0], 1)
            return torch.cat([-z, z], dim=1)
        return z


def probabilities(task: str, scores: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` class scores → ``(B, K)`` probabilities."""
    return torch.softmax(scores, dim=1) if task == "multiclass" else torch.sigmoid(scores)


def predict_cases(handle: ModelHandle, cases: Sequence[Case], *, progress: Progress | None = None) -> list[Prediction]:
    """Per-case probabilities; images are decoded a batch at a time so memory stays flat."""
    device = module_device(handle.module)
    size = batch_size_for(device, bytes_per_item=int(np.prod(handle.preprocessing.input_shape)) * 4 * 64)
    scorer = ClassScores(handle)

    def run(s: slice) -> list[Prediction]:
        batch = cases[s]
        with torch.inference_mode():
            x = prepare_batch(handle.preprocessing, load_image_batch(batch, handle.preprocessing), device)
            p = probabilities(handle.task, scorer(x)).float().cpu().numpy()
        return [Prediction(case_id=c.case_id, probabilities=tuple(map(float, row))) for c, row in zip(batch, p)]

    return map_batches(run, len(cases), size, progress)


def probabilities_of(handle: ModelHandle, images: np.ndarray, *, batch: int = 64) -> np.ndarray:
    """``(N, K)`` probabilities for images as read ``(N, C, *spatial)`` (preprocessed here), in batches."""
    device = module_device(handle.module)
    scorer = ClassScores(handle)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = prepare_batch(handle.preprocessing, images[start:start + batch], device)
            out.append(probabilities(handle.task, scorer(x)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, handle.n_classes), np.float32)


def explained_class(handle: ModelHandle, prediction: Prediction) -> int:
    """The class a map explains by default: what the model said about the case, i.e. its top class for a model
    judged by its top class (single-label, more than two classes), else the positive (last) class (binary; a
    multi-label model's last label)."""
    if handle.judged_by_top_class:
        return int(np.argmax(prediction.probabilities))
    return handle.n_classes - 1
