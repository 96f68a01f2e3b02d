"""Full training state <-> checkpoint payload.

What a full-state checkpoint holds (file names are module constants, the keys of saved state):
  model.safetensors      the trained tensors (all weights, or LoRA's only)
  ema.safetensors        their EMA                       ema.json        EMA counters
  optimizer.safetensors  AdamW moments                    optimizer.json  hyper-parameters, layout
  rng.safetensors        torch/CUDA generator states      rng.json        python and numpy states
                         of every rank
  loop.json              step, epoch, sampler position, best metric, smoothed loss, elapsed time,
                         scheduler and grad-scaler state, the resolved config and architecture
A weights-only milestone holds model, ema and loop.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from voicetune.checkpoints.serialization import split_tree

MODEL, EMA_FILE, OPTIMIZER, RNG, LOOP = "model", "ema", "optimizer", "rng", "loop"


@dataclass
class LoopState:
    """Counters of the training loop; everything here is plain JSON."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    position: int = 0  # global batch index inside the epoch (micro-batches across all ranks)
    best_value: float | None = None
    best_step: int | None = None
    smoothed_loss: float | None = None
    elapsed_seconds: float = 0.0  # training time across all sessions
    items_seen: int = 0
    frames_seen: int = 0
    sessions: int = 0
    # Out-of-memory recovery (train/oom.py): pieces each micro-batch runs as, and the item length
    # from which items are left out. Saved so that a resume continues with what worked.
    micro_split: int = 1
    item_limit: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LoopState":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def capture_rng() -> dict[str, Any]:
    """This process's generator states (python, numpy, torch CPU, every CUDA device)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def rng_files(per_rank: list[dict[str, Any]]) -> tuple[dict, dict[str, torch.Tensor]]:
    """RNG states of all ranks as (JSON tree, tensors)."""
    return split_tree({f"rank{r}": s for r, s in enumerate(per_rank)}, RNG)


def rng_for_rank(tree: dict[str, Any], rank: int) -> dict[str, Any] | None:
    return tree.get(f"rank{rank}")


def optimizer_files(optimizer_state: dict[str, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
    return split_tree(optimizer_state, OPTIMIZER)


def snapshot_tensors(tensors: dict[str, torch.Tensor], pin: bool = False) -> dict[str, torch.Tensor]:
    """Copies in host memory, so the training thread can go on while a worker writes them."""
    out = {}
    for name, t in tensors.items():
        t = t.detach()
        if t.device.type == "cpu":
            out[name] = t.clone()
        else:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=pin)
            host.copy_(t, non_blocking=pin)
            out[name] = host
    if pin and torch.cuda.is_available():
        torch.cuda.synchronize()
    return out
