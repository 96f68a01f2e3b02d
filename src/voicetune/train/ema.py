"""Exponential moving average of the trained weights, with ema_pytorch's schedule.

The same rules as `ema_pytorch.EMA`, the EMA of the upstream trainer: the first call copies the
weights; every `update_every`-th call copies them while within `update_after` calls, then moves
towards them with a decay that warms up as 1 - (1 + t)^(-2/3), capped at `decay`. Unlike
ema_pytorch it holds plain tensors keyed like the checkpoint's weights, so its state is a flat
safetensors file.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(
        self,
        weights: dict[str, torch.Tensor],
        decay: float = 0.9999,
        update_every: int = 10,
        update_after: int = 100,
        power: float = 2 / 3,
    ):
        # Only floating tensors are averaged; integer buffers are copied as they are.
        self.names = [k for k, v in weights.items() if v.is_floating_point()]
        self.shadow = {k: weights[k].detach().clone().float() for k in self.names}
        self.decay, self.update_every, self.update_after, self.power = decay, update_every, update_after, power
        self.calls = 0
        self.initialized = False

    def current_decay(self) -> float:
        t = max(0, self.calls - self.update_after - 1)
        if t <= 0:
            return 0.0
        return min(self.decay, max(0.0, 1 - (1 + t) ** -self.power))

    @torch.no_grad()
    def update(self, weights: dict[str, torch.Tensor]) -> None:
        call = self.calls
        self.calls += 1
        if not self.initialized:
            self._copy(weights)
            self.initialized = True
            return
        if call % self.update_every:
            return
        if call <= self.update_after:
            self._copy(weights)
            return
        keep = self.current_decay()
        for name in self.names:
            self.shadow[name].lerp_(weights[name].detach().float(), 1 - keep)

    def _copy(self, weights: dict[str, torch.Tensor]) -> None:
        for name in self.names:
            self.shadow[name].copy_(weights[name].detach())

    def weights_like(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """EMA tensors cast back to the dtypes of `weights`; non-averaged entries taken from it."""
        return {k: (self.shadow[k].to(v.dtype) if k in self.shadow else v) for k, v in weights.items()}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, JSON-able counters)."""
        return self.shadow, {"calls": self.calls, "initialized": self.initialized}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], counters: dict) -> None:
        missing = set(self.names) - set(tensors)
        if missing:
            from voicetune.errors import CheckpointError

            raise CheckpointError(f"EMA weights lack {sorted(missing)[:5]}")
        for name in self.names:
            self.shadow[name].copy_(tensors[name])
        self.calls = int(counters["calls"])
        self.initialized = bool(counters["initialized"])
