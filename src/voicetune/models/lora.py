"""LoRA for any adapter's model, with peft: inject, train and checkpoint only the adapters, merge.

An adapter uses it in three places:

    settings = LoraSettings.from_config(config, DEFAULT_TARGETS)   # None: full fine-tune
    def build_model(self):
        model = ...                                  # pretrained weights loaded first
        if settings: settings.apply(model)           # freezes everything else
    def architecture(self):
        return {..., "lora": settings.describe() if settings else None}

`BaseAdapter.checkpoint_weights` / `load_checkpoint_weights` then hold and restore only the LoRA
tensors (`lora_state_dict`), `trainable_parameters` returns only them (everything else has
requires_grad False), and export calls `merge_lora` to fold them into the base weights.

peft's layers are injected in place (`peft.inject_adapter_in_model`), not wrapped in a PeftModel:
the model keeps its own class, forward and attribute paths, so upstream code (coqui's Xtts,
F5's CFM) still works on it. A wrapped layer's base weight moves from `NAME.weight` to
`NAME.base_layer.weight`; `to_injected_keys` maps upstream state dicts onto that layout.

Initialization draws from torch's global generator (kaiming-uniform A, zero B). The training
loop seeds it right before `build_model` on every start, so a resumed run rebuilds the same
initial adapters before loading the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from voicetune.errors import CheckpointError, UsageError

# The names peft gives LoRA tensors and modules: "...c_attn.lora_A.default.weight".
LORA_KEY_MARKER = "lora_"
ADAPTER_NAME = "default"


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Any, default_targets: Sequence[str]) -> LoraSettings | None:
        """Read --lora-rank/--lora-alpha/--lora-dropout/--lora-targets; None when LoRA is off."""
        rank = getattr(config, "lora_rank", None) if config is not None else None
        if not rank:
            return None
        alpha = getattr(config, "lora_alpha", None) or 2.0 * rank
        targets = tuple(getattr(config, "lora_targets", None) or default_targets)
        return cls(int(rank), float(alpha), float(getattr(config, "lora_dropout", 0.0) or 0.0), targets)

    def apply(self, model: torch.nn.Module) -> int:
        return apply_lora(model, self.targets, self.rank, self.alpha, self.dropout)

    def describe(self) -> dict[str, Any]:
        """What decides the adapters' shapes and their effect: part of an adapter's architecture().

        Dropout is left out on purpose: like the learning rate, it may change between sessions.
        """
        return {"rank": self.rank, "alpha": self.alpha, "targets": list(self.targets)}


def apply_lora(
    model: torch.nn.Module, targets: Sequence[str], rank: int, alpha: float | None = None, dropout: float = 0.0
) -> int:
    """Inject LoRA adapters into every Linear/Conv1D of `model` whose name ends with a target.

    Targets follow peft's rule: a module matches when its dotted name equals the target or ends
    with "." + target (so "to_out.0" matches "transformer_blocks.3.attn.to_out.0"). Every other
    parameter of `model` is frozen. Returns the number of adapted modules.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise UsageError(f"--lora-rank {rank}: use a rank of 1 or more (or leave it unset for a full fine-tune)")
    matched = matching_modules(model, targets)
    if not matched:
        raise UsageError(
            f"--lora-targets {' '.join(targets)}: no layer of the model has such a name; adaptable layers are "
            f"named like {', '.join(sorted(set(adaptable_suffixes(model)))[:12])}"
        )
    unsupported = [name for name, module in matched if not _is_linear_like(module)]
    if unsupported:
        raise UsageError(
            f"--lora-targets: {unsupported[0]} is a {type(dict(matched)[unsupported[0]]).__name__}; "
            "LoRA adapts Linear (and GPT-2 Conv1D) layers only"
        )
    # GPT-2's Conv1D stores its weight transposed (fan_in, fan_out); peft needs to be told.
    conv1d = any(_is_hf_conv1d(module) for _, module in matched)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2.0 * rank,  # type: ignore[arg-type]  # peft reads a float alpha; its stub says int
        lora_dropout=dropout,
        target_modules=[name for name, _ in matched],  # exact names: no second guess by peft
        fan_in_fan_out=conv1d,
        bias="none",
    )
    for param in model.parameters():
        param.requires_grad_(False)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad_(LORA_KEY_MARKER in name)
    return len(matched)


def matching_modules(model: torch.nn.Module, targets: Sequence[str]) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) pairs of `model` whose name equals a target or ends with '.' + target."""
    found = []
    for name, module in model.named_modules():
        if name and any(name == t or name.endswith("." + t) for t in targets):
            found.append((name, module))
    return found


def adaptable_suffixes(model: torch.nn.Module) -> list[str]:
    """Short names (the last two parts) of the Linear-like layers, for error messages."""
    return [".".join(name.split(".")[-2:]) for name, m in model.named_modules() if _is_linear_like(m)]


def has_lora(model: torch.nn.Module) -> bool:
    return any(hasattr(module, "lora_A") for module in model.modules())


def lora_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors only, as live views (what a LoRA checkpoint holds)."""
    return {k: v for k, v in model.state_dict().items() if LORA_KEY_MARKER in k}


def load_lora_state_dict(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Inverse of `lora_state_dict`; names missing or unexpected tensors in a CheckpointError."""
    expected = set(lora_state_dict(model))
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        hint = ""
        if unexpected and not any(LORA_KEY_MARKER in k for k in unexpected):
            hint = " (the checkpoint holds full weights: it comes from a run without --lora-rank)"
        elif missing and not weights:
            hint = " (the checkpoint holds no LoRA tensors)"
        raise CheckpointError(
            f"LoRA weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}{hint}"
        )
    model.load_state_dict(weights, strict=False)


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every LoRA adapter into its base layer and put the plain layer back, in place.

    Afterwards the model has its original layout (`NAME.weight`, no lora_ tensors) and computes
    what the adapted model computed. Returns `model`.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    tuned = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in tuned:
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = module.get_base_layer()
        setattr(parent, child, base)
    return model


def to_injected_keys(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an upstream (un-adapted) state dict's keys to a LoRA-injected model's layout."""
    renamed = {key.replace(".base_layer", ""): key for key in model.state_dict() if ".base_layer." in key}
    return {renamed.get(k, k): v for k, v in state_dict.items()}


def _is_hf_conv1d(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _is_linear_like(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear) or _is_hf_conv1d(module)
