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


class PretendGpu:
    """Any adapter on a pretend GPU that holds `budget` numbers of batch per pass: a batch whose
    tensors hold more (padded, as memory holds them) raises the real `torch.OutOfMemoryError`
    after the forward has run, as the toy's does. Everything else is the adapter's own."""

    def __init__(self, adapter, budget: int | None = None):
        self.adapter = adapter
        self.budget = budget

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def compute_loss(self, model, batch):
        loss = self.adapter.compute_loss(model, batch)
        held = batch_numbers(batch)
        if self.budget is not None and held > self.budget:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {held} numbers; the pretend GPU holds {self.budget}"
            )
        return loss


def batch_numbers(batch) -> int:
    """The numbers a batch's tensors hold (a dict of tensors, as every family's collate makes)."""
    return sum(v.numel() for v in batch.values() if torch.is_tensor(v))
