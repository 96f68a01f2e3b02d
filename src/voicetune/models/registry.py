"""Model names -> adapters.

Built-in names map to adapter factories in this package. A name of the form `package.module:attr`
loads a custom adapter factory from an importable module (how the test suite plugs in its tiny
models, and how a user can train an architecture voicetune does not ship).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from voicetune.errors import UsageError
from voicetune.models.catalogue import (  # the catalogue, read here and by the commands
    BUILTIN_MODELS,
    CLIP_BOUNDS,
    DEFAULT_MODEL,
    FAMILY_TITLES,
    HOST_PEAK_MEASURED,
    MODEL_VARIABLES,
    UPSTREAM_PACKAGES,
    XTTS_MAX_CLIP_SECONDS,
    HostPeak,
    clip_bounds,
    export_formats,
    family_of,
    model_names,
    register,
)

if TYPE_CHECKING:
    from voicetune.config import TrainConfig
    from voicetune.models.base import ModelAdapter

__all__ = [
    "BUILTIN_MODELS",
    "CLIP_BOUNDS",
    "DEFAULT_MODEL",
    "FAMILY_TITLES",
    "HOST_PEAK_MEASURED",
    "MODEL_VARIABLES",
    "UPSTREAM_PACKAGES",
    "XTTS_MAX_CLIP_SECONDS",
    "HostPeak",
    "clip_bounds",
    "create_adapter",
    "export_formats",
    "family_of",
    "model_names",
    "register",
]


def create_adapter(config: TrainConfig) -> ModelAdapter:
    """Build the adapter named by `config.model`."""
    target = BUILTIN_MODELS.get(config.model, config.model)
    if ":" not in target:
        raise UsageError(
            f"--model {config.model}: unknown model; choose one of {', '.join(model_names()) or '(none)'}"
            " or give package.module:factory"
        )
    module_name, _, attr = target.partition(":")
    try:
        factory: Callable[[TrainConfig], ModelAdapter] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"--model {config.model}: cannot load {target}: {err}") from None
    return factory(config)
