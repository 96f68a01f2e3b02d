"""Several processes: the accelerator (one process, or one rank of a DDP job) and the collectives
the training loop uses between ranks (broadcast of a decision, mean of a value, the agreed stop).

Every rank calls each of these at the same point of the loop: none of them may run inside a loop
whose length differs between ranks.
"""

from __future__ import annotations

import signal
from typing import Any

import torch

from voicetune.config import TrainConfig
from voicetune.errors import UsageError
from voicetune.train.signals import StopSignals


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    precision = config.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    if precision != "no" and not torch.cuda.is_available():
        raise UsageError(f"--mixed-precision {precision} needs a GPU; use --mixed-precision no (or auto) on CPU")
    # cpu=True on a machine without GPU is what lets accelerate see a multi-process CPU launch.
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                       step_scheduler_with_optimizer=False, rng_types=[])


def broadcast_object(accelerator, obj: Any) -> Any:
    if accelerator.num_processes == 1:
        return obj
    holder = [obj]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def mean_across_ranks(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="mean").item())


def agreed_stop_signal(accelerator, signals: StopSignals) -> int | None:
    """Any rank's stop request stops every rank at the same update."""
    local = signals.signum or 0
    if accelerator.num_processes == 1:
        return local or None
    t = torch.tensor([local], dtype=torch.int64, device=accelerator.device)
    agreed = int(accelerator.reduce(t, reduction="sum").item())
    if not agreed:
        return None
    return local or (signal.SIGTERM if agreed % int(signal.SIGTERM) == 0 else signal.SIGINT)
