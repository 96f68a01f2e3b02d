"""Out-of-memory recovery: the forward and backward passes of one update, retried smaller on OOM.

    passes = UpdatePasses(adapter, model, accelerator, optimizer, splits, grad_accum, loop, world, on_change)
    loss_sum = passes.run(micro_batches, step)

An update is `grad_accum` micro-batches. When a pass raises `torch.OutOfMemoryError`, the passes
of this update are undone (gradients dropped, caches emptied, torch's random generators put back
to where the update started) and the same update runs again with every micro-batch split into
twice as many pieces, each piece's loss weighted by its share of the micro-batch's length (frames,
codes), so the effective batch and the gradient's scale stay the same. When a single item does
not fit even alone, items at least that long are left out from then on ("the batch is lowered"):
the only case where accumulation cannot keep the batch. Each change is one log line (through
`on_change`) and is kept in the loop state (`micro_split`, `item_limit`), so checkpoints carry it:
a resume continues with the settings that worked, and the retried update draws the same random
numbers a resumed run draws, so resume stays exact.

With several processes, an OOM on one rank would leave the others waiting in a collective: it is
reported with the flags that fix it instead (recovery is for single-process runs).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from voicetune.errors import VoicetuneError

log = logging.getLogger("voicetune.train")


@dataclass(frozen=True)
class MemoryChange:
    """One recovery: recorded in run.json and said once on the console."""

    step: int
    action: str  # "split" (more micro-batches) or "limit" (long items left out)
    micro_split: int  # pieces each micro-batch now runs as
    item_limit: int | None  # items at least this long are left out (None: all are used)
    error: str  # the first line of the out-of-memory message

    def describe(self) -> str:
        if self.action == "limit":
            what = (
                f"an item of length {self.item_limit} does not fit even alone: items at least that long are left "
                f"out from now on (lower --batch-frames or use shorter clips)"
            )
        else:
            what = f"each batch now runs as {self.micro_split} micro-batches, the effective batch unchanged"
        return f"out of memory at step {self.step} ({self.error}): {what}; recorded in run.json"

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "action": self.action,
            "micro_split": self.micro_split,
            "item_limit": self.item_limit,
            "error": self.error,
        }


class UpdatePasses:
    """Forward and backward passes of one update, split smaller whenever memory runs out."""

    def __init__(
        self,
        adapter,
        model,
        accelerator,
        optimizer,
        splits,
        grad_accum: int,
        loop,
        world: int,
        on_change: Callable[[MemoryChange], None] | None = None,
    ):
        self.adapter, self.model, self.accelerator, self.optimizer = adapter, model, accelerator, optimizer
        self.lengths = splits.train_lengths
        self.dataset = splits.train
        self.grad_accum = grad_accum
        self.loop = loop  # holds micro_split and item_limit, saved in checkpoints
        self.world = world
        self.on_change = on_change or (lambda change: log.warning(change.describe()))
        self._failing: list[int] = []  # the items of the pass running now

    def run(self, micro_batches: list[tuple[Any, list[int]]], step: int) -> float:
        """Accumulate the gradients of `micro_batches` ((batch, item indices) pairs); returns the sum
        of the micro-batches' losses (the caller divides by grad_accum for the update's loss)."""
        rng = _torch_rng()
        while True:
            error = None
            try:
                return self._passes(micro_batches)
            except torch.OutOfMemoryError as err:
                error = str(err).strip().splitlines()[0] if str(err).strip() else "torch.OutOfMemoryError"
            # Outside the except block: its traceback, and the activations its frames hold, are gone.
            self._free()
            _set_torch_rng(rng)
            self._lower(step, error)

    # ---- the passes ------------------------------------------------------------------------

    def _passes(self, micro_batches: list[tuple[Any, list[int]]]) -> float:
        split, limit = self.loop.micro_split, self.loop.item_limit
        plans = [self._pieces(batch, indices, split, limit) for batch, indices in micro_batches]
        used = sum(1 for pieces in plans if pieces)
        if not used:
            raise VoicetuneError(
                f"no item of this update fits in memory (each is at least {limit} long): lower "
                "--batch-frames / --batch-size, train with --lora-rank or --gradient-checkpointing, "
                "or use shorter clips"
            )
        divisor = self.grad_accum if used == len(plans) else used
        last = max(i for i, pieces in enumerate(plans) if pieces)
        loss_sum = 0.0
        for m, pieces in enumerate(plans):
            for p, (batch, items, weight) in enumerate(pieces):
                self._failing = items
                sync = m == last and p == len(pieces) - 1
                with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
                    with self.accelerator.autocast():
                        loss = self.adapter.compute_loss(self.model, batch)
                    if weight is None:  # the micro-batch as it came: the plain path, bit for bit
                        self.accelerator.backward(loss / divisor)
                        loss_sum += loss.detach().float().item()
                    else:
                        self.accelerator.backward(loss * (weight / divisor))
                        loss_sum += loss.detach().float().item() * weight
        if divisor != self.grad_accum:
            loss_sum *= self.grad_accum / divisor
        return loss_sum

    def _pieces(
        self, batch, indices: list[int], split: int, limit: int | None
    ) -> list[tuple[Any, list[int], float | None]]:
        """(batch, items, weight) pieces of one micro-batch; weight None means the batch unchanged."""
        kept = [i for i in indices if limit is None or self.lengths[i] < limit]
        if split <= 1 and len(kept) == len(indices):
            return [(batch, indices, None)]
        if not kept:
            return []
        count = min(split, len(kept))
        size, extra = divmod(len(kept), count)
        groups, start = [], 0
        for g in range(count):
            end = start + size + (1 if g < extra else 0)
            groups.append(kept[start:end])
            start = end
        total = sum(self.lengths[i] for i in kept)
        from voicetune.train.device import move_to

        return [
            (
                move_to(self.adapter.collate([self.dataset[i] for i in g]), self.accelerator.device),
                g,
                sum(self.lengths[i] for i in g) / total,
            )
            for g in groups
        ]

    # ---- recovery ------------------------------------------------------------------------

    def _free(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _lower(self, step: int, error: str) -> None:
        if self.world > 1:
            raise VoicetuneError(
                f"out of memory at step {step} ({error}); with several processes the run cannot shrink its batch by "
                "itself: rerun with a lower --batch-frames / --batch-size and a higher --grad-accum (voicetune plan "
                "shows what fits), or --gradient-checkpointing"
            )
        failing = self._failing
        if len(failing) > 1:
            self.loop.micro_split *= 2
            action = "split"
        else:
            action = "limit"
            length = self.lengths[failing[0]] if failing else None
            if length is None or (self.loop.item_limit is not None and length >= self.loop.item_limit):
                raise VoicetuneError(
                    f"out of memory at step {step} ({error}) and nothing is left to shrink: lower "
                    "--batch-frames / --batch-size or use --gradient-checkpointing"
                )
            self.loop.item_limit = length
        change = MemoryChange(step, action, self.loop.micro_split, self.loop.item_limit, error)
        self.on_change(change)


def _torch_rng() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_torch_rng(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
