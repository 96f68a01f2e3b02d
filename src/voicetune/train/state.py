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

The random generators of a process: `capture_rng`, `restore_rng`, `set_seeds`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from voicetune.checkpoints.keys import EMA_FILE, LOOP, MODEL, OPTIMIZER, RNG
from voicetune.checkpoints.serialization import split_tree


@dataclass
class LoopState:
    """Counters of the training loop; everything here is plain JSON."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    position: int = 0  # global batch index inside the epoch (micro-batches across all ranks)
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
    def from_json(cls, data: dict[str, Any]) -> LoopState:
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


class TrainState:
    """Everything a full-state checkpoint holds, behind `payload()` (save) and `restore()` (load):
    the model (its trained tensors), AdamW, the EMA, the LR schedule, the grad scaler, the loop
    counters and the random generators of every rank."""

    def __init__(
        self,
        adapter,
        accelerator,
        model,
        optimizer,
        params,
        ema,
        schedule,
        loop: LoopState,
        config,
        data: dict[str, Any],
    ):
        self.adapter, self.accelerator, self.config = adapter, accelerator, config
        self.model, self.optimizer, self.params, self.ema, self.schedule = model, optimizer, params, ema, schedule
        self.core_model = accelerator.unwrap_model(model)
        self.weights = adapter.checkpoint_weights(self.core_model)  # live views of the trained tensors
        self.loop = loop
        self.data = data  # the dataset's path, fingerprint and description, saved with each checkpoint

    @classmethod
    def build(cls, adapter, accelerator, config, loaded, init_from, data: dict[str, Any]) -> TrainState:
        """A fresh state, with the weights of `init_from` when given, or restored from `loaded`
        (all but the RNG, which `restore_rng` sets last, right before the first update)."""
        from voicetune.train.ema import EMA
        from voicetune.train.schedule import LRSchedule

        torch.manual_seed(config.seed)  # identical initial weights on every rank
        model = adapter.build_model()
        if loaded is not None:
            adapter.load_checkpoint_weights(model, loaded.tensors[MODEL])
        elif init_from is not None:
            init_from(model)
        from voicetune.train.optim import make_optimizer

        params = adapter.trainable_parameters(model)
        optimizer = make_optimizer(config, params)
        if loaded is not None:
            optimizer.load_state_dict(loaded.tree(OPTIMIZER))
        # prepare() may move the model to the GPU: the EMA is built from the weights after it.
        model, optimizer = accelerator.prepare(model, optimizer)
        weights = adapter.checkpoint_weights(accelerator.unwrap_model(model))
        ema = EMA(weights, config.ema_decay, config.ema_update_every, config.ema_update_after)
        schedule = LRSchedule(config.lr, config.warmup_updates, config.max_updates, config.decay, config.min_lr_ratio)
        state = cls(adapter, accelerator, model, optimizer, params, ema, schedule, LoopState(), config, data)
        if loaded is not None:
            state._restore_counters(loaded)
        state.loop.sessions += 1
        return state

    def _restore_counters(self, loaded) -> None:
        self.ema.load_state_dict(loaded.tensors[EMA_FILE], loaded.json[EMA_FILE])
        saved = loaded.json[LOOP]
        self.loop = LoopState.from_json(saved["state"])
        if saved.get("scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(saved["scaler"])

    @staticmethod
    def rng_of(loaded, rank: int) -> dict[str, Any]:
        """This rank's saved generator states (rank 0's when the process count changed)."""
        tree = loaded.tree(RNG)
        state = rng_for_rank(tree, rank)
        if state is None:
            import logging

            logging.getLogger("voicetune.train").warning(
                "the checkpoint has no RNG state for rank %d (different process count): rank 0's is used", rank
            )
            state = rng_for_rank(tree, 0)
        if state is None:
            from voicetune.errors import CheckpointError

            raise CheckpointError("the checkpoint holds no RNG state")
        return state

    def payload(
        self, role: Literal["milestone", "rolling"], kind: Literal["full", "weights"], metrics: dict[str, float]
    ):
        """Snapshot everything into host memory (the only part of a save on the training thread).
        Every rank calls it (the RNG states and the weights digests are gathered); rank 0 gets the
        payload, others None."""
        import json

        from voicetune.checkpoints.store import CheckpointPayload
        from voicetune.train.distributed import check_ranks_agree, waiting_in, weights_digest

        world = self.accelerator.num_processes
        rng_states: list[Any] = [capture_rng()]
        rank_weights: dict[str, Any] = {}
        if world > 1:
            # One gather: every rank's generators, and every rank's weights digest, compared on
            # every rank alike (an error on one is an error on all: none is left waiting).
            gathered: list[Any] = [None] * world
            with waiting_in("all_gather_object of the RNG states and weight digests"):
                torch.distributed.all_gather_object(gathered, (capture_rng(), weights_digest(self.weights)))
            rng_states = [g[0] for g in gathered]
            rank_weights = check_ranks_agree([g[1] for g in gathered], self.loop.step)
        if not self.accelerator.is_main_process:
            return None
        pin = torch.cuda.is_available()
        ema_tensors, ema_counters = self.ema.state_dict()
        scaler = self.accelerator.scaler
        loop_json = {
            "state": self.loop.to_json(),
            "config": self.config.flag_dict(),
            "architecture": json.loads(json.dumps(self.adapter.architecture(), default=str)),
            "schedule": self.schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "metrics": metrics,
            "data": self.data,
        }
        payload = CheckpointPayload(
            step=self.loop.step,
            role=role,
            kind=kind,
            epoch=self.loop.epoch,
            metrics=metrics,
            wall_time=self.loop.elapsed_seconds,
            config_hash=self.config.config_hash(),
            tensor_files={MODEL: snapshot_tensors(self.weights, pin), EMA_FILE: snapshot_tensors(ema_tensors, pin)},
            json_files={EMA_FILE: ema_counters, LOOP: loop_json},
            rank_weights=rank_weights,
        )
        if kind == "full":
            opt_json, opt_tensors = optimizer_files(self.optimizer.state_dict())
            rng_json, rng_tensors = rng_files([r for r in rng_states if r is not None])  # every rank's, gathered
            payload.tensor_files[OPTIMIZER] = snapshot_tensors(opt_tensors, pin)
            payload.json_files[OPTIMIZER] = opt_json
            payload.tensor_files[RNG] = snapshot_tensors(rng_tensors)
            payload.json_files[RNG] = rng_json
        return payload


def set_seeds(seed: int) -> None:
    """Seed python's, numpy's and torch's generators of this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
