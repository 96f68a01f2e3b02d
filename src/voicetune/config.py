"""Training configuration: defaults < TOML file (--config) < .env < VOICETUNE_* variables < CLI flags.

`TrainConfig.resolve()` merges the sources in that order and turns a validation failure into one
`UsageError` that names the field, the bad value and what is allowed. The resolved config is saved
in the run (run.json and every checkpoint's loop.json) and compared on resume: fields in
`ARCHITECTURE_FIELDS` must match the checkpoint, everything else (schedule lengths included)
follows the new config.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from voicetune.errors import UsageError
from voicetune.models.catalogue import DEFAULT_MODEL, MODEL_VARIABLES, model_names

# Which TOML file the next resolve() reads; a context variable so resolve() stays reentrant.
_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_path", default=None)

# Variables voicetune reads outside the training settings: welcome in .env and the environment.
OTHER_VARIABLES = MODEL_VARIABLES | frozenset(
    {
        "VOICETUNE_WHISPER_MODEL",  # prepare's and the scorers' Whisper model
        "VOICETUNE_DEBUG",  # tracebacks on the terminal
        "VOICETUNE_CRASH_AT",  # fault injection of the store's tests
    }
)


class TrainDotEnv(DotEnvSettingsSource):
    """.env holds more than training settings (other tools' variables, voicetune's own
    OTHER_VARIABLES): only VOICETUNE_* names that are not OTHER_VARIABLES count as settings, so an
    unknown one is still refused, and named as coming from .env."""

    def __call__(self) -> dict[str, Any]:
        fields = TrainConfig.model_fields
        data = super().__call__()
        return {
            key: value
            for key, value in data.items()
            if key in fields or (key.upper().startswith("VOICETUNE_") and key.upper() not in OTHER_VARIABLES)
        }


# Fields that decide the shapes of the saved tensors. A resume that changes one is an error.
ARCHITECTURE_FIELDS = ("model", "lora_rank", "lora_targets", "optimizer")


class TrainConfig(BaseSettings):
    """Everything `voicetune train` needs; each field is also a flag (`--max-updates` for max_updates)."""

    model_config = SettingsConfigDict(
        env_prefix="VOICETUNE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    # Where
    data: Path | None = Field(None, description="dataset folder (LJSpeech layout)")
    run: Path | None = Field(None, description="run folder: checkpoints, samples, logs")
    model: str = Field(DEFAULT_MODEL, description=" | ".join(model_names()) + ", or package.module:factory")
    pretrained: str | None = Field(None, description="local path or hf://REPO/FILE of upstream weights")
    vocab: str | None = Field(None, description="vocabulary file (one token per line); default: upstream's")
    language: str | None = Field(
        None,
        description="language of the dataset's text, default: the one `prepare` recorded in the dataset "
        "(a language the model does not speak extends its tokenizer where the model can: docs/new-language.md)",
    )
    language_mismatch: Literal["refuse", "ok"] = Field(
        "refuse",
        description="a --language that contradicts the dataset's recorded language: refuse (exit 2), "
        "or ok (train its clips as --language says)",
    )
    resume: str = Field("auto", description="auto | latest | never | path of a checkpoint")
    init_from: str | None = Field(None, description="start at step 0 from another run's or checkpoint's weights")
    data_changed: Literal["refuse", "restart-epoch"] = Field(
        "refuse",
        description="a resume over a changed dataset: refuse (exit 2, naming what changed), or "
        "restart-epoch (weights and optimizer kept, a fresh epoch over the new data)",
    )

    # How long and how much
    max_updates: int = Field(1000, ge=1, description="optimizer updates in the whole run (a resume continues to it)")
    batch_size: int = Field(8, ge=1, description="clips per batch when batch_frames is not set")
    batch_frames: int | None = Field(
        None, ge=1, description="batch by total frames (models that batch by frames); default: the model's"
    )
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer update")
    seed: int = Field(0, description="seed of every random generator (weights, shuffling, noise)")
    workers: int | None = Field(None, ge=0, description="DataLoader workers; default cores-1, at most 8")

    # Optimizer and schedule (None: the model's own default)
    lr: float | None = Field(None, gt=0, description="peak learning rate; default: the model's (higher with LoRA)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_updates: int | None = Field(None, ge=0, description="linear warm-up updates; default: the model's")
    decay: Literal["linear", "cosine", "constant"] = Field("linear", description="learning-rate decay after warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final learning rate as a fraction of lr")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 turns clipping off")
    ema_decay: float = Field(0.9999, ge=0, lt=1, description="decay of the EMA weights used for samples and export")
    ema_update_every: int = Field(10, ge=1, description="update the EMA every N updates")
    ema_update_after: int = Field(100, ge=0, description="the EMA copies the weights until this update")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, else fp16; no on CPU"
    )

    # Memory levers (voicetune plan shows their effect)
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: less memory, ~30% slower"
    )
    optimizer: Literal["adamw", "adamw8bit"] = Field(
        "adamw", description="adamw8bit: bitsandbytes 8-bit AdamW (GPU only)"
    )
    gpu_memory: str | None = Field(
        None,
        description="GPU memory this run may use, e.g. 12G: plan sizes the batch for it, "
        "train holds the process to it (default: the whole GPU)",
    )
    deterministic: bool = Field(False, description="deterministic GPU algorithms: bit-exact resume on a GPU, slower")

    # Checkpoints
    save_every: int = Field(1000, ge=1, description="milestone every N updates")
    last_every: int | None = Field(100, ge=1, description="rolling full-state checkpoint every N updates")
    last_every_minutes: float | None = Field(None, gt=0, description="... or every N minutes")
    keep_last: int = Field(3, ge=1, description="newest milestones kept")
    keep_every: int | None = Field(None, ge=1, description="also keep every K-th milestone")
    milestone_state: Literal["full", "weights"] = Field(
        "full", description="what milestones hold: full state, or weights only (model + EMA) to save disk"
    )
    best_metric: str | None = Field(
        None,
        description="metric that picks the best checkpoint: score (default for models that synthesize), val_loss, or train_loss",
    )
    best_mode: Literal["min", "max"] | None = Field(
        None, description="whether the best metric is the lowest or the highest (default: max for score, else min)"
    )
    disk_budget: str | None = Field(None, description="most bytes the checkpoints may take, e.g. 20G")
    async_save: bool = Field(True, description="write checkpoints in a background thread")

    # Logging, validation, samples
    log_every: int = Field(10, ge=1, description="a progress line and TensorBoard rates every N updates")
    val_max_batches: int | None = Field(None, ge=1, description="validate on at most N batches (default: all)")
    sample_text: list[str] = Field(default_factory=list, description="extra sentences synthesized at milestones")
    samples: bool = Field(True, description="synthesize audio samples at milestones")
    max_sample_prompts: int = Field(2, ge=0, description="validation sentences synthesized at each milestone")
    sample_budget_seconds: float = Field(
        120.0, gt=0, description="most seconds a milestone spends on samples; prompts past it are left out"
    )

    # Scoring at milestones (voicetune.scoring): a fixed evaluation set synthesized with the EMA
    # and the raw weights and scored for WER/CER, speaker similarity and DNSMOS against the real voice
    evaluate: bool = Field(
        True, description="score every milestone (WER, similarity, DNSMOS, score); needs a model that synthesizes"
    )
    eval_text: list[str] = Field(default_factory=list, description="extra sentences in the evaluation set")
    eval_clips: int = Field(4, ge=1, description="held-out validation sentences in the evaluation set")
    eval_seeds: int = Field(
        2,
        ge=1,
        description="seeds each evaluation sentence is said with: the score is their mean, "
        "with its spread (kept for the whole run: stored with the evaluation set)",
    )
    whisper_model: str = Field(
        "small", description="whisper model name or local CTranslate2 folder for WER (env VOICETUNE_WHISPER_MODEL)"
    )
    early_stop: int | None = Field(None, ge=1, description="stop when the score has not improved for K milestones")

    # LoRA (rank None or 0: full fine-tune)
    lora_rank: int | None = Field(
        None, ge=0, description="train LoRA adapters of this rank (0 or unset: full fine-tune)"
    )
    lora_alpha: float | None = Field(None, gt=0, description="LoRA scaling alpha; default 2 x rank")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path")
    lora_targets: list[str] | None = Field(
        None, description="module names to adapt; default: attention and feed-forward layers"
    )

    # Several processes (--processes N, torchrun, accelerate launch)
    collective_timeout: str = Field(
        "10m",
        description="the longest a rank may go without progress, e.g. waiting in a "
        "collective for the others (90s, 10m, 1h): then every rank's stacks go to train.log "
        "and the job ends (exit 1); longer than the slowest milestone phase",
    )
    stop_grace_seconds: float = Field(
        60.0,
        gt=0,
        description="after SIGTERM/Ctrl-C, the longest a rank of several may "
        "go without progress (stuck in a collective) before it ends itself (exit 143/130)",
    )

    @field_validator("resume")
    @classmethod
    def _resume_mode(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("use auto, latest, never or a checkpoint path")
        return value

    @field_validator("collective_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("disk_budget", "gpu_memory")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, TrainDotEnv(settings_cls)]
        toml = _toml_path.get()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def resolve(cls, cli_flags: dict[str, Any] | None = None, toml_file: Path | None = None) -> TrainConfig:
        """Merge defaults < TOML < .env < VOICETUNE_* < CLI flags (flags given as None are ignored)."""
        flags = {k: v for k, v in (cli_flags or {}).items() if v is not None}
        if toml_file is not None and not Path(toml_file).is_file():
            raise UsageError(f"--config {toml_file}: no such file; pass the path of a TOML file")
        token = _toml_path.set(Path(toml_file) if toml_file else None)
        try:
            return cls(**flags)
        except ValidationError as err:
            raise UsageError(describe_validation_error(err, toml_file)) from None
        except (ValueError, OSError) as err:  # a TOML file that does not parse
            raise UsageError(f"--config {toml_file}: {err}") from None
        finally:
            _toml_path.reset(token)

    def flag_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values (paths as strings)."""
        return json.loads(self.model_dump_json())

    def config_hash(self) -> str:
        """A short hash of the resolved config, stored in every checkpoint's manifest."""
        canonical = json.dumps(self.flag_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def disk_budget_bytes(self) -> int | None:
        return parse_size(self.disk_budget) if self.disk_budget else None


def setting_default(name: str) -> Any:
    """The default of a setting as a person would write it (None when the model decides)."""
    field = TrainConfig.model_fields[name]
    value = field.get_default(call_default_factory=True)
    return value if value not in ([], None) else None


def setting_help(name: str) -> str:
    """A setting's meaning and default, for --help and `train --settings`."""
    field = TrainConfig.model_fields[name]
    default = setting_default(name)
    shown = (
        f" [default: {str(default).lower() if isinstance(default, bool) else default}]" if default is not None else ""
    )
    return f"{field.description or ''}{shown}"


def describe_validation_error(err: ValidationError, toml_file: Path | None) -> str:
    """One line per bad field: its name, the value given, and what is allowed."""
    lines = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "config"
        flag = "--" + field.replace("_", "-")
        env = "VOICETUNE_" + field.upper()
        given = problem.get("input")
        if problem["type"] == "extra_forbidden" and field.lower().startswith("voicetune_"):
            lines.append(
                f"unknown variable {field.upper()} in .env (in {Path.cwd()}); `voicetune train --settings` "
                f"lists the settings (VOICETUNE_<KEY>)"
            )
            continue
        if problem["type"] == "extra_forbidden":
            where = f" in {toml_file}" if toml_file else ""
            lines.append(f"unknown setting '{field}'{where}; `voicetune train --settings` lists them all")
            continue
        lines.append(f"{field} ({flag} / {env}): {problem['msg']}; got {given!r}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def parse_set_flags(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs -> {key: value}; values are validated by TrainConfig itself."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: write KEY=VALUE, e.g. --set ema_decay=0.999")
        if key not in TrainConfig.model_fields:
            raise UsageError(f"--set {item!r}: unknown setting {key!r}; `voicetune train --settings` lists them all")
        values[key] = value
    return values


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'20G', '500M', '1.5T', '1024' -> bytes (powers of 1024)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 500M, 20G or 1.5T")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgtp".index(unit or "_"))


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h', '600' (seconds) -> seconds."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 10m or 1h")
    unit = (match.group(2) or "s").lower()[0]
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


def format_duration(seconds: float) -> str:
    """600 -> '10m', 90 -> '90s', 5400 -> '90m', 7200 -> '2h'."""
    for unit, scale in (("h", 3600), ("m", 60)):
        if seconds >= scale and seconds % scale == 0:
            return f"{seconds / scale:g}{unit}"
    return f"{seconds:g}s"


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
