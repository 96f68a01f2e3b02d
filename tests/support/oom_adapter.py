"""The toy model (toy_adapter.py) on a pretend GPU that holds VOICETUNE_TOY_OOM_FRAMES padded mel
frames per pass: a bigger batch raises the real `torch.OutOfMemoryError`, as CUDA's allocator
does, after the forward has run (its random draws made, its activations alive), which is where a
real out-of-memory strikes. For testing out-of-memory recovery (voicetune.train.oom) on a CPU."""

from __future__ import annotations

import os

import torch

from support.toy_adapter import ToyAdapter


class MemoryBudgetToyAdapter(ToyAdapter):
    name = "toy-memory-budget"

    def __init__(self, config=None):
        super().__init__(config)
        self.budget = int(os.environ.get("VOICETUNE_TOY_OOM_FRAMES", "0")) or None

    def compute_loss(self, model, batch):
        loss = super().compute_loss(model, batch)
        frames = batch["mel"].shape[0] * batch["mel"].shape[1]  # padded: what memory holds
        if self.budget is not None and model.training and frames > self.budget:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {frames} frames; the pretend GPU holds {self.budget}"
            )
        return loss


def create(config=None) -> MemoryBudgetToyAdapter:
    return MemoryBudgetToyAdapter(config)
