"""Settings that suit this machine, and the disk a run's checkpoints will take: a documented formula.

This is the studio's "auto settings" button (the role of an upstream fine-tuning app's): a batch from
the GPU's memory (or a small one on a CPU), checkpoint cadences from the expected speed, and the
projected disk use of the retention. It is an estimate from parameter counts, not a measurement;
`voicetune plan` measures where it exists.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicetune.errors import UsageError

if TYPE_CHECKING:
    from voicetune.models.base import SizeEstimate

GIB = 1024**3
BYTES_PER_VALUE = 4  # float32 in checkpoints


@dataclass(frozen=True)
class Machine:
    gpu_memory_bytes: int | None  # of the first GPU; None on a CPU-only machine
    cpu_cores: int

    def describe(self) -> str:
        if self.gpu_memory_bytes:
            return f"GPU with {self.gpu_memory_bytes / GIB:.0f} GiB"
        return f"no GPU, {self.cpu_cores} CPU cores"


def detect_machine() -> Machine:
    """The first GPU's memory (through torch) and the CPU cores this process may use."""
    import torch

    memory = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return Machine(memory, cores)


@functools.cache
def size_estimate(model: str) -> SizeEstimate:
    """The adapter's estimate of `model`'s sizes (nothing is built or downloaded); a UsageError for
    a model that has none (a custom factory may not say)."""
    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter

    estimate = create_adapter(TrainConfig.resolve({"model": model})).size_estimate()
    if estimate is None:
        raise UsageError(f"--model {model}: its adapter gives no size estimate; set the batch and cadences by hand")
    return estimate


def auto_settings(model: str, max_updates: int, machine: Machine) -> dict:
    """{batch_size | batch_frames, save_every, last_every}: a batch that fits, cadences that suit its speed."""
    size = size_estimate(model)
    by_frames = size.batch_unit == "frames"
    if machine.gpu_memory_bytes:
        room = max(machine.gpu_memory_bytes / GIB * 0.85 - size.fixed_gib, size.per_unit_gib)
        units = int(room / size.per_unit_gib)
        batch = (
            {"batch_frames": max(1000, min(units, 38_400) // 100 * 100)}
            if by_frames
            else {"batch_size": max(1, min(units, 32))}
        )
        # A GPU makes several updates a second: a rolling checkpoint every few minutes.
        last_every = 200
    else:
        batch = {"batch_size": 4 if by_frames else 2}
        last_every = 20 if machine.cpu_cores <= 4 else 50
    save_every = max(1, max_updates // 5)
    return {**batch, "save_every": save_every, "last_every": min(last_every, save_every)}


def checkpoint_bytes(model: str, lora_rank: int | None) -> dict[str, int]:
    """Estimated bytes of a full-state and of a weights-only checkpoint, by the formula `train`
    prints at its start: weights + EMA (+ Adam's two moments for a full state)."""
    size = size_estimate(model)
    total, trainable = size.parameters, size.trainable
    if lora_rank:
        # LoRA's adapters are about 1 % of the values at rank 8, growing with the rank.
        trainable = max(1, int(trainable * 0.01 * lora_rank / 8))
    weights = (total + trainable) * BYTES_PER_VALUE
    return {"weights": weights, "full": weights + 2 * trainable * BYTES_PER_VALUE}


def projected_disk_bytes(
    model: str,
    lora_rank: int | None,
    max_updates: int,
    save_every: int,
    last_every: int | None,
    keep_last: int,
    keep_every: int | None,
    milestone_state: str,
) -> int:
    """Most disk the run's checkpoints take at once under its retention (the policy's own projection)."""
    from voicetune.checkpoints.policy import RetentionPolicy, SaveSchedule, projected_peak_bytes

    sizes = checkpoint_bytes(model, lora_rank)
    schedule = SaveSchedule(save_every, last_every, None, "weights" if milestone_state == "weights" else "full")
    retention = RetentionPolicy(keep_last=keep_last, keep_every=keep_every, save_every=save_every)
    milestone = sizes["weights" if milestone_state == "weights" else "full"]
    return projected_peak_bytes(sizes["full"], milestone, schedule, retention, 0, max_updates)
