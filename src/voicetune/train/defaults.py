"""A run's settings made whole: the model's defaults for fields left unset, then generic ones.

`train`, `voicetune plan` and the studio settle a config the same way, here.
"""

from __future__ import annotations

from voicetune.config import TrainConfig
from voicetune.models.base import ModelAdapter
from voicetune.train.evaluator import default_best


def settle_config(config: TrainConfig, adapter: ModelAdapter) -> TrainConfig:
    """Fill fields left unset with the model's defaults, then generic ones."""
    defaults = {k: v for k, v in adapter.default_settings().items() if getattr(config, k, None) is None}
    values = config.model_dump()
    values.update(defaults)
    if values.get("lr") is None:
        values["lr"] = 1e-4
    values["best_metric"], values["best_mode"] = default_best(config, adapter)
    if values.get("warmup_updates") is None:
        values["warmup_updates"] = min(1000, config.max_updates // 10)
    return TrainConfig.model_construct(**values)
