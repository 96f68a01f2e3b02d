"""Learning-rate schedule: linear warmup, then linear or cosine decay (or constant).

A pure function of the update index and the current config, so its "state" is just the step:
after a resume, schedule lengths follow the new config (torchtune's rule), nothing else is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LRSchedule:
    peak_lr: float
    warmup_updates: int
    total_updates: int
    decay: Literal["linear", "cosine", "constant"] = "linear"
    min_lr_ratio: float = 0.0

    def lr(self, step: int) -> float:
        """Learning rate of update number `step` (0-based: the first update is step 0)."""
        if self.warmup_updates and step < self.warmup_updates:
            return self.peak_lr * (step + 1) / self.warmup_updates
        if self.decay == "constant":
            return self.peak_lr
        span = max(1, self.total_updates - self.warmup_updates)
        progress = min(1.0, max(0.0, (step - self.warmup_updates) / span))
        floor = self.peak_lr * self.min_lr_ratio
        if self.decay == "cosine":
            return floor + (self.peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return floor + (self.peak_lr - floor) * (1 - progress)

    def state_dict(self) -> dict:
        return {
            "peak_lr": self.peak_lr,
            "warmup_updates": self.warmup_updates,
            "total_updates": self.total_updates,
            "decay": self.decay,
            "min_lr_ratio": self.min_lr_ratio,
        }
