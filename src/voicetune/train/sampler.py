"""Deterministic, resumable batching.

An epoch's batches are a pure function of (seed, epoch, item lengths, batching settings), so a
resumed run rebuilds exactly the list it was walking and continues at the saved position. With
several processes each rank takes every world_size-th batch of the same list; the list is cut to a
multiple of world_size so that ranks stay in step.

Two modes, like the upstream trainers: fixed `batch_size` items per batch, or `batch_frames` (items sorted by
length and packed up to a total number of frames, as upstream's DynamicBatchSampler does), the
batch order shuffled per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchPlan:
    lengths: tuple[int, ...]
    seed: int
    batch_size: int | None = None
    batch_frames: int | None = None
    max_items: int = 64  # a frame budget never packs more than this many items
    world_size: int = 1
    shuffle: bool = True

    @classmethod
    def build(
        cls,
        lengths: Sequence[int],
        seed: int,
        batch_size: int | None,
        batch_frames: int | None,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> BatchPlan:
        if not lengths:
            raise ValueError("no items to batch")
        return cls(
            tuple(int(x) for x in lengths),
            seed,
            None if batch_frames else batch_size,
            batch_frames,
            world_size=world_size,
            shuffle=shuffle,
        )

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch`, for every rank, in the order they are consumed."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=gen).tolist() if self.shuffle else list(range(n))
        if self.batch_frames:
            batches = self._pack_by_frames(order)
            if self.shuffle:
                batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        else:
            size = self.batch_size or 1
            batches = [order[i : i + size] for i in range(0, n, size)]
        usable = len(batches) - len(batches) % self.world_size
        return batches[:usable]

    def _pack_by_frames(self, order: list[int]) -> list[list[int]]:
        # Sort (stably, from a shuffled order) by length so batches hold similar lengths.
        by_length = sorted(order, key=lambda i: self.lengths[i])
        assert self.batch_frames is not None
        batches: list[list[int]] = []
        current: list[int] = []
        frames = 0
        for i in by_length:
            length = self.lengths[i]
            if current and (frames + length > self.batch_frames or len(current) >= self.max_items):
                batches.append(current)
                current, frames = [], 0
            if length > self.batch_frames and not current:
                continue  # an item longer than a whole batch can never be trained on
            current.append(i)
            frames += length
        if current:
            batches.append(current)
        return batches

    def skipped_items(self) -> int:
        return sum(1 for x in self.lengths if self.batch_frames and x > self.batch_frames)

    def rank_batches(self, epoch: int, position: int, rank: int) -> Iterator[list[int]]:
        """This rank's batches of `epoch` from global position `position` on."""
        batches = self.epoch_batches(epoch)
        for index in range(position, len(batches)):
            if index % self.world_size == rank:
                yield batches[index]
