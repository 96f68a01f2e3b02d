"""The plan of a training run: sizes, disk, accelerator memory and the largest batch that fits.

    make_plan(config, gpu_memory=None) -> TrainPlan     `voicetune plan`, the studio's auto settings
    plan_for_model(config, adapter, model, ...)          what `train` prints at start (the same plan)

Memory comes from one of two sources, and the plan says which (`estimate`):

- "measured": on a GPU with a dataset, a short probe runs a few real forward/backward/optimizer
  steps at growing batch sizes, reads `torch.cuda.max_memory_allocated` after each, and fits
  peak = fixed + per_unit x batch through the points (the model and optimizer are the fixed part,
  activations grow with the batch).
- "formula": everywhere else. Fixed bytes are counted from the model itself: every parameter and
  buffer as stored (fp32), gradients (4 bytes per trainable parameter), AdamW moments (8; 2 for
  adamw8bit), the EMA (4 per averaged value), half-precision copies that autocast caches (2 per
  trainable parameter), the optimizer step's temporaries (4 per trainable parameter, when they
  exceed the activations) and 0.5 GiB for the CUDA context. Activations use the standard count of
  what a transformer layer keeps for backward (Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models"), per token and layer of width h with feed-forward
  multiple m: (14 + 2m)·h values at the activation precision (2 bytes with bf16/fp16, 4 without),
  the layer-norm inputs autocast keeps in fp32 (2·h x 4 bytes), dropout masks ((1 + m)·h bytes),
  plus (2·bytes + 1)·heads·seq when attention keeps its score matrix. Gradient checkpointing keeps
  one layer input per layer (h values) and one layer's activations at a time. Activations get a
  15% margin for allocator fragmentation. Expect the formula within about ±30%; the probe is exact
  for the batches it ran.

The model adapter says what its transformer is (`memory_shape()`, a `TransformerShape`); an adapter
without one gets sizes and disk use but no memory estimate.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from voicetune.checkpoints.policy import RetentionPolicy, SaveSchedule, projected_peak_bytes
from voicetune.checkpoints.serialization import json_bytes, safetensors_size
from voicetune.config import TrainConfig, format_size, parse_size
from voicetune.models.base import ModelAdapter, TransformerShape
from voicetune.models.hub import describe_source
from voicetune.models.registry import DEFAULT_MODEL, HOST_PEAK_MEASURED

log = logging.getLogger("voicetune.train")

GIB = 1024**3
CUDA_CONTEXT_BYTES = GIB // 2
ACTIVATION_MARGIN = 1.15
# Bytes of optimizer state per trainable parameter.
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw8bit": 2}
FRAMES_STEP = 100
# manifest, loop/EMA/optimizer JSON and the store's own allowance: small, but a tiny model's
# checkpoint is small too.
JSON_FILES_BYTES = 16 * 1024
# What each whisper size takes in memory (CTranslate2 float16/float32 weights, about their files).
WHISPER_BYTES = {"tiny": 75 << 20, "base": 145 << 20, "small": 484 << 20, "medium": 1530 << 20, "large": 3090 << 20}
PRECISION_NAMES = {
    "no": "fp32",
    "bf16": "bf16 autocast",
    "fp16": "fp16 autocast",
}  # --batch-frames suggestions are rounded down to this


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak accelerator memory of one training process: fixed + per_unit x batch units."""

    source: str  # "measured" or "formula"
    fixed_bytes: int  # model, gradients, optimizer state, EMA, CUDA context
    per_unit_bytes: float  # activations per batch unit (a frame or an item: the model's memory_shape)
    unit: str  # "frames" or "items"
    batch_units: int  # the configured batch, in units
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        return int(self.fixed_bytes + self.per_unit_bytes * self.batch_units)

    def max_units(self, budget_bytes: int) -> int:
        """The largest batch (in units) whose peak stays within `budget_bytes`; 0 when none does."""
        room = budget_bytes - self.fixed_bytes
        if room <= 0 or self.per_unit_bytes <= 0:
            return 0
        return int(room // self.per_unit_bytes)


@dataclass
class TrainPlan:
    """What a run will take. `to_json()` is `voicetune plan --json`."""

    model: str
    parameters: int
    trainable_parameters: int
    checkpoint_bytes: dict[str, int]  # full, weights (this run's kinds), lora (the adapters alone)
    milestone_bytes: int
    projected_disk_bytes: int
    free_disk_bytes: int | None
    memory: MemoryEstimate | None
    gpu_memory_bytes: int | None  # the budget the max batch is computed for
    gpu_memory_source: str  # "--gpu-memory", "detected <name>" or "none"
    batch_flag: str  # "--batch-frames" or "--batch-size"
    max_batch: int | None
    precision: str
    levers: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    weights: str | None = None  # where the starting weights come from (`voicetune plan` says it)
    host: HostMemory | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "checkpoint_bytes": self.checkpoint_bytes,
            "milestone_bytes": self.milestone_bytes,
            "projected_disk_bytes": self.projected_disk_bytes,
            "free_disk_bytes": self.free_disk_bytes,
            "peak_memory_bytes": self.memory.peak_bytes if self.memory else None,
            "memory": asdict(self.memory) if self.memory else None,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "gpu_memory_source": self.gpu_memory_source,
            "precision": self.precision,
            "levers": self.levers,
            "estimate": self.memory.source if self.memory else None,
            "notes": self.notes,
            "weights": self.weights,
            "host_memory": asdict(self.host) | {"peak_bytes": self.host.peak_bytes} if self.host else None,
        }
        out["max_batch_frames" if self.batch_flag == "--batch-frames" else "max_batch_size"] = self.max_batch
        return out

    def lines(self) -> list[str]:
        """The plan as console lines (train prints them at start)."""
        lora = (
            f", LoRA adapters {format_size(self.checkpoint_bytes['lora'])}" if "lora" in self.checkpoint_bytes else ""
        )
        free = f" ({format_size(self.free_disk_bytes)} free)" if self.free_disk_bytes is not None else ""
        out = [
            f"model {self.model}: {self.trainable_parameters:,} trainable parameters of {self.parameters:,}",
            f"checkpoints: ~{format_size(self.checkpoint_bytes['full'])} full state, "
            f"~{format_size(self.checkpoint_bytes['weights'])} weights-only{lora}; "
            f"~{format_size(self.milestone_bytes)} per milestone; projected peak disk use "
            f"{format_size(self.projected_disk_bytes)}{free}",
        ]
        if self.weights:
            out.insert(1, f"weights: {self.weights}")
        if self.memory is not None:
            m = self.memory
            levers = ", ".join(f"{k} {v}" for k, v in self.levers.items())
            out.append(
                f"accelerator memory ({m.source}): peak ~{format_size(m.peak_bytes)} at {m.batch_units} "
                f"{m.unit} per batch, {PRECISION_NAMES.get(self.precision, self.precision)}, {levers} (fixed {format_size(m.fixed_bytes)} + "
                f"{format_size(m.per_unit_bytes)} per {m.unit[:-1]})"
            )
            if self.gpu_memory_bytes:
                fits = "fits" if m.peak_bytes <= self.gpu_memory_bytes else "does NOT fit"
                best = (
                    f"largest {self.batch_flag} that fits: {self.max_batch}"
                    if self.max_batch
                    else f"no {self.batch_flag} fits: try --lora-rank, --gradient-checkpointing, --optimizer adamw8bit"
                )
                out.append(
                    f"GPU memory {format_size(self.gpu_memory_bytes)} ({self.gpu_memory_source}): "
                    f"the batch {fits}; {best}"
                )
        if self.host is not None:
            out.append(self.host.line())
        out.extend(self.notes)
        return out


@dataclass(frozen=True)
class HostMemory:
    """Peak host memory (RAM) of the training process: training itself, and milestone scoring
    (the scorers, loaded once per session, and the copy of the model that says the evaluation set)."""

    training_bytes: int
    scoring_bytes: int  # 0: milestones are not scored
    source: str  # "measured" (bench/train_memory.py, the tiny models) or "estimate"
    whisper_model: str | None = None

    @property
    def peak_bytes(self) -> int:
        return self.training_bytes + self.scoring_bytes

    def line(self) -> str:
        if not self.scoring_bytes:
            return f"host memory ({self.source}): peak ~{format_size(self.peak_bytes)} (milestones not scored)"
        return (
            f"host memory ({self.source}): peak ~{format_size(self.peak_bytes)} with milestone scoring "
            f"(training {format_size(self.training_bytes)} + scoring {format_size(self.scoring_bytes)}: "
            f"whisper {self.whisper_model}, the speaker encoder, DNSMOS)"
        )


def host_memory(config: TrainConfig, adapter, sizes: dict[str, int]) -> HostMemory:
    """The peak host memory of training `config`: measured for the models the registry holds a
    measure of (HOST_PEAK_MEASURED); for the others, the default model's process without its
    state, plus two copies of the full state (the live one or the one being loaded, and the
    snapshot a save writes from), plus, when milestones are scored, the scorers (the default
    model's measured increment, with the configured whisper's size in place of whisper base's) and
    one more copy of the weights (the listener that says the set)."""
    scored = bool(config.evaluate and callable(getattr(adapter, "synthesize", None)))
    whisper = _whisper_bytes(config.whisper_model)
    measured = HOST_PEAK_MEASURED.get(config.model)
    reference = HOST_PEAK_MEASURED[DEFAULT_MODEL]
    scorers = reference.with_scoring - reference.without_scoring - WHISPER_BYTES["base"]
    if measured is not None:
        scoring = measured.with_scoring - measured.without_scoring + whisper - WHISPER_BYTES["base"]
        return HostMemory(measured.without_scoring, scoring if scored else 0, "measured", config.whisper_model)
    process = reference.without_scoring - 2 * reference.full_state
    training = process + 2 * sizes["full"]
    scoring = max(0, scorers) + whisper + sizes["weights"] // 2
    return HostMemory(training, scoring if scored else 0, "estimate", config.whisper_model)


def _whisper_bytes(name: str) -> int:
    """The memory a whisper model takes: a local CTranslate2 folder's model.bin, else by its name."""
    folder = Path(name).expanduser()
    if (folder / "model.bin").is_file():
        return (folder / "model.bin").stat().st_size
    size = next((b for key, b in WHISPER_BYTES.items() if key in Path(name).name.lower()), None)
    return size if size is not None else WHISPER_BYTES["small"]


# ---- public entry points -----------------------------------------------------------------


def make_plan(
    config: TrainConfig, gpu_memory: int | None = None, probe: bool = True, adapter: ModelAdapter | None = None
) -> TrainPlan:
    """Build the model `config` describes (as `train` would) and plan the run.

    `gpu_memory` is the budget for the largest batch (default: the detected GPU's memory). On a GPU,
    with `probe` and a dataset, memory is measured; otherwise it comes from the formula.
    """
    from voicetune.models.registry import create_adapter
    from voicetune.train.defaults import settle_config, settle_language

    config = settle_language(config)[0]
    adapter = adapter or create_adapter(config)
    config = settle_config(config, adapter)
    torch.manual_seed(config.seed)
    probing = probe and torch.cuda.is_available() and config.data is not None and Path(config.data).is_dir()
    # Adapters that do not derive from BaseAdapter may lack these: they are built as train builds them.
    plain = adapter.without_pretrained() if hasattr(adapter, "without_pretrained") else None
    if plain is None:  # the architecture itself comes with the downloaded files
        model = adapter.build_model()
    else:
        # Shapes, not values: without a probe the model is built on the meta device (no memory,
        # no time), and in no case are pretrained weights read or downloaded.
        try:
            with contextlib.nullcontext() if probing else torch.device("meta"):
                model = plain.build_model()
        except RuntimeError as error:  # a constructor that reads a value (XTTS's mel filters)
            if "meta" not in str(error):
                raise
            model = plain.build_model()
    measured = probe_memory(config, plain or adapter, model, budget=gpu_memory) if probing else None
    run_dir = Path(config.run) if config.run is not None else None
    result = plan_for_model(config, adapter, model, gpu_memory=gpu_memory, measured=measured, run_dir=run_dir)
    if hasattr(adapter, "describe_weights"):
        result.weights = adapter.describe_weights()
    else:
        source = getattr(adapter, "pretrained", None)
        result.weights = describe_source(source) if source else "initialized from --seed (no pretrained weights)"
    return result


def plan_for_model(
    config: TrainConfig,
    adapter: ModelAdapter,
    model: torch.nn.Module,
    *,
    gpu_memory: int | None = None,
    measured: MemoryEstimate | None = None,
    run_dir: Path | None = None,
    start_step: int = 0,
    hints: bool = True,
) -> TrainPlan:
    """The plan of `model` (built by `adapter`) trained as `config` says; `hints` adds the notes
    for someone planning (no estimate for this model, no GPU to size for)."""
    params = adapter.trainable_parameters(model)
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    weights = adapter.checkpoint_weights(model)
    sizes = checkpoint_sizes(weights, trainable, config.optimizer)
    milestone = sizes["full"] if config.milestone_state == "full" else sizes["weights"]
    schedule = SaveSchedule(config.save_every, config.last_every, config.last_every_minutes, config.milestone_state)
    retention = RetentionPolicy(
        config.keep_last, config.keep_every, config.save_every, config.best_metric, config.best_mode or "min"
    )
    peak_disk = projected_peak_bytes(sizes["full"], milestone, schedule, retention, start_step, config.max_updates)
    where = Path(run_dir) if run_dir is not None else Path.cwd()
    existing = next((p for p in (where, *where.parents) if p.exists()), None)
    free = shutil.disk_usage(existing).free if existing is not None else None

    # A plan for a GPU made on a machine without one assumes what auto picks on current GPUs.
    precision = resolve_precision(config.mixed_precision, assume_gpu=bool(gpu_memory or config.gpu_memory))
    shape = adapter.memory_shape() if hasattr(adapter, "memory_shape") else None
    unit = shape.batch_unit if shape else ("frames" if config.batch_frames else "items")
    batch_units = batch_in_units(config, unit)
    memory = measured
    if memory is None and shape is not None:
        memory = formula_memory(model, params, weights, shape, precision, config, batch_units)
    budget, budget_source = gpu_budget(gpu_memory or (parse_size(config.gpu_memory) if config.gpu_memory else None))
    batch_flag = "--batch-frames" if unit == "frames" else "--batch-size"
    max_batch = None
    if memory is not None and budget:
        max_batch = memory.max_units(budget)
        if unit == "frames":
            max_batch = max_batch // FRAMES_STEP * FRAMES_STEP
    notes = []
    if shape is None and hints:
        notes.append(f"model {config.model} does not describe its transformer: no memory estimate")
    elif budget is None and hints:
        notes.append("no GPU detected: pass --gpu-memory 12G for the largest batch that fits such a card")
    if free is not None and peak_disk > free:
        notes.append(
            "the projected peak exceeds free disk space: retention and the disk guard will prune or skip "
            "saves; consider --keep-last, --milestone-state weights or --disk-budget"
        )
    return TrainPlan(
        model=config.model,
        parameters=total,
        trainable_parameters=trainable,
        checkpoint_bytes=sizes,
        milestone_bytes=milestone,
        projected_disk_bytes=peak_disk,
        free_disk_bytes=free,
        memory=memory,
        gpu_memory_bytes=budget,
        gpu_memory_source=budget_source,
        batch_flag=batch_flag,
        max_batch=max_batch,
        precision=precision,
        levers={
            "gradient checkpointing": "on" if config.gradient_checkpointing else "off",
            "optimizer": config.optimizer,
        },
        notes=notes,
        host=host_memory(config, adapter, sizes),
    )


# ---- pieces ------------------------------------------------------------------------------


def checkpoint_sizes(weights: dict[str, torch.Tensor], trainable: int, optimizer: str = "adamw") -> dict[str, int]:
    """Bytes of this run's checkpoints: "full" (weights, EMA, optimizer moments, RNG states),
    "weights" (weights and EMA: a weights-only milestone) and, with LoRA on, "lora" (the adapter
    tensors alone). The one size rule: train's disk checks use it too."""
    from voicetune.train import state as st

    weight_bytes = safetensors_size(weights) + JSON_FILES_BYTES
    ema_bytes = 4 * sum(v.numel() for v in weights.values() if v.is_floating_point())
    rng_json, rng_tensors = st.rng_files([st.capture_rng()])
    rng_bytes = safetensors_size(rng_tensors) + len(json_bytes(rng_json))
    sizes = {
        "full": weight_bytes + ema_bytes + OPTIMIZER_STATE_BYTES.get(optimizer, 8) * trainable + rng_bytes,
        "weights": weight_bytes + ema_bytes,
    }
    if any("lora_" in k for k in weights):
        sizes["lora"] = safetensors_size(weights)
    return sizes


def resolve_precision(mixed_precision: str, assume_gpu: bool = False) -> str:
    """What `--mixed-precision` means on this machine (the rule make_accelerator applies); with
    `assume_gpu` and no GPU here, what auto picks on a GPU with bf16."""
    if mixed_precision != "auto":
        return mixed_precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if assume_gpu else "no"


def batch_in_units(config: TrainConfig, unit: str) -> int:
    if unit == "frames":
        return int(config.batch_frames or 0)
    return int(config.batch_size)


def gpu_budget(gpu_memory: int | None) -> tuple[int | None, str]:
    if gpu_memory:
        return int(gpu_memory), "--gpu-memory"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory), f"detected {props.name}"
    return None, "none"


def layer_activation_bytes(shape: TransformerShape, act_bytes: int, seq: float) -> float:
    """Bytes one transformer layer keeps for backward, per token (see the module docstring)."""
    h, m = shape.width, shape.ff_mult
    per_token = (14 + 2 * m) * h * act_bytes + 2 * h * 4 + (1 + m) * h
    if shape.quadratic_attention:
        per_token += (2 * act_bytes + 1) * shape.heads * seq
    return per_token


def formula_memory(
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    weights: dict[str, torch.Tensor],
    shape: TransformerShape,
    precision: str,
    config: TrainConfig,
    batch_units: int,
) -> MemoryEstimate:
    """Peak memory by the documented formula (module docstring)."""
    trainable = sum(p.numel() for p in params)
    act_bytes = 4 if precision == "no" else 2
    parts = {
        "weights": sum(t.numel() * t.element_size() for t in model.parameters())
        + sum(b.numel() * b.element_size() for b in model.buffers()),
        "gradients": 4 * trainable,
        "optimizer": OPTIMIZER_STATE_BYTES.get(config.optimizer, 8) * trainable,
        "ema": 4 * sum(v.numel() for v in weights.values() if v.is_floating_point()),
        "autocast_copies": 0 if precision == "no" else 2 * trainable,
        "cuda_context": CUDA_CONTEXT_BYTES,
    }
    seq = shape.tokens_per_unit if shape.batch_unit == "items" else 0.0
    layer = layer_activation_bytes(shape, act_bytes, seq)
    layers = shape.layers + shape.extra_layers
    if config.gradient_checkpointing:
        per_token = shape.layers * shape.width * act_bytes + (1 + shape.extra_layers) * layer
    else:
        per_token = layers * layer
    per_unit = per_token * shape.tokens_per_unit * ACTIVATION_MARGIN
    fixed = sum(parts.values())
    # The optimizer step's temporaries come after backward has freed the activations: they only
    # raise the peak when they exceed them.
    step_temporaries = 4 * trainable
    if step_temporaries > per_unit * batch_units:
        parts["optimizer_step_temporaries"] = int(step_temporaries - per_unit * batch_units)
        fixed += parts["optimizer_step_temporaries"]
    parts["activations_per_unit"] = int(per_unit)
    return MemoryEstimate("formula", int(fixed), float(per_unit), shape.batch_unit, batch_units, parts)


# ---- the measured probe (GPU) ------------------------------------------------------------


def probe_memory(
    config: TrainConfig, adapter: ModelAdapter, model: torch.nn.Module, budget: int | None = None, points: int = 4
) -> MemoryEstimate | None:
    """Peak memory measured on the GPU: a few forward/backward/optimizer steps at growing batch sizes
    on real items of the dataset, then a straight line through (batch, peak). The model is moved to
    the GPU for the probe and back to the CPU afterwards; its weights are restored.

    Returns None when the probe cannot run (no CUDA, no data); an out-of-memory at some size ends
    the probe with the points measured so far.
    """
    import tempfile

    if not torch.cuda.is_available():
        return None
    with tempfile.TemporaryDirectory(prefix="voicetune-probe-") as cache:
        # Items may read the cache (features such as mels) when they are used: it lives until the probe ends.
        splits = adapter.load_data(Path(str(config.data)), Path(config.run) / "cache" if config.run else Path(cache))
        return _probe(config, adapter, model, splits, budget, points)


def _probe(config, adapter, model, splits, budget, points) -> MemoryEstimate | None:
    import copy

    from voicetune.train.device import move_to
    from voicetune.train.optim import make_optimizer

    device = torch.device("cuda")
    shape = adapter.memory_shape() if hasattr(adapter, "memory_shape") else None
    unit = shape.batch_unit if shape else ("frames" if config.batch_frames else "items")
    lengths = list(splits.train_lengths)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # longest first: the worst case
    configured = batch_in_units(config, unit)
    sizes = sorted({max(1, int(configured * f)) for f in (0.25, 0.5, 1.0, 1.5)})[:points]
    if unit == "items":
        sizes = sorted({max(1, s) for s in (1, 2, configured, configured * 2)})
    saved = copy.deepcopy(adapter.checkpoint_weights(model))
    model.to(device)
    model.train()
    params = adapter.trainable_parameters(model)
    optimizer = make_optimizer(config, params)
    precision = resolve_precision(config.mixed_precision)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    points_measured: list[tuple[int, int]] = []
    fixed_seen = None
    try:
        for size in sizes:
            items: list[Any] = []
            total = 0
            for i in order:
                step = lengths[i] if unit == "frames" else 1
                if items and total + step > size:
                    break
                items.append(i)
                total += step
            batch = move_to(adapter.collate([splits.train[i] for i in items]), device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            try:
                for _ in range(2):  # the second step has the optimizer state allocated
                    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                        loss = adapter.compute_loss(model, batch)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
            except torch.OutOfMemoryError:
                log.info("memory probe: out of memory at %d %s", total, unit)
                break
            finally:
                loss = None
                torch.cuda.empty_cache()
            points_measured.append((total, torch.cuda.max_memory_allocated()))
            if budget and points_measured[-1][1] > 0.9 * budget:
                break
        fixed_seen = torch.cuda.memory_allocated()
    finally:
        del optimizer
        model.to("cpu")
        adapter.load_checkpoint_weights(model, saved)
        torch.cuda.empty_cache()
    if len(points_measured) < 2:
        return None
    xs = [p[0] for p in points_measured]
    ys = [p[1] for p in points_measured]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0
    slope = max(slope, 0.0)
    intercept = mean_y - slope * mean_x
    parts = {f"peak_at_{x}_{unit}": y for x, y in points_measured}
    # Training also keeps the EMA of the trained weights on the GPU, which the probe does not build.
    parts["ema"] = 4 * sum(v.numel() for v in saved.values() if v.is_floating_point())
    parts["cuda_context"] = CUDA_CONTEXT_BYTES
    parts["allocated_after_probe"] = int(fixed_seen or 0)
    fixed = max(intercept, 0) + parts["ema"] + CUDA_CONTEXT_BYTES
    return MemoryEstimate("measured", int(fixed), float(slope), unit, configured, parts)
