"""A run's settings made whole: the model's defaults for fields left unset, then generic ones.

`train`, `voicetune plan` and the studio settle a config the same way, here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from voicetune.config import TrainConfig
from voicetune.data.language import (
    EARLIER_DEFAULT,
    RunLanguage,
    choose_language,
    dataset_languages,
    stale_language_warning,
)
from voicetune.models.base import ModelAdapter
from voicetune.train.evaluator import default_best


def settle_config(config: TrainConfig, adapter: ModelAdapter) -> TrainConfig:
    """Fill fields left unset with the model's defaults, then generic ones; refused (UsageError)
    when the model cannot be trained to speak the run's language."""
    adapter.check_language(config.language)
    defaults = {k: v for k, v in adapter.default_settings().items() if getattr(config, k, None) is None}
    values = config.model_dump()
    values.update(defaults)
    if values.get("lr") is None:
        values["lr"] = 1e-4
    values["best_metric"], values["best_mode"] = default_best(config, adapter)
    if values.get("warmup_updates") is None:
        values["warmup_updates"] = min(1000, config.max_updates // 10)
    return TrainConfig.model_construct(**values)


def settle_language(config: TrainConfig) -> tuple[TrainConfig, RunLanguage, str | None]:
    """The language the run trains, scores and speaks in: --language, else the language the run
    already trains in (a resume), else the dataset's; a --language that contradicts the dataset is
    refused (data/language.py). Also a warning for a run made before runs took their dataset's
    language whose language contradicts it, or None."""
    dataset = Path(config.data) if config.data is not None else None
    recorded = dataset_languages(dataset) if dataset is not None else Counter()
    previous = _run_language(config.run)
    warning = None
    if config.language is None and previous is not None:  # a resume goes on in the run's language
        language = previous
        warning = stale_language_warning(Path(config.run), f"run {config.run}") if config.run else None
    else:
        language = choose_language(config.language, recorded, config.language_mismatch, dataset)
    return config.model_copy(update={"language": language.code}), language, warning


def _run_language(run: Path | None) -> RunLanguage | None:
    """The language an existing run's sessions trained in and where it came from (its run.json),
    or None for a new run."""
    try:
        info = json.loads((Path(run) / "run.json").read_text(encoding="utf-8")) if run else {}
    except (OSError, ValueError):
        return None
    recorded = info.get("language") or {}
    if recorded.get("code"):
        return RunLanguage(recorded["code"], recorded.get("from") or "run.json")
    earlier = (info.get("config") or {}).get("language")
    return RunLanguage(earlier, EARLIER_DEFAULT) if earlier else None
