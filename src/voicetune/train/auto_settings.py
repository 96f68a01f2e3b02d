"""Settings that suit this machine, and the disk a run's checkpoints will take: a documented formula.

This is the studio's "auto settings" button (the role of F5-TTS finetune_gradio's): a batch from
the GPU's memory (or a small one on a CPU), checkpoint cadences from the expected speed, and the
projected disk use of the retention. It is an estimate from parameter counts, not a measurement;
`voicetune plan` measures where it exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GIB = 1024**3

# (parameters, trainable parameters of a full fine-tune) of the built-in models: the tiny ones as
# built here, the others as upstream publishes them (F5-TTS v1 Base 336 M; XTTS-v2's GPT ~443 M of
# ~467 M: the DVAE and the HiFi-GAN decoder stay frozen).
PARAMETERS = {
    "f5-tiny": (1_297_572, 1_297_572),
    "f5-v1-small": (158_000_000, 158_000_000),
    "f5-v1-base": (336_000_000, 336_000_000),
    "xtts-tiny": (23_121_278, 705_618),
    "xtts-v2": (467_000_000, 443_000_000),
}
# GPU memory the model, its optimizer state and the framework take before any batch (GiB), and
# what one unit of batch takes: a mel frame for F5, a clip for XTTS (bf16 activations, measured on
# upstream's recipes: F5 v1 Base trains 38 400 frames on 80 GB).
FIXED_GIB = {"f5-tiny": 0.5, "f5-v1-small": 3.0, "f5-v1-base": 6.0, "xtts-tiny": 0.5, "xtts-v2": 8.0}
PER_UNIT_GIB = {"f5-tiny": 1 / 8000, "f5-v1-small": 1 / 900, "f5-v1-base": 1 / 500, "xtts-tiny": 0.05, "xtts-v2": 1.6}
BYTES_PER_VALUE = 4  # float32 in checkpoints


@dataclass(frozen=True)
class Machine:
    gpu_memory_bytes: int | None  # of the first GPU; None on a CPU-only machine
    cpu_cores: int

    def describe(self) -> str:
        if self.gpu_memory_bytes:
            return f"GPU with {self.gpu_memory_bytes / GIB:.0f} GiB"
        return f"no GPU, {self.cpu_cores} CPU cores"


def detect_machine() -> Machine:
    """The first GPU's memory (through torch) and the CPU cores this process may use."""
    import torch

    memory = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return Machine(memory, cores)


def auto_settings(model: str, max_updates: int, machine: Machine) -> dict:
    """{batch_size | batch_frames, save_every, last_every}: a batch that fits, cadences that suit its speed."""
    if model not in PARAMETERS:
        raise ValueError(f"no settings known for model {model!r}")
    f5 = model.startswith("f5")
    if machine.gpu_memory_bytes:
        room = max(machine.gpu_memory_bytes / GIB * 0.85 - FIXED_GIB[model], PER_UNIT_GIB[model])
        units = int(room / PER_UNIT_GIB[model])
        batch = (
            {"batch_frames": max(1000, min(units, 38_400) // 100 * 100)}
            if f5
            else {"batch_size": max(1, min(units, 32))}
        )
        # A GPU makes several updates a second: a rolling checkpoint every few minutes.
        last_every = 200
    else:
        batch = {"batch_size": 4 if f5 else 2}
        last_every = 20 if machine.cpu_cores <= 4 else 50
    save_every = max(1, max_updates // 5)
    return {**batch, "save_every": save_every, "last_every": min(last_every, save_every)}


def checkpoint_bytes(model: str, lora_rank: int | None) -> dict[str, int]:
    """Estimated bytes of a full-state and of a weights-only checkpoint, by the formula `train`
    prints at its start: weights + EMA (+ Adam's two moments for a full state)."""
    total, trainable = PARAMETERS[model]
    if lora_rank:
        # LoRA's adapters are about 1 % of the values at rank 8, growing with the rank.
        trainable = max(1, int(trainable * 0.01 * lora_rank / 8))
    weights = (total + trainable) * BYTES_PER_VALUE
    return {"weights": weights, "full": weights + 2 * trainable * BYTES_PER_VALUE}


def projected_disk_bytes(
    model: str,
    lora_rank: int | None,
    max_updates: int,
    save_every: int,
    last_every: int | None,
    keep_last: int,
    keep_every: int | None,
    milestone_state: str,
) -> int:
    """Most disk the run's checkpoints take at once under its retention (the policy's own projection)."""
    from voicetune.checkpoints.policy import RetentionPolicy, SaveSchedule, projected_peak_bytes

    sizes = checkpoint_bytes(model, lora_rank)
    schedule = SaveSchedule(save_every, last_every, None, "weights" if milestone_state == "weights" else "full")
    retention = RetentionPolicy(keep_last=keep_last, keep_every=keep_every, save_every=save_every)
    milestone = sizes["weights" if milestone_state == "weights" else "full"]
    return projected_peak_bytes(sizes["full"], milestone, schedule, retention, 0, max_updates)
