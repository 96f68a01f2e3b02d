"""Model names -> adapters.

Built-in names map to adapter factories in this package. A name of the form `package.module:attr`
loads a custom adapter factory from an importable module (how the test suite plugs in its tiny
models, and how a user can train an architecture voicetune does not ship).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

from voicetune.errors import UsageError

if TYPE_CHECKING:
    from voicetune.config import TrainConfig
    from voicetune.models.base import ModelAdapter

# name -> "module:factory"; factories take the resolved TrainConfig and return a ModelAdapter.
BUILTIN_MODELS: dict[str, str] = {
    "xtts-tiny": "voicetune.models.xtts:create_tiny",
    "xtts-v2": "voicetune.models.xtts:create_v2",
}


def register(name: str, target: str) -> None:
    BUILTIN_MODELS[name] = target


for _f5_name in ("f5-tiny", "f5-v1-small", "f5-v1-base"):
    register(_f5_name, "voicetune.models.f5:create_adapter")


def model_names() -> list[str]:
    return sorted(BUILTIN_MODELS)


def create_adapter(config: "TrainConfig") -> "ModelAdapter":
    """Build the adapter named by `config.model`."""
    target = BUILTIN_MODELS.get(config.model, config.model)
    if ":" not in target:
        raise UsageError(
            f"--model {config.model}: unknown model; choose one of {', '.join(model_names()) or '(none)'}"
            " or give package.module:factory"
        )
    module_name, _, attr = target.partition(":")
    try:
        factory: Callable[["TrainConfig"], "ModelAdapter"] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"--model {config.model}: cannot load {target}: {err}") from None
    return factory(config)
