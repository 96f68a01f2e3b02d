"""The catalogue of model families and built-in model names: plain data that the configuration,
the commands and the registry read. Below `voicetune.config` (it imports only `errors`), so that
the configuration can take its default model and choices from here without an import circle;
`voicetune.models.registry` builds the adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicetune.errors import UsageError

# name -> "module:factory"; factories take the resolved TrainConfig and return a ModelAdapter.
BUILTIN_MODELS: dict[str, str] = {
    "xtts-tiny": "voicetune.models.xtts:create_tiny",
    "xtts-v2": "voicetune.models.xtts:create_v2",
    "chatterbox-tiny": "voicetune.models.chatterbox:create_tiny",
    "chatterbox": "voicetune.models.chatterbox:create_chatterbox",
}


# Clip lengths (seconds) each model family trains on, for `voicetune prepare --for`. XTTS's
# upstream recipe leaves out audio longer than 255995 samples at 22.05 kHz (11.6 s): its clips stop
# a little short of that. F5-TTS takes 0.3-30 s; 5-15 s is what its fine-tuning recipes use.
XTTS_MAX_CLIP_SECONDS = 11.5
# Chatterbox's community recipes train on clips of a few seconds to about 20 s.
CLIP_BOUNDS: dict[str, tuple[float, float]] = {
    "f5": (5.0, 15.0),
    "xtts": (4.0, XTTS_MAX_CLIP_SECONDS),
    "chatterbox": (3.0, 20.0),
}


# The package each family runs on (`voicetune doctor` shows their versions).
UPSTREAM_PACKAGES: dict[str, str] = {"f5": "f5-tts", "xtts": "coqui-tts", "chatterbox": "chatterbox-tts"}
# Environment variables the models read themselves: not training settings, welcome in .env.
MODEL_VARIABLES = frozenset(
    {
        "VOICETUNE_VOCOS",  # F5-TTS's Vocos vocoder folder (models/f5/vocoder.py)
        "VOICETUNE_F5_NFE_STEPS",  # flow steps of F5-TTS's training samples (models/f5/adapter.py)
    }
)
# What each family is called where the commands say which models voicetune trains.
FAMILY_TITLES: dict[str, str] = {"f5": "F5-TTS", "xtts": "XTTS-v2", "chatterbox": "Chatterbox"}


@dataclass(frozen=True)
class HostPeak:
    """Peak host memory (the training process's resident set) of a model's training on the demo
    corpus, as `bench/train_memory.py` measures it, and the size of its full state."""

    without_scoring: int  # bytes, milestones not scored (`--set evaluate=false`)
    with_scoring: int  # bytes, milestones scored with whisper base, the speaker encoder and DNSMOS
    full_state: int  # bytes of one full-state checkpoint (`voicetune plan --model NAME`)


# Measured peaks (`voicetune plan` states them); the other models' are estimated from
# DEFAULT_MODEL's (`voicetune.train.plan.host_memory`).
HOST_PEAK_MEASURED: dict[str, HostPeak] = {"f5-tiny": HostPeak(1346 << 20, 1795 << 20, 20_810_000)}


def export_formats() -> list[str]:
    """`ckpt export --format` choices: each family's upstream files, and plain safetensors."""
    return [*UPSTREAM_PACKAGES, "safetensors"]


def family_of(name: str) -> str | None:
    """The family (a key of CLIP_BOUNDS) of a family or built-in model name, or None."""
    if name in CLIP_BOUNDS:
        return name
    if name not in BUILTIN_MODELS:
        return None
    return next((f for f in CLIP_BOUNDS if name.startswith(f + "-")), None)


def clip_bounds(target: str) -> tuple[float, float]:
    """(min, max) clip seconds for `prepare --for TARGET`: a family or a model name."""
    family = family_of(target)
    if family is None:
        raise UsageError(f"--for {target}: use {', '.join(CLIP_BOUNDS)} or a model name ({', '.join(model_names())})")
    return CLIP_BOUNDS[family]


def register(name: str, target: str) -> None:
    BUILTIN_MODELS[name] = target


for _f5_name in ("f5-tiny", "f5-v1-small", "f5-v1-base"):
    register(_f5_name, "voicetune.models.f5:create_adapter")


def model_names() -> list[str]:
    return sorted(BUILTIN_MODELS)


# What `train` (and the studio's Train page) starts with when no model is named: the smallest
# built-in model, which trains on a CPU in minutes.
DEFAULT_MODEL = "f5-tiny"
