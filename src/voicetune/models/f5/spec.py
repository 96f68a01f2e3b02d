"""The F5-TTS architectures voicetune knows, read from the f5-tts package's own config files.

`f5-v1-small` and `f5-v1-base` are upstream's configs/F5TTS_v1_Small.yaml and F5TTS_v1_Base.yaml
as shipped (not retyped). `f5-tiny` is the Small config with the sizes scaled down so that one
update on a batch of four 2-3 s clips takes ~0.2 s on 2 CPU cores: for tests and the demo.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import yaml

# f5-tiny: the Small config with these fields replaced. dim_head is a DiT argument the upstream
# configs leave at its default (64); 32 keeps heads * dim_head == dim as in the upstream models.
TINY_ARCH = {"dim": 128, "depth": 4, "heads": 4, "dim_head": 32, "ff_mult": 2, "text_dim": 64, "conv_layers": 1}

# Arch fields that do not change the saved tensors (runtime choices), left out of architecture().
RUNTIME_ARCH_FIELDS = ("attn_backend", "checkpoint_activations")

RELEASED_BASE = "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"


@dataclass(frozen=True)
class F5Spec:
    """One model name: the upstream config it comes from and what voicetune does with it."""

    name: str  # voicetune's model name
    upstream_name: str  # model.name in the upstream config, e.g. F5TTS_v1_Base
    upstream_config: dict[str, Any] = field(repr=False)  # the whole upstream YAML (hydra strings kept)
    default_pretrained: str | None  # used when --pretrained is not given
    default_lr: float
    default_warmup: int
    default_batch_frames: int
    nfe_steps: int  # flow-matching steps for samples (upstream inference uses 32)

    @property
    def arch(self) -> dict[str, Any]:
        """Keyword arguments of f5_tts.model.DiT, besides text_num_embeds and mel_dim."""
        return dict(self.upstream_config["model"]["arch"])

    @property
    def mel(self) -> dict[str, Any]:
        """Mel settings as MelSpec/CFM mel_spec_kwargs take them (24 kHz, 100 mels, hop 256, vocos)."""
        return dict(self.upstream_config["model"]["mel_spec"])

    @property
    def backbone(self) -> str:
        return self.upstream_config["model"]["backbone"]


def read_upstream_config(filename: str) -> dict[str, Any]:
    """One of f5_tts/configs/*.yaml as a plain dict (the hydra ${...} strings are left as text)."""
    return yaml.safe_load(files("f5_tts").joinpath(f"configs/{filename}").read_text(encoding="utf-8"))


def _spec(name: str, filename: str, arch_overrides: dict[str, Any] | None = None, **settings: Any) -> F5Spec:
    config = read_upstream_config(filename)
    if arch_overrides:
        config = copy.deepcopy(config)
        config["model"]["arch"].update(arch_overrides)
        config["model"]["name"] = name
    return F5Spec(name=name, upstream_name=config["model"]["name"], upstream_config=config, **settings)


def model_spec(name: str) -> F5Spec:
    """The spec of a voicetune F5 model name (f5-tiny, f5-v1-small, f5-v1-base)."""
    if name == "f5-tiny":
        # Trained from scratch in tests and the demo: a high lr, a short warmup, small batches.
        # 1600 frames (17 s) hold the longest clip `prepare` makes by default (15 s).
        return _spec(
            name,
            "F5TTS_v1_Small.yaml",
            TINY_ARCH,
            default_pretrained=None,
            default_lr=1e-3,
            default_warmup=20,
            default_batch_frames=1600,
            nfe_steps=16,
        )
    if name == "f5-v1-small":
        # No released weights: train from scratch or --pretrained your own upstream checkpoint.
        return _spec(
            name,
            "F5TTS_v1_Small.yaml",
            default_pretrained=None,
            default_lr=1e-5,
            default_warmup=100,
            default_batch_frames=3200,
            nfe_steps=32,
        )
    if name == "f5-v1-base":
        # Fine-tuning settings of upstream's finetune_gradio defaults (lr 1e-5, 3200 frames, 100 warmup).
        return _spec(
            name,
            "F5TTS_v1_Base.yaml",
            default_pretrained=RELEASED_BASE,
            default_lr=1e-5,
            default_warmup=100,
            default_batch_frames=3200,
            nfe_steps=32,
        )
    raise KeyError(name)


MODEL_NAMES = ("f5-tiny", "f5-v1-small", "f5-v1-base")
