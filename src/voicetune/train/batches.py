"""The DataLoader of a training session: this rank's batches, epoch after epoch, from the saved
(epoch, position), with worker processes that leave stopping to the training process.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
from collections.abc import Generator, Iterator
from typing import Any

import torch

from voicetune.config import TrainConfig
from voicetune.models.base import DataSplits
from voicetune.train import state as st
from voicetune.train.device import move_to
from voicetune.train.sampler import BatchPlan

log = logging.getLogger("voicetune.train")


def iterate_batches(
    adapter, splits: DataSplits, plan: BatchPlan, loop: st.LoopState, rank: int, config: TrainConfig, accelerator
) -> Generator[tuple[Any, list[int]], None, None]:
    """(batch, item indices) forever, epoch after epoch, from the saved epoch and position.

    The caller advances `loop.position` after using a batch, so a checkpoint records exactly
    the batches consumed, whatever the DataLoader workers prefetched.
    """
    from torch.utils.data import DataLoader

    workers = data_workers(config.workers)
    sampler = EpochsOfBatches(plan, loop.epoch, loop.position, rank)
    # One loader for the whole session: its workers live across epochs (a new loader per epoch
    # would fork and warm up new workers every epoch, which costs whole updates on small data).
    loader = DataLoader(
        splits.train,
        batch_sampler=sampler,
        collate_fn=adapter.collate,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_ignore_stop_signals if workers else None,
        # A private generator: creating a loader must not draw from the global RNG,
        # or a resumed run (which creates one more loader) would diverge.
        generator=torch.Generator().manual_seed(config.seed),
    )
    for batch in loader:
        epoch, indices = sampler.issued.popleft()  # the loader yields batches in sampler order
        if epoch != loop.epoch:
            loop.epoch, loop.position = epoch, 0
        yield move_to(batch, accelerator.device), indices


class EpochsOfBatches:
    """The DataLoader's batch sampler: this rank's batches, epoch after epoch, from a saved
    (epoch, position). The loader draws ahead of training (prefetch), so each batch's epoch is
    queued in `issued` for the consumer, which moves the loop state only when it uses the batch."""

    def __init__(self, plan: BatchPlan, epoch: int, position: int, rank: int):
        self.plan, self.epoch, self.position, self.rank = plan, epoch, position, rank
        self.issued: collections.deque[tuple[int, list[int]]] = collections.deque()

    def __iter__(self) -> Iterator[list[int]]:
        epoch, position = self.epoch, self.position
        while True:
            for batch in self.plan.rank_batches(epoch, position, self.rank):
                self.issued.append((epoch, batch))
                yield batch
            epoch, position = epoch + 1, 0


def _ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: workers must leave stopping to the main process,
    # which finishes the update and saves before it shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def data_workers(requested: int | None) -> int:
    """Cores minus one, at most 8; a request above the core count is lowered with a warning."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    default = max(0, min(8, cores - 1))
    if requested is None:
        return default
    if requested > cores:
        log.warning("--workers %d is more than the %d cores here: using %d", requested, cores, default)
        return default
    return requested
