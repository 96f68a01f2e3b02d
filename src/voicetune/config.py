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
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from voicetune.errors import UsageError

# Which TOML file the next resolve() reads; a context variable so resolve() stays reentrant.
_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_path", default=None)

# Fields that decide the shapes of the saved tensors. A resume that changes one is an error.
ARCHITECTURE_FIELDS = ("model", "lora_rank", "lora_targets")


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
    model: str = Field("f5-tiny", description="model name (voicetune train --help lists them)")
    pretrained: str | None = Field(None, description="local path or hf://REPO/FILE of upstream weights")
    vocab: str | None = Field(None, description="vocabulary file (F5: vocab.txt); default: upstream's")
    language: str = Field("en", description="language of the dataset's text (XTTS: en es fr de it pt pl tr ru nl cs ar zh-cn hu ko ja hi)")
    resume: str = Field("auto", description="auto | latest | never | path of a checkpoint")
    init_from: str | None = Field(None, description="start at step 0 from another run's or checkpoint's weights")
    data_changed: Literal["refuse", "restart-epoch"] = Field(
        "refuse", description="a resume over a changed dataset: refuse, or keep weights and optimizer and restart the epoch")

    # How long and how much
    max_updates: int = Field(1000, ge=1)
    batch_size: int = Field(8, ge=1, description="items per batch when batch_frames is not set")
    batch_frames: int | None = Field(None, ge=1, description="batch by total mel frames (F5's frame sampler)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer update")
    seed: int = 0
    workers: int | None = Field(None, ge=0, description="DataLoader workers; default cores-1, at most 8")

    # Optimizer and schedule (None: the model's own default)
    lr: float | None = Field(None, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_updates: int | None = Field(None, ge=0)
    decay: Literal["linear", "cosine", "constant"] = "linear"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 turns clipping off")
    ema_decay: float = Field(0.9999, ge=0, lt=1)
    ema_update_every: int = Field(10, ge=1)
    ema_update_after: int = Field(100, ge=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"

    # Checkpoints
    save_every: int = Field(1000, ge=1, description="milestone every N updates")
    last_every: int | None = Field(100, ge=1, description="rolling full-state checkpoint every N updates")
    last_every_minutes: float | None = Field(None, gt=0, description="... or every N minutes")
    keep_last: int = Field(3, ge=1, description="newest milestones kept")
    keep_every: int | None = Field(None, ge=1, description="also keep every K-th milestone")
    milestone_state: Literal["full", "weights"] = "full"
    best_metric: str = "val_loss"
    best_mode: Literal["min", "max"] = "min"
    disk_budget: str | None = Field(None, description="most bytes the checkpoints may take, e.g. 20G")
    async_save: bool = True

    # Logging, validation, samples
    log_every: int = Field(10, ge=1)
    val_max_batches: int | None = Field(None, ge=1)
    sample_text: list[str] = Field(default_factory=list)
    samples: bool = True
    max_sample_prompts: int = Field(2, ge=0)

    # LoRA (rank None or 0: full fine-tune)
    lora_rank: int | None = Field(None, ge=0)
    lora_alpha: float | None = Field(None, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = None

    @field_validator("resume")
    @classmethod
    def _resume_mode(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("use auto, latest, never or a checkpoint path")
        return value

    @field_validator("disk_budget")
    @classmethod
    def _disk_budget(cls, value: str | None) -> str | None:
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
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml = _toml_path.get()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def resolve(cls, cli_flags: dict[str, Any] | None = None, toml_file: Path | None = None) -> "TrainConfig":
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


def describe_validation_error(err: ValidationError, toml_file: Path | None) -> str:
    """One line per bad field: its name, the value given, and what is allowed."""
    lines = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "config"
        flag = "--" + field.replace("_", "-")
        env = "VOICETUNE_" + field.upper()
        given = problem.get("input")
        if problem["type"] == "extra_forbidden":
            where = f" in {toml_file}" if toml_file else ""
            lines.append(f"unknown setting '{field}'{where}; `voicetune train --help` lists the settings")
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
            raise UsageError(f"--set {item!r}: unknown setting {key!r}; `voicetune train --help` lists the settings")
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


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
