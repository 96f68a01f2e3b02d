"""The training loop: one function, read top to bottom.

    train(config) -> TrainResult

1. Settle the config (model defaults for unset fields), the accelerator and the run folder; the
   checkpoint manager takes the LOCK and chooses (and loads) where training starts.
2. Load the data (refusing a changed dataset unless told how to go on), build the TrainState
   (model, optimizer, EMA, schedule, counters), print the plan.
3. Loop over updates; at each save point the manager says what is due: a milestone validates and
   synthesizes samples (cut short by a stop request), then a snapshot goes to the background
   saver. SIGTERM/SIGINT stop after a final full checkpoint.
4. Wait for the last save, export the best checkpoint to RUN/ready/, report.

Components (adapter, manager, state, reporter) are built here and passed around; the loop holds
no model- or storage-specific code.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from voicetune.checkpoints.manager import CheckpointManager, CheckpointOptions, Start
from voicetune.checkpoints.policy import DiskGuard, SaveDecision
from voicetune.checkpoints.saver import SaveFailed
from voicetune.checkpoints.store import LoadedCheckpoint, load_checkpoint
from voicetune.config import ARCHITECTURE_FIELDS, TrainConfig, format_size
from voicetune.console import attach_log_file, detach_log_file
from voicetune.errors import IncompatibleCheckpointError, StoppedBySignal, UsageError, VoicetuneError
from voicetune.models.base import DataSplits, ModelAdapter
from voicetune.models.registry import create_adapter
from voicetune.train import state as st
from voicetune.train.device import configure_device
from voicetune.train.evaluator import MilestoneEvaluator, default_best
from voicetune.train.oom import MemoryChange, UpdatePasses
from voicetune.train.plan import checkpoint_sizes as plan_checkpoint_sizes
from voicetune.train.plan import plan_for_model
from voicetune.train.reporting import Reporter
from voicetune.train.run_folder import RunFolder
from voicetune.train.sampler import BatchPlan
from voicetune.train.signals import StopRequested, StopSignals

log = logging.getLogger("voicetune.train")

# Seeds used for validation and samples, inside a forked RNG: the same noise at every milestone
# makes validation losses comparable, and training's own random stream is never touched.
VALIDATION_SEED = 1234
SAMPLES_SEED = 4321


@dataclass
class TrainResult:
    step: int
    stopped_by: int | None  # signal number, or None when max_updates was reached
    last_checkpoint: str | None
    best_checkpoint: str | None
    best_value: float | None


def train(config: TrainConfig, adapter: ModelAdapter | None = None) -> TrainResult:
    """Train `config.model` on `config.data` into `config.run`, resuming as `config.resume` says."""
    check_paths(config)
    adapter = adapter or create_adapter(config)
    config = settle_config(config, adapter)
    configure_device(config)  # --gpu-memory, deterministic: before anything touches CUDA
    accelerator = make_accelerator(config)
    rank, is_main = accelerator.process_index, accelerator.is_main_process
    run = RunFolder(config.run)
    created = run.create()  # a refused command removes the folder it created
    log_handler = attach_log_file(run.log_path if is_main else run.path / f"train.rank{rank}.log")
    signals = StopSignals().install()
    reporter: Reporter | None = None
    manager = CheckpointManager(run.path, CheckpointOptions.from_config(config.flag_dict()),
                                say=lambda text, level: reporter.say(text, level) if reporter else log.log(level, text))
    batches: Iterator | None = None
    discard_run = False
    try:
        start = choose_start(manager, run, accelerator, config)
        if start.resume_from is not None and start.resume_from.step >= config.max_updates:
            return already_complete(manager, adapter, config, start.resume_from, is_main)
        splits, data, state, plan, restart_epoch = load_session(adapter, accelerator, config, run, start)
        loop = state.loop
        has_validation = bool(validation_batches(splits, config))
        if not has_validation and config.best_metric == "val_loss":
            config = config.model_copy(update={"best_metric": "train_loss"})  # announced in announce_start
            manager.configure(CheckpointOptions.from_config(config.flag_dict()))
        sizes = checkpoint_sizes(state.weights, state.params, config)
        if is_main:
            refuse_if_no_room(sizes, run, config)
        reporter = Reporter(run.path, run.tensorboard_dir, run.metrics_path, loop.step, config.max_updates,
                            config.log_every, enabled=is_main, save_every=config.save_every)
        if is_main:
            run.record_session(config.flag_dict(), adapter.architecture(), data, start, loop.step, manager.session)
            announce_start(reporter, config, adapter, state.core_model, splits, start, loop, plan, run,
                           has_validation, restart_epoch)
        prompts = adapter.sample_prompts(splits, config.sample_text, config.max_sample_prompts) if config.samples else []
        if start.loaded is not None and prompts and is_main:
            # Samples right after every resume, so that progress is audible even when the run
            # never reaches another milestone (F5's own trainer stops sampling after a resume).
            with contextlib.suppress(StopRequested):
                write_samples(state, prompts, reporter, run, signals)
        evaluator = MilestoneEvaluator(config, adapter, run, reporter, loop.step, enabled=is_main)
        rng = st.TrainState.rng_of(start.loaded, rank) if start.loaded is not None else None
        start.loaded = None  # the checkpoint's files are no longer needed
        # The random streams are set last, right before the first update, so that nothing done
        # during set-up (which differs between a fresh start and a resume) can shift them.
        st.restore_rng(rng) if rng is not None else set_seeds(config.seed + rank)

        # ---- the loop ------------------------------------------------------------------------
        batches = iterate_batches(adapter, splits, plan, loop, rank, config, accelerator)

        passes = update_passes(state, splits, config, reporter, run)
        meter = Throughput(loop.step, config)
        session_start_step, stop = loop.step, None
        state.model.train()
        while loop.step < config.max_updates and stop is None:
            scalars = train_update(state, passes, batches, splits, config)
            reporter.update(loop.step, meter.add(loop.step, scalars))
            stop = agreed_stop_signal(accelerator, signals)
            decision = manager.due(loop.step, final=loop.step == config.max_updates or stop is not None)
            if decision is None:
                continue
            metrics, stop_early = {}, None
            if decision.role == "milestone":
                metrics = milestone(state, splits, config, prompts, reporter, run, signals, has_validation, stop,
                                    evaluator, meter)
                stop = agreed_stop_signal(accelerator, signals)
                stop_early = broadcast_object(accelerator, evaluator.stop_reason)
                if stop_early:
                    decision = SaveDecision("milestone", "full")  # the run ends here: its last checkpoint is full
            payload = state.payload(decision.role, decision.kind, metrics)  # every rank takes part
            if is_main:
                manager.save(payload)
            # The snapshot is the saver's now: kept here it would hold a second copy of the whole
            # state in host memory until the next save (5 GB for f5-v1-base), and through the export.
            payload = None
            if stop_early:
                reporter.say(stop_early)
                break

        return finish_session(manager, state, adapter, config, reporter, meter, stop, session_start_step)
    except StoppedBySignal:
        raise
    except Exception as err:
        error = logged_error(err, run)
        discard_run = is_main and created and isinstance(error, UsageError) and not run.store.scan()
        if error is err:
            raise
        raise error from None
    finally:
        if batches is not None:
            # Shut the DataLoader workers down now: an exception's traceback would otherwise keep
            # the suspended generator (and its workers, which ignore SIGTERM) alive until exit.
            batches.close()
        manager.close()  # never leave a commit half-done on the way out of an error
        if reporter is not None:
            reporter.close()
        signals.uninstall()
        if is_main:
            run.lock.release()
        detach_log_file(log_handler)
        if discard_run:
            shutil.rmtree(run.path, ignore_errors=True)


# ---- set-up ------------------------------------------------------------------------------


def load_session(adapter, accelerator, config: TrainConfig, run: RunFolder, start: Start):
    """The data, the restored (or new) training state and the batch plan of this session."""
    with accelerator.main_process_first():  # rank 0 fills the cache, the others reuse it
        splits = adapter.load_data(Path(config.data), run.cache_dir)
    data = {"path": str(Path(config.data).resolve()), "fingerprint": splits.fingerprint,
            "description": splits.description}
    restart_epoch = check_data_unchanged(start, run.read_run_json().get("dataset"), data, config)
    if start.loaded is not None:
        check_compatible(start.loaded, config, adapter)
    state = st.TrainState.build(adapter, accelerator, config, start.loaded, initializer(adapter, start), data)
    if restart_epoch:
        state.loop.epoch, state.loop.position = state.loop.epoch + 1, 0
    world = accelerator.num_processes
    plan = BatchPlan.build(splits.train_lengths, config.seed, config.batch_size, config.batch_frames, world)
    if not plan.epoch_batches(0):
        raise UsageError(f"--data {config.data}: {len(splits.train_lengths)} training items make no batch for "
                         f"{world} process(es); add data or lower --batch-size/--batch-frames")
    return splits, data, state, plan, restart_epoch


def update_passes(state: st.TrainState, splits: DataSplits, config: TrainConfig, reporter: Reporter,
                  run: RunFolder) -> UpdatePasses:
    """Forward and backward of every micro-batch of an update; split smaller and retried on
    out-of-memory, each change said once and recorded in run.json."""
    is_main, loop = state.accelerator.is_main_process, state.loop

    def memory_changed(change: MemoryChange) -> None:
        reporter.say(change.describe(), logging.WARNING)
        if is_main:
            run.record_memory_change(change.to_json())

    if loop.micro_split > 1 or loop.item_limit is not None:
        reporter.say(f"memory settings from the checkpoint (out-of-memory recovery): each batch runs as "
                     f"{loop.micro_split} micro-batches" + (f", items of length {loop.item_limit} or more left out"
                                                            if loop.item_limit is not None else ""))
    return UpdatePasses(state.adapter, state.model, state.accelerator, state.optimizer, splits, config.grad_accum,
                        loop, state.accelerator.num_processes, memory_changed)


def finish_session(manager: CheckpointManager, state: st.TrainState, adapter, config: TrainConfig,
                   reporter: Reporter, meter: "Throughput", stop: int | None, session_start_step: int) -> TrainResult:
    """After the last update: wait for the last commit, then stop (signal), fail (unsaved last
    step) or export ready/ and report the best, read back from committed checkpoints."""
    accelerator, loop = state.accelerator, state.loop
    is_main = accelerator.is_main_process
    if is_main:
        manager.finish()
    accelerator.wait_for_everyone()
    saved = not is_main or (manager.last_committed is not None and manager.last_committed.step == loop.step)
    if stop is not None:
        raise StoppedBySignal(stop, resume_hint(stop, config, loop.step, saved))
    if not saved and loop.step > session_start_step:
        raise VoicetuneError(final_save_missing(manager, loop.step))
    if is_main:
        state.optimizer.state.clear()  # committed: the export builds a model of its own, give it the room
        export_ready(manager, adapter, reporter.say)
    best = manager.best() if is_main else None
    best_text = (f"best {config.best_metric} {best.metrics[config.best_metric]:.4f} at step {best.step} ({best.name})"
                 if best else f"no checkpoint has a {config.best_metric}")
    reporter.say(f"done: {loop.step} updates ({meter.session_rate(loop.step):.2f} updates/s this session; milestone "
                 f"validation and samples took {meter.paused:.0f} s of its {meter.session_seconds():.0f} s); {best_text}")
    last = manager.last_committed.name if manager.last_committed else None
    return TrainResult(loop.step, None, last, best.name if best else None, manager.best_value(best))


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


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    precision = config.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    if precision != "no" and not torch.cuda.is_available():
        raise UsageError(f"--mixed-precision {precision} needs a GPU; use --mixed-precision no (or auto) on CPU")
    # cpu=True on a machine without GPU is what lets accelerate see a multi-process CPU launch.
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                       step_scheduler_with_optimizer=False, rng_types=[])


def set_seeds(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def broadcast_object(accelerator, obj: Any) -> Any:
    if accelerator.num_processes == 1:
        return obj
    holder = [obj]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def check_paths(config: TrainConfig) -> None:
    if config.data is None or config.run is None:
        raise UsageError("train needs --data DATASET and --run RUN")
    if not Path(config.data).is_dir():
        raise UsageError(f"--data {config.data}: no such dataset folder; make one with `voicetune prepare`")


def choose_start(manager: CheckpointManager, run: RunFolder, accelerator, config: TrainConfig) -> Start:
    """Rank 0 takes the LOCK, sweeps what interrupted writes left and lets the manager choose and
    load the start; the other ranks load the checkpoint it chose."""
    if not accelerator.is_main_process:
        return manager.follow(broadcast_object(accelerator, None))
    run.lock.acquire()
    for leftover in run.sweep_temporaries():
        log.info("removed %s, left by an interrupted save", leftover.name)
    start = manager.start(config.resume, config.init_from)
    broadcast_object(accelerator, start.without_loaded())
    return start


def check_data_unchanged(start: Start, recorded: dict | None, data: dict[str, Any], config: TrainConfig) -> bool:
    """A resume over a dataset whose fingerprint changed is refused (its sampler position means
    nothing over other data), unless --data-changed restart-epoch says how to go on: then True."""
    if start.loaded is None:
        return False
    saved = start.loaded.json.get(st.LOOP, {}).get("data") or recorded or {}
    if not saved.get("fingerprint") or saved["fingerprint"] == data["fingerprint"]:
        return False
    if config.data_changed == "restart-epoch":
        return True
    changes = []
    if saved.get("path") and saved["path"] != data["path"]:
        changes.append(f"folder {saved['path']} -> {data['path']}")
    if saved.get("description") != data["description"]:
        changes.append(f"{saved.get('description')} -> {data['description']}")
    changes.append(f"content fingerprint {saved['fingerprint']} -> {data['fingerprint']}")
    raise UsageError(
        f"--data {config.data}: the dataset changed since {start.resume_from.name} was saved ({'; '.join(changes)}).\n"
        f"  To go on over the new data with the same weights and optimizer, add --data-changed restart-epoch;\n"
        f"  or start a new run from its weights: --run NEW_RUN --init-from {start.resume_from.path}")


def initializer(adapter: ModelAdapter, start: Start) -> Callable[[torch.nn.Module], None] | None:
    """--init-from: weights only, step 0. Upstream files go through the adapter's importer."""
    if start.init_from is None or start.resume_from is not None:
        return None

    def load(model: torch.nn.Module) -> None:
        if start.init_is_upstream_file:
            adapter.load_upstream_weights(model, start.init_from)
            return
        loaded = load_checkpoint(start.init_from, components=[st.MODEL, st.LOOP])
        arch, current = loaded.json.get(st.LOOP, {}).get("architecture"), _jsonable(adapter.architecture())
        if arch is not None and _jsonable(arch) != current:
            differing = sorted(k for k in set(arch) | set(current) if arch.get(k) != current.get(k))
            raise IncompatibleCheckpointError(f"--init-from {start.init_from}: architecture differs in {', '.join(differing)}")
        adapter.load_checkpoint_weights(model, loaded.tensors[st.MODEL])

    return load


def check_compatible(checkpoint: LoadedCheckpoint, config: TrainConfig, adapter: ModelAdapter) -> None:
    """Refuse a checkpoint whose architecture differs; name every differing field."""
    saved = checkpoint.json.get(st.LOOP, {})
    saved_config, saved_arch = saved.get("config", {}), saved.get("architecture", {})
    differences = [
        f"{field}: checkpoint {saved_config.get(field)!r}, now {getattr(config, field)!r}"
        for field in ARCHITECTURE_FIELDS
        if field in saved_config and saved_config.get(field) != _jsonable(getattr(config, field))
    ]
    current_arch = _jsonable(adapter.architecture())
    differences += [
        f"{key}: checkpoint {saved_arch.get(key)!r}, now {current_arch.get(key)!r}"
        for key in sorted(set(saved_arch) | set(current_arch))
        if saved_arch.get(key) != current_arch.get(key)
    ]
    if differences:
        raise IncompatibleCheckpointError(
            f"{checkpoint.path} was trained with another architecture:\n  " + "\n  ".join(differences)
            + "\n  use the same model settings to resume, or --init-from to start a new run from its weights"
        )


@dataclass(frozen=True)
class CheckpointSizes:
    """Estimated bytes of this run's checkpoints (tensors dominate; JSON files are small)."""

    full: int  # model + EMA + optimizer moments + RNG
    milestone: int  # what a milestone holds: full state, or model + EMA


def checkpoint_sizes(weights, params, config: TrainConfig) -> CheckpointSizes:
    sizes = plan_checkpoint_sizes(weights, sum(p.numel() for p in params), config.optimizer)
    return CheckpointSizes(sizes["full"], sizes["full"] if config.milestone_state == "full" else sizes["weights"])


def refuse_if_no_room(sizes: CheckpointSizes, run: RunFolder, config: TrainConfig) -> None:
    """A run that could never commit a checkpoint is refused before its first update.

    The disk guard never removes the newest full-state checkpoint while the next one is being
    written, so a budget must hold two of them; free space must hold at least one.
    """
    guard = DiskGuard(config.disk_budget_bytes())
    largest = max(sizes.full, sizes.milestone)
    if guard.budget_bytes is not None and guard.budget_bytes < sizes.full + largest:
        raise UsageError(
            f"--disk-budget {config.disk_budget}: a checkpoint of this run takes ~{format_size(sizes.full)} and the "
            f"budget must hold two (the newest is kept while the next is written); give at least "
            f"--disk-budget {size_flag(sizes.full + largest)}")
    free = shutil.disk_usage(run.path).free
    if free - guard.margin_bytes < sizes.full:
        raise UsageError(
            f"--run {run.path}: {format_size(free)} free, but a checkpoint of this run takes ~{format_size(sizes.full)} "
            f"(+{format_size(guard.margin_bytes)} kept free); free disk space or use a --run folder on a larger disk")


def size_flag(n: int) -> str:
    """A size for a flag, rounded up: '270K', '12M', '3G'."""
    for unit, scale in (("G", 2**30), ("M", 2**20)):
        if n >= 100 * scale:
            return f"{math.ceil(n / scale)}{unit}"
    return f"{math.ceil(n / 1024)}K"


def announce_start(reporter, config, adapter, model, splits, start: Start, loop, plan, run, has_validation: bool,
                   restart_epoch: bool) -> None:
    if start.resume_from is not None:
        reporter.say(f"resuming from {start.resume_from.path} at step {loop.step} (epoch {loop.epoch}, batch {loop.position})")
    if start.abandoned_to is not None:
        reporter.say(f"the checkpoints after {start.resume_from.name} (an abandoned future) were moved to "
                     f"{start.abandoned_to}: `voicetune ckpt list {run.path} --all` lists them", logging.WARNING)
    if restart_epoch:
        reporter.say(f"--data-changed restart-epoch: weights and optimizer kept, epoch {loop.epoch} starts over the "
                     f"new data ({splits.description})", logging.WARNING)
    if start.init_from is not None:
        reporter.say(f"new run from the weights of {start.init_from}, step 0")
    elif start.resume_from is None:
        reporter.say("new run, step 0")
    for name in start.quarantined:
        reporter.say(f"checkpoint {name} failed verification and was moved to {run.store.quarantine_dir}", logging.WARNING)
    skipped = plan.skipped_items()
    if skipped:
        reporter.say(f"{skipped} of {len(plan.lengths)} training clips are longer than --batch-frames "
                     f"{config.batch_frames} and are never used: pass --batch-frames {max(plan.lengths)} to use them all",
                     logging.WARNING)
    if not has_validation:
        reporter.say(f"no validation clip is usable ({splits.description}): validation is skipped and the best "
                     f"checkpoint is chosen by {config.best_metric}. Add clips, or prepare with --for {config.model}",
                     logging.WARNING)
    # The same plan `voicetune plan` prints: sizes, disk use, memory.
    run_plan = plan_for_model(config, adapter, model, run_dir=run.path, start_step=loop.step, hints=False)
    for line in run_plan.lines():
        reporter.say(line, logging.WARNING if "exceeds free disk" in line or "does NOT fit" in line else logging.INFO)
    reporter.say(f"data: {splits.description}")


# ---- per update ----


def train_update(state: st.TrainState, passes: UpdatePasses, batches, splits: DataSplits,
                 config: TrainConfig) -> dict[str, float]:
    """One optimizer update over `grad_accum` micro-batches; returns its scalars for the log."""
    accelerator, loop = state.accelerator, state.loop
    world = accelerator.num_processes
    update_started = time.monotonic()
    lr = state.schedule.lr(loop.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    frames = items = 0
    micro_batches = []
    for _ in range(config.grad_accum):
        batch, indices = next(batches)
        micro_batches.append((batch, indices))
        loop.position += world
        items += len(indices)
        frames += sum(splits.train_lengths[i] for i in indices)
    loss_sum = passes.run(micro_batches, loop.step + 1)  # split smaller and retried on out-of-memory
    grad_norm = clip_gradients(accelerator, state.params, config.grad_clip)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.weights)
    loop.step += 1
    loop.items_seen += items * world
    loop.frames_seen += frames * world
    loop.elapsed_seconds += time.monotonic() - update_started
    train_loss = mean_across_ranks(accelerator, loss_sum / config.grad_accum)
    loop.smoothed_loss = train_loss if loop.smoothed_loss is None else 0.98 * loop.smoothed_loss + 0.02 * train_loss
    if not math.isfinite(train_loss):
        log.warning("step %d: the loss is %s; lower --lr or check the data", loop.step, train_loss)
    return {"train/loss": train_loss, "train/lr": lr, "train/grad_norm": grad_norm,
            "train/loss_smoothed": loop.smoothed_loss, "frames": frames * world}


class Throughput:
    """Updates and frames per second between log lines, for the log and TensorBoard; time spent
    on milestone work (validation, samples) is left out of the rates."""

    def __init__(self, step: int, config: TrainConfig):
        self.config = config
        self.session_step, self.session_time = step, time.monotonic()
        self.last_step, self.last_time, self.frames = step, self.session_time, 0
        self.paused = self.paused_since_log = self.last_pause = 0.0

    def pause(self, seconds: float) -> None:
        self.last_pause = seconds
        self.paused += seconds
        self.paused_since_log += seconds

    def add(self, step: int, scalars: dict[str, float]) -> dict[str, float]:
        self.frames += scalars.pop("frames")
        if step % self.config.log_every == 0 or step == self.config.max_updates:
            now = time.monotonic()
            elapsed = max(now - self.last_time - self.paused_since_log, 1e-9)
            scalars["perf/updates_per_s"] = (step - self.last_step) / elapsed
            scalars["perf/frames_per_s"] = self.frames / elapsed
            if torch.cuda.is_available():
                scalars["perf/gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
            self.last_step, self.last_time, self.frames, self.paused_since_log = step, now, 0, 0.0
        return scalars

    def session_seconds(self) -> float:
        return time.monotonic() - self.session_time

    def session_rate(self, step: int) -> float:
        return (step - self.session_step) / max(self.session_seconds() - self.paused, 1e-9)


# ---- data ----------------------------------------------------------------------------------


def iterate_batches(adapter, splits: DataSplits, plan: BatchPlan, loop: st.LoopState, rank: int,
                    config: TrainConfig, accelerator) -> Iterator[tuple[Any, list[int]]]:
    """(batch, item indices) forever, epoch after epoch, from the saved epoch and position.

    The caller advances `loop.position` after using a batch, so a checkpoint records exactly
    the batches consumed, whatever the DataLoader workers prefetched.
    """
    from torch.utils.data import DataLoader

    workers = data_workers(config.workers)
    sampler = EpochsOfBatches(plan, loop.epoch, loop.position, rank)
    # One loader for the whole session: its workers live across epochs (a new loader per epoch
    # would fork and warm up new workers every epoch, which costs whole updates on small data).
    loader = DataLoader(
        splits.train, batch_sampler=sampler, collate_fn=adapter.collate, num_workers=workers,
        pin_memory=torch.cuda.is_available(), worker_init_fn=_ignore_stop_signals if workers else None,
        # A private generator: creating a loader must not draw from the global RNG,
        # or a resumed run (which creates one more loader) would diverge.
        generator=torch.Generator().manual_seed(config.seed),
    )
    for batch in loader:
        epoch, indices = sampler.issued.popleft()  # the loader yields batches in sampler order
        if epoch != loop.epoch:
            loop.epoch, loop.position = epoch, 0
        yield move_to(batch, accelerator.device), indices


class EpochsOfBatches:
    """The DataLoader's batch sampler: this rank's batches, epoch after epoch, from a saved
    (epoch, position). The loader draws ahead of training (prefetch), so each batch's epoch is
    queued in `issued` for the consumer, which moves the loop state only when it uses the batch."""

    def __init__(self, plan: BatchPlan, epoch: int, position: int, rank: int):
        self.plan, self.epoch, self.position, self.rank = plan, epoch, position, rank
        self.issued: collections.deque[tuple[int, list[int]]] = collections.deque()

    def __iter__(self) -> Iterator[list[int]]:
        epoch, position = self.epoch, self.position
        while True:
            for batch in self.plan.rank_batches(epoch, position, self.rank):
                self.issued.append((epoch, batch))
                yield batch
            epoch, position = epoch + 1, 0


def _ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: workers must leave stopping to the main process,
    # which finishes the update and saves before it shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def data_workers(requested: int | None) -> int:
    """Cores minus one, at most 8; a request above the core count is lowered with a warning."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    default = max(0, min(8, cores - 1))
    if requested is None:
        return default
    if requested > cores:
        log.warning("--workers %d is more than the %d cores here: using %d", requested, cores, default)
        return default
    return requested


def move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def clip_gradients(accelerator, params: list[torch.nn.Parameter], max_norm: float) -> float:
    if max_norm and max_norm > 0:
        return float(accelerator.clip_grad_norm_(params, max_norm))
    grads = [p.grad for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0


def mean_across_ranks(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="mean").item())


def agreed_stop_signal(accelerator, signals: StopSignals) -> int | None:
    """Any rank's stop request stops every rank at the same update."""
    local = signals.signum or 0
    if accelerator.num_processes == 1:
        return local or None
    t = torch.tensor([local], dtype=torch.int64, device=accelerator.device)
    agreed = int(accelerator.reduce(t, reduction="sum").item())
    if not agreed:
        return None
    return local or (signal.SIGTERM if agreed % int(signal.SIGTERM) == 0 else signal.SIGINT)


@contextlib.contextmanager
def preserved_rng(seed: int):
    """Run with a fixed seed and put every generator back afterwards."""
    saved = st.capture_rng()
    set_seeds(seed)
    try:
        yield
    finally:
        st.restore_rng(saved)


def validation_batches(splits: DataSplits, config: TrainConfig) -> list[list[int]]:
    """The fixed validation batches: empty when no validation clip exists or fits a batch."""
    if not splits.val_lengths:
        return []
    plan = BatchPlan.build(splits.val_lengths, config.seed, config.batch_size, config.batch_frames, shuffle=False)
    batches = plan.epoch_batches(0)
    return batches[: config.val_max_batches] if config.val_max_batches else batches


def finite_metrics(metrics: dict[str, float | None]) -> dict[str, float]:
    """Metrics without None, NaN or inf: a checkpoint's manifest is strict JSON."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


@torch.no_grad()
def validate(state: st.TrainState, splits: DataSplits, config: TrainConfig) -> float:
    """Mean loss over the validation split (fixed batches, fixed noise), across ranks."""
    adapter, accelerator, model = state.adapter, state.accelerator, state.model
    rank, world = accelerator.process_index, accelerator.num_processes
    batches = validation_batches(splits, config)
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    model.eval()
    try:
        with preserved_rng(VALIDATION_SEED + rank):
            for index in range(rank, len(batches), world):
                batch = move_to(adapter.collate([splits.val[i] for i in batches[index]]), accelerator.device)
                with accelerator.autocast():
                    loss = adapter.compute_loss(model, batch)
                total += torch.tensor([loss.float().item() * len(batches[index]), len(batches[index])],
                                      dtype=torch.float64, device=accelerator.device)
    finally:
        model.train()
    if world > 1:
        total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def write_samples(state: st.TrainState, prompts, reporter: Reporter, run: RunFolder, signals: StopSignals) -> None:
    """Synthesize the fixed prompts with the EMA weights into RUN/samples/step_N/ and TensorBoard,
    prompt by prompt until `sample_budget_seconds` are spent (the rest are left out, and said).

    A stop request cuts the synthesis short (StopRequested propagates); the files are written
    only once it is complete.
    """
    import copy

    step = state.loop.step
    try:
        ema_model = copy.deepcopy(state.core_model)
        state.adapter.load_checkpoint_weights(ema_model, state.ema.weights_like(state.weights))
        ema_model.eval()
        log.info("synthesizing the samples of step %d", step)
        samples, started, budget = [], time.monotonic(), state.config.sample_budget_seconds
        with signals.interruptible(), preserved_rng(SAMPLES_SEED), torch.no_grad():
            for index, prompt in enumerate(prompts):
                if index and budget is not None and time.monotonic() - started > budget:
                    reporter.say(f"samples of step {step}: {len(prompts) - index} of {len(prompts)} prompts left out "
                                 f"after {budget:.0f} s (--set sample_budget_seconds=...)", logging.WARNING)
                    break
                samples += state.adapter.synthesize_samples(ema_model, [prompt])
        del ema_model
        out = run.samples_dir / f"step_{step:08d}"
        reporter.samples(step, samples, out)
        reporter.say(f"samples of step {step}: {out}")
    except Exception as err:  # samples are for people; a failure must not stop training
        log.error("samples of step %d failed", step, exc_info=True)
        reporter.say(f"samples of step {step} failed: {type(err).__name__}: {err} (training goes on)", logging.WARNING)


def milestone(state: st.TrainState, splits: DataSplits, config: TrainConfig, prompts, reporter: Reporter,
              run: RunFolder, signals: StopSignals, has_validation: bool, stop: int | None,
              evaluator: MilestoneEvaluator, meter: "Throughput") -> dict[str, float]:
    """A milestone's metrics (smoothed training loss, validation loss, scores) and its samples;
    their time is kept out of the update rate.

    Validation, samples and scores are for people: a stop request cuts them short (or skips
    them), so the final checkpoint is committed within seconds of SIGTERM.
    """
    started = time.monotonic()
    metrics = milestone_metrics(state, splits, config, prompts, reporter, run, signals, has_validation, stop)
    if stop is None:
        metrics.update(evaluator.evaluate(state.loop.step, state.core_model, state.ema, state.weights))  # finite already
    meter.pause(time.monotonic() - started)
    reporter.milestone_done(meter.last_pause)
    return metrics


def milestone_metrics(state: st.TrainState, splits: DataSplits, config: TrainConfig, prompts, reporter: Reporter,
                      run: RunFolder, signals: StopSignals, has_validation: bool, stop: int | None) -> dict[str, float]:
    """Smoothed training loss and validation loss (skipped on a stop request), and the samples."""
    metrics = {"train_loss": state.loop.smoothed_loss}  # every milestone's fallback measure
    single = state.accelerator.num_processes == 1
    if stop is None:
        with contextlib.suppress(StopRequested):
            if has_validation:
                # One rank alone must not leave validation's collective: cut short on one process only.
                with signals.interruptible() if single else contextlib.nullcontext():
                    metrics["val_loss"] = validate(state, splits, config)
                reporter.scalars(state.loop.step, {"val/loss": metrics["val_loss"]})
            if prompts and state.accelerator.is_main_process:
                write_samples(state, prompts, reporter, run, signals)
    return finite_metrics(metrics)


def logged_error(err: Exception, run: RunFolder) -> Exception:
    """Every error of a run lands in its train.log, the traceback included; returns the error the
    CLI shows (a failed save as a one-line VoicetuneError)."""
    error = err
    if isinstance(err, SaveFailed):
        error = VoicetuneError(f"{err}. Earlier checkpoints are intact; free disk space and rerun to resume")
    log.error("training failed: %s: %s", type(err).__name__, err, exc_info=err)
    error.log_path = run.log_path  # where the CLI says the traceback is
    return error


def final_save_missing(manager: CheckpointManager, step: int) -> str:
    """The error of a run whose last update has no committed checkpoint."""
    infos = manager.store.valid_infos()
    newest = max(infos, key=lambda i: i.step) if infos else None
    kept = f"the newest saved checkpoint is {newest.name}" if newest else "no checkpoint of this run was saved"
    return (f"the checkpoint of the final step {step} was NOT saved (see the SKIPPED lines above): {kept}. "
            f"Free disk space in {manager.run_dir} (or raise --disk-budget) and rerun the same command to finish")


def export_ready(manager: CheckpointManager, adapter: ModelAdapter, say: Callable[..., None]) -> None:
    """When training ends, the best checkpoint (else the newest) goes to RUN/ready/ in the model's
    upstream format, ready for upstream inference tools (seed 004's "ready" folder)."""
    from voicetune.synthesis.inference import export_trained

    ready = manager.run_dir / "ready"
    try:
        source, files = manager.export_ready(lambda ckpt, folder: export_trained(ckpt, adapter.export_format, folder))
        say(f"exported {source.name} ({adapter.export_format}) to {ready}: {', '.join(p.name for p in files)}")
    except Exception as err:  # the checkpoints are safe; an export can be redone with `ckpt export`
        log.error("export to %s failed", ready, exc_info=True)
        say(f"export to {ready} failed: {type(err).__name__}: {err}; run `voicetune ckpt export "
            f"{manager.run_dir} --format {adapter.export_format} --out DIR`", logging.WARNING)


def resume_hint(signum: int, config: TrainConfig, step: int, saved: bool) -> str:
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    what = "after a clean checkpoint" if saved else "(its final checkpoint was skipped: see the errors above)"
    return f"stopped by {name} at step {step} {what}; to resume, rerun the same command:\n  {command_line()}"


def command_line() -> str:
    """The command as the user gave it (every flag, --config included), ready to paste."""
    import shlex
    import sys

    return shlex.join(["voicetune", *sys.argv[1:]])


def already_complete(manager: CheckpointManager, adapter: ModelAdapter, config: TrainConfig, newest, is_main: bool) -> TrainResult:
    """A rerun of a finished run: nothing to train, no samples redone, ready/ only if it is missing."""
    from voicetune.console import say

    best = manager.best() or manager.best(metric="train_loss")
    if is_main:
        say(f"the run is complete: {newest.name} is at step {newest.step} of --max-updates {config.max_updates}"
            f"{f'; best {best.name}' if best else ''}. Raise --max-updates to train further")
        if not (manager.run_dir / "ready").is_dir():
            export_ready(manager, adapter, say)
    return TrainResult(newest.step, None, newest.name, best.name if best else None,
                       best.metrics.get(config.best_metric) if best else None)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
