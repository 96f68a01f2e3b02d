"""Reading upstream files (.pt checkpoints): `torch.load(weights_only=True)` only.

A pickle can run arbitrary code when it is loaded. weights_only=True allows tensors and plain
containers and refuses anything else; a refused file is reported, never retried unsafely.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from voicetune.errors import CheckpointError


def load_pickled_checkpoint(path: Path, allowed_globals: Sequence[Callable | tuple[Callable, str]] = ()) -> Any:
    """Load an upstream .pt/.pth/.ckpt with torch.load(weights_only=True) onto the CPU.

    `allowed_globals` names plain-data classes that a known upstream format pickles besides tensors
    (an upstream model.pth that holds its config dataclasses). They are allowed by exact name
    for this load only (torch.serialization.safe_globals, with "module.Name" for classes pickled
    under an old module path); any other class is still refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused: the file holds objects that only an unsafe load could create, which could run code "
            f"({first_line}). Only load it if you trust its source, convert it to safetensors yourself, "
            "and pass that file instead"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from None
