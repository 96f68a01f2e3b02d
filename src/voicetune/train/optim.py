"""The optimizer a run trains with: `--optimizer adamw` (torch's AdamW) or `adamw8bit`
(bitsandbytes' 8-bit AdamW: 2 bytes of state per parameter instead of 8, GPU only).

Both keep their state in `optimizer.state_dict()`, which checkpoints store as they store AdamW's
(tensors in safetensors, the rest in JSON), so a resume restores it exactly.
"""

from __future__ import annotations

import torch

from voicetune.config import TrainConfig
from voicetune.errors import UsageError


def make_optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names over `params`, with the run's lr and weight decay."""
    if config.optimizer == "adamw8bit":
        if not torch.cuda.is_available():
            raise UsageError(
                "--optimizer adamw8bit needs a CUDA GPU (bitsandbytes' 8-bit optimizers run there only); "
                "use --optimizer adamw on this machine"
            )
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise UsageError(
                f"--optimizer adamw8bit needs bitsandbytes ({err}); pip install -c constraints.txt bitsandbytes"
            ) from None
        return bnb.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    assert config.lr is not None, "settle_config fills the learning rate"
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
