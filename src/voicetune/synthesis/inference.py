"""Using what a run trained: rebuild the model from a checkpoint, synthesize speech, export it.

A checkpoint carries the resolved config it was trained with (loop.json), so the adapter and the
model are rebuilt from it alone (plus the upstream weights a LoRA run was based on). The EMA
weights are what is used and exported, as upstream F5-TTS and XTTS inference do.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from voicetune.checkpoints.manager import resolve_checkpoint
from voicetune.checkpoints.store import load_checkpoint
from voicetune.config import TrainConfig
from voicetune.errors import CheckpointError, UsageError
from voicetune.models.base import ModelAdapter
from voicetune.models.registry import create_adapter
from voicetune.checkpoints import keys as st

log = logging.getLogger("voicetune.synthesis.inference")


@dataclass
class TrainedModel:
    adapter: ModelAdapter
    model: torch.nn.Module
    checkpoint: Path
    step: int
    config: TrainConfig


def load_trained_model(target: Path, prefer: str = "best", device: str | None = None) -> TrainedModel:
    """Rebuild the model of a checkpoint (or of a run's best one) with its EMA weights."""
    ckpt = resolve_checkpoint(target, prefer)
    loaded = load_checkpoint(ckpt.path, components=[st.MODEL, st.EMA_FILE, st.LOOP])
    saved_config = loaded.json.get(st.LOOP, {}).get("config")
    if not saved_config:
        raise CheckpointError(f"{ckpt.path}: loop.json has no config; it was not written by voicetune train")
    config = TrainConfig.model_construct(**saved_config)
    adapter = create_adapter(config)
    model = adapter.build_model()
    weights = dict(loaded.tensors[st.MODEL])
    weights.update({k: v.to(weights[k].dtype) for k, v in loaded.tensors.get(st.EMA_FILE, {}).items() if k in weights})
    adapter.load_checkpoint_weights(model, weights)
    model.eval()
    if device:
        model.to(device)
    return TrainedModel(adapter, model, ckpt.path, ckpt.step, config)


def export_trained(target: Path, fmt: str, out: Path) -> list[Path]:
    """Write a checkpoint's EMA weights in an upstream format (LoRA merged by the adapter)."""
    trained = load_trained_model(target)
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return trained.adapter.export(trained.model, out, fmt)
    except BaseException:
        if created:  # a failed export leaves no half-written folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def synthesize_to_file(target: Path, text: str, ref: Path, out: Path, ref_text: str | None = None,
                       seed: int = 0, speed: float = 1.0, language: str | None = None,
                       nfe: int | None = None) -> Path:
    """Speak `text` in the voice of `ref` with a trained checkpoint; write a 16-bit wav.

    Through the synthesis engine of this process: a checkpoint is loaded once however many calls."""
    from voicetune import fsio
    from voicetune.synthesis.engine import checkpoint_target, shared_pool
    from voicetune.synthesis.formats import encode

    if not text.strip():
        raise UsageError("--text is empty; give the text to speak")
    ref, out = Path(ref), Path(out)
    if not ref.is_file():
        raise UsageError(f"--ref {ref}: no such file; give a wav of the voice to clone (a few seconds)")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give the path of the wav file to write")
    if not Path(target).exists():
        raise UsageError(f"--checkpoint {target}: no such run or checkpoint folder; `voicetune ckpt list RUN` lists them")
    # Every argument is checked before the model is loaded (seconds to minutes for real models).
    engine = shared_pool().get(checkpoint_target(Path(target)), nfe)
    if language and language != engine.language:
        engine.language = language
    speech = engine.synthesize(text, engine.voice(ref, ref_text), seed=seed, speed=speed)
    fsio.atomic_write_bytes(out, encode(speech.audio, speech.sample_rate, "wav"))
    return out
