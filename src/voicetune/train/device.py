"""Settings of the accelerator a run trains on, applied once before anything touches CUDA.

- `--gpu-memory 12G` holds this process to that much GPU memory (the caching allocator raises
  torch.OutOfMemoryError above it), so a big card can rehearse a small one and several runs can
  share a card; `voicetune plan` sizes the batch for the same figure.
- `--set deterministic=true` turns on torch's deterministic algorithms (and the cuBLAS workspace
  setting they need), so that a stopped and resumed run on a GPU ends bit for bit where a straight
  one ends; without it GPU kernels may add in another order and runs drift apart by rounding.

`move_to` puts a batch (tensors, or dicts, lists and tuples of them) on the run's device.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from voicetune.config import TrainConfig, parse_size

log = logging.getLogger("voicetune.train")


def configure_device(config: TrainConfig) -> None:
    """Apply --gpu-memory and deterministic; a no-op on a machine without CUDA."""
    if config.deterministic:
        # cuBLAS reads this when it creates its first handle: it must be set before any matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
    if config.gpu_memory and torch.cuda.is_available():
        device = int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count())
        total = torch.cuda.get_device_properties(device).total_memory
        limit = parse_size(config.gpu_memory)
        fraction = min(1.0, limit / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        log.info("GPU memory held to %s of %s (--gpu-memory)", config.gpu_memory, total)


def move_to(batch: Any, device: torch.device) -> Any:
    """`batch` with every tensor in it on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch
