"""Using what a run trained: rebuild the model from a checkpoint, synthesize speech, export it.

A checkpoint carries the resolved config it was trained with (loop.json), so the adapter and the
model are rebuilt from it alone (plus the upstream weights a LoRA run was based on). Of its two
weight sets, the one its milestone score chose (the manifest's `weights`: "ema" or "raw") is what
is used and exported, unless `weights` names one; a checkpoint that was never scored is used with
its EMA weights, as upstream inference does.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from voicetune.checkpoints import keys as st
from voicetune.checkpoints.manager import resolve_checkpoint
from voicetune.checkpoints.policy import WEIGHT_SETS, weights_of
from voicetune.checkpoints.store import load_checkpoint
from voicetune.config import TrainConfig
from voicetune.errors import CheckpointError, UsageError
from voicetune.models.base import ModelAdapter
from voicetune.models.registry import create_adapter

log = logging.getLogger("voicetune.synthesis.inference")


@dataclass
class TrainedModel:
    adapter: ModelAdapter
    model: torch.nn.Module
    checkpoint: Path
    step: int
    config: TrainConfig
    weights: str = "ema"  # which weight set the model holds: "ema" or "raw"


def check_weights(weights: str | None) -> str | None:
    """--weights: ema, raw, or None (what the checkpoint's score chose)."""
    if weights is not None and weights not in WEIGHT_SETS:
        raise UsageError(
            f"--weights {weights}: choose ema or raw (or leave it out: the weights the checkpoint's score chose)"
        )
    return weights


def set_sampling_steps(adapter, nfe: int | None) -> None:
    """The number of sampling steps (`--nfe`) for what `adapter` says from now on; refused for a
    model without steps and for fewer than 1."""
    if nfe is None:
        return
    if not hasattr(adapter, "nfe_steps"):
        raise UsageError(f"--nfe {nfe}: {adapter.name} takes no number of sampling steps; leave --nfe out")
    if nfe < 1:
        raise UsageError(
            f"--nfe {nfe}: give a number of steps of 1 or more ({adapter.name} samples with {adapter.nfe_steps})"
        )
    adapter.nfe_steps = int(nfe)


def load_trained_model(
    target: Path, prefer: str = "best", device: str | None = None, weights: str | None = None
) -> TrainedModel:
    """Rebuild the model of a checkpoint (or of a run's best one) with its chosen weights: the
    EMA or the raw ones as `weights` says, else those the milestone score chose (the manifest's
    `weights`), else the EMA."""
    weights = check_weights(weights)
    ckpt = resolve_checkpoint(target, prefer)
    chosen = weights or weights_of((ckpt.manifest or {}).get("metrics", {}))
    loaded = load_checkpoint(ckpt.path, components=[st.MODEL, st.EMA_FILE, st.LOOP])
    saved_config = loaded.json.get(st.LOOP, {}).get("config")
    if not saved_config:
        raise CheckpointError(f"{ckpt.path}: loop.json has no config; it was not written by voicetune train")
    config = TrainConfig.model_construct(**saved_config)
    adapter = create_adapter(config)
    adapter.use_saved_architecture(loaded.json.get(st.LOOP, {}).get("architecture") or {})
    model = adapter.build_model()
    sets = weight_sets(loaded)
    if chosen not in sets:
        if weights == "ema":
            raise UsageError(
                f"--weights ema: {ckpt.path} holds no EMA weights; leave --weights out to use its raw weights"
            )
        chosen = "raw"
    adapter.load_checkpoint_weights(model, sets[chosen])
    model.eval()
    if device:
        model.to(device)
    return TrainedModel(adapter, model, ckpt.path, ckpt.step, config, chosen)


def weight_sets(loaded) -> dict[str, dict[str, torch.Tensor]]:
    """The weight sets of a loaded checkpoint, each as `load_checkpoint_weights` takes it: "raw"
    (model.safetensors) and, when it has one, "ema" (the EMA's tensors in the model's dtypes, the
    tensors it does not average taken from the model's)."""
    raw = dict(loaded.tensors[st.MODEL])
    ema = loaded.tensors.get(st.EMA_FILE, {})
    sets = {"raw": raw}
    if ema:
        sets["ema"] = {**raw, **{k: v.to(raw[k].dtype) for k, v in ema.items() if k in raw}}
    return sets


def export_trained(target: Path, fmt: str, out: Path, weights: str | None = None) -> list[Path]:
    """Write a checkpoint's chosen weights (see `load_trained_model`) in an upstream format (LoRA
    merged by the adapter)."""
    trained = load_trained_model(target, weights=weights)
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return trained.adapter.export(trained.model, out, fmt)
    except BaseException:
        if created:  # a failed export leaves no half-written folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
