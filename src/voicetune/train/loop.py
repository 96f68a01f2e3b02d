"""The training loop: one function, read top to bottom.

    train(config) -> TrainResult

1. Settle the config (model defaults for unset fields), the accelerator, the run folder and its
   LOCK; remove temporary directories of interrupted commits.
2. Load the data, build the model, decide where to start (resume / --init-from / fresh),
   restore full state, print the plan (trainable parameters, projected disk use).
3. Loop over updates: micro-batches with gradient accumulation, clip, AdamW, EMA, log; at each
   save point validate (milestones), synthesize samples (milestones), and hand a snapshot of the
   state to the background saver; stop cleanly on SIGTERM/SIGINT.
4. Wait for the last save; report.

Components (adapter, store, policies, saver, reporter) are built here and passed around; the
loop itself holds no model- or storage-specific code.
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
from typing import Any, Iterator

import torch

from voicetune import fsio
from voicetune.checkpoints.policy import (
    CheckpointInfo,
    DiskGuard,
    RetentionPolicy,
    SaveDecision,
    SaveSchedule,
    projected_peak_bytes,
)
from voicetune.checkpoints.store import CheckpointPayload, LoadedCheckpoint, StoredCheckpoint, load_checkpoint
from voicetune.checkpoints.serialization import json_bytes, safetensors_size
from voicetune.config import ARCHITECTURE_FIELDS, TrainConfig, format_size
from voicetune.console import attach_log_file, detach_log_file
from voicetune.errors import CheckpointError, StoppedBySignal, UsageError, VoicetuneError
from voicetune.models.base import DataSplits, ModelAdapter
from voicetune.models.registry import create_adapter
from voicetune.train import state as st
from voicetune.train.ema import EMA
from voicetune.train.reporting import Reporter
from voicetune.train.run_folder import RunFolder, StartPoint
from voicetune.train.sampler import BatchPlan
from voicetune.train.saver import BackgroundSaver, SaveFailed
from voicetune.train.schedule import LRSchedule
from voicetune.train.signals import StopSignals

log = logging.getLogger("voicetune.train")

# Seeds used for validation and samples, inside a forked RNG: the same noise at every milestone
# makes validation losses comparable, and training's own random stream is never touched.
VALIDATION_SEED = 1234
SAMPLES_SEED = 4321
MAX_CONSECUTIVE_SAVE_FAILURES = 3


@dataclass
class TrainResult:
    step: int
    stopped_by: int | None  # signal number, or None when max_updates was reached
    last_checkpoint: str | None
    best_checkpoint: str | None
    best_value: float | None


def train(config: TrainConfig, adapter: ModelAdapter | None = None) -> TrainResult:
    """Train `config.model` on `config.data` into `config.run`, resuming as `config.resume` says."""
    if config.data is None or config.run is None:
        raise UsageError("train needs --data DATASET and --run RUN")
    if not Path(config.data).is_dir():
        raise UsageError(f"--data {config.data}: no such dataset folder; make one with `voicetune prepare`")
    adapter = adapter or create_adapter(config)
    config = settle_config(config, adapter)

    accelerator = make_accelerator(config)
    rank, world = accelerator.process_index, accelerator.num_processes
    is_main = accelerator.is_main_process
    run = RunFolder(config.run)
    if run.path.exists() and not run.path.is_dir():
        raise UsageError(f"--run {run.path}: is a file, not a folder; pass a new or existing run folder")
    created = not run.path.exists()  # a refused command removes the folder it created
    discard_run = False
    run.path.mkdir(parents=True, exist_ok=True)
    log_handler = attach_log_file(run.log_path if is_main else run.path / f"train.rank{rank}.log")
    signals = StopSignals().install()
    reporter: Reporter | None = None
    saver: BackgroundSaver | None = None
    batches: Iterator | None = None
    try:
        if is_main:
            run.lock.acquire()
            for leftover in run.sweep_temporaries():
                log.info("removed %s, left by an interrupted save", leftover.name)
        start = broadcast_object(accelerator, run.choose_start(config.resume, config.init_from) if is_main else None)

        # ---- data, model, starting point -------------------------------------------------
        with accelerator.main_process_first():  # rank 0 fills the cache, the others reuse it
            splits = adapter.load_data(Path(config.data), run.cache_dir)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        model = adapter.build_model()
        checkpoint = load_checkpoint(start.resume_from.path) if start.resume_from else None
        if checkpoint is not None:
            check_compatible(checkpoint, config, adapter)
            adapter.load_checkpoint_weights(model, checkpoint.tensors[st.MODEL])
        elif start.init_from is not None:
            init_weights(adapter, model, start)

        params = adapter.trainable_parameters(model)
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        if checkpoint is not None:
            optimizer.load_state_dict(checkpoint.tree(st.OPTIMIZER))
        # prepare() may move the model to the GPU: take views of the weights and build the EMA after it.
        model, optimizer = accelerator.prepare(model, optimizer)
        core_model = accelerator.unwrap_model(model)
        weights = adapter.checkpoint_weights(core_model)  # live views of the trained tensors
        ema = EMA(weights, config.ema_decay, config.ema_update_every, config.ema_update_after)
        loop = st.LoopState()
        rng_to_restore = None
        if checkpoint is not None:
            rng_to_restore = restore_loop_state(checkpoint, ema, accelerator, loop, rank)
        loop.sessions += 1
        plan = BatchPlan.build(splits.train_lengths, config.seed, config.batch_size, config.batch_frames, world)
        if not plan.epoch_batches(0):
            raise UsageError(
                f"--data {config.data}: {len(splits.train_lengths)} training items make no batch for "
                f"{world} process(es); add data or lower --batch-size/--batch-frames"
            )
        has_validation = bool(validation_batches(splits, config))
        if not has_validation and config.best_metric == "val_loss":
            config = config.model_copy(update={"best_metric": "train_loss"})  # announced in announce_start
        schedule = LRSchedule(config.lr, config.warmup_updates, config.max_updates, config.decay, config.min_lr_ratio)
        save_schedule = SaveSchedule(config.save_every, config.last_every, config.last_every_minutes, config.milestone_state)
        retention = RetentionPolicy(config.keep_last, config.keep_every, config.save_every, config.best_metric, config.best_mode)
        disk_guard = DiskGuard(config.disk_budget_bytes())
        sizes = checkpoint_sizes(weights, ema, params, config)
        if is_main:
            refuse_if_no_room(sizes, run, config)
        resumed_name = start.resume_from.name if start.resume_from and start.resume_from.path.parent == run.store.dir else None

        reporter = Reporter(run.path, run.tensorboard_dir, run.metrics_path, loop.step, config.max_updates,
                            config.log_every, enabled=is_main)

        def after_commit(stored: StoredCheckpoint) -> None:
            # Runs in the saver thread, after a successful commit only.
            removed = run.store.apply_retention(retention, protected={n for n in (resumed_name, stored.name) if n})
            if removed:
                log.info("retention removed %s", ", ".join(removed))

        saver = BackgroundSaver(run.store, after_commit, enabled=config.async_save)
        if is_main:
            run.record_session(config.flag_dict(), adapter.architecture(),
                               {"path": str(Path(config.data).resolve()), "fingerprint": splits.fingerprint,
                                "description": splits.description}, start, loop.step)
            announce_start(reporter, config, splits, start, loop, params, plan, sizes, save_schedule, retention, run,
                           has_validation)

        prompts = adapter.sample_prompts(splits, config.sample_text, config.max_sample_prompts) if config.samples else []
        if checkpoint is not None and prompts and is_main:
            # Samples right after every resume, so that progress is audible even when the run
            # never reaches another milestone (F5's own trainer stops sampling after a resume).
            write_samples(adapter, core_model, ema, weights, prompts, reporter, run, loop.step)
        del checkpoint

        # The random streams are set last, right before the first update, so that nothing done
        # during set-up (which differs between a fresh start and a resume) can shift them.
        if rng_to_restore is not None:
            st.restore_rng(rng_to_restore)
        else:
            set_seeds(config.seed + rank)

        # ---- the loop ------------------------------------------------------------------------
        batches = iterate_batches(adapter, splits, plan, loop, rank, config, accelerator)
        last_full_save = time.monotonic()
        consecutive_failures = 0
        session_start_step, session_start_time = loop.step, time.monotonic()
        last_log_time, last_log_step, frames_since_log = session_start_time, loop.step, 0
        model.train()
        while loop.step < config.max_updates:
            update_started = time.monotonic()
            lr = schedule.lr(loop.step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            frames = items = 0
            for micro in range(config.grad_accum):
                batch, indices = next(batches)
                sync = micro == config.grad_accum - 1
                with (contextlib.nullcontext() if sync else accelerator.no_sync(model)):
                    with accelerator.autocast():
                        loss = adapter.compute_loss(model, batch)
                    accelerator.backward(loss / config.grad_accum)
                loss_sum += loss.detach().float().item()
                loop.position += world
                items += len(indices)
                frames += sum(splits.train_lengths[i] for i in indices)
            grad_norm = clip_gradients(accelerator, params, config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update(weights)
            loop.step += 1
            loop.items_seen += items * world
            loop.frames_seen += frames * world
            frames_since_log += frames * world
            loop.elapsed_seconds += time.monotonic() - update_started
            train_loss = mean_across_ranks(accelerator, loss_sum / config.grad_accum)
            loop.smoothed_loss = train_loss if loop.smoothed_loss is None else 0.98 * loop.smoothed_loss + 0.02 * train_loss

            now = time.monotonic()
            scalars = {"train/loss": train_loss, "train/lr": lr, "train/grad_norm": grad_norm,
                       "train/loss_smoothed": loop.smoothed_loss}
            if loop.step % config.log_every == 0 or loop.step == config.max_updates:
                elapsed = max(now - last_log_time, 1e-9)
                scalars["perf/updates_per_s"] = (loop.step - last_log_step) / elapsed
                scalars["perf/frames_per_s"] = frames_since_log / elapsed
                if torch.cuda.is_available():
                    scalars["perf/gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
                last_log_time, last_log_step, frames_since_log = now, loop.step, 0
            reporter.update(loop.step, scalars)
            if not math.isfinite(train_loss):
                reporter.say(f"step {loop.step}: the loss is {train_loss}; lower --lr or check the data", logging.WARNING)

            stop_signal = agreed_stop_signal(accelerator, signals)
            decision = save_schedule.decide(loop.step, (now - last_full_save) / 60)
            if loop.step == config.max_updates or stop_signal is not None:
                # The last checkpoint of a session always has full state.
                decision = SaveDecision(decision.role if decision else "rolling", "full")
            if decision is None:
                continue

            metrics: dict[str, float] = {}
            if decision.role == "milestone":
                # The smoothed training loss is every milestone's fallback measure (the best of a
                # run without validation clips); NaN or inf is left out, never written as JSON.
                metrics["train_loss"] = loop.smoothed_loss
                if has_validation:
                    metrics["val_loss"] = validate(adapter, accelerator, model, splits, config, world, rank)
                    reporter.scalars(loop.step, {"val/loss": metrics["val_loss"]})
                metrics = finite_metrics(metrics)
                if config.best_metric in metrics and retention.is_better(metrics[config.best_metric], loop.best_value):
                    loop.best_value, loop.best_step = metrics[config.best_metric], loop.step
                if prompts and is_main:
                    write_samples(adapter, core_model, ema, weights, prompts, reporter, run, loop.step)
            payload = build_payload(decision, adapter, accelerator, optimizer, ema, weights, schedule, loop,
                                    config, metrics, world)
            if is_main:
                try:
                    saver.wait()  # a failure of the previous background save surfaces here
                    consecutive_failures = 0
                except SaveFailed as failed:
                    consecutive_failures += 1
                    reporter.say(f"{failed}; earlier checkpoints are intact", logging.ERROR)
                    if consecutive_failures >= MAX_CONSECUTIVE_SAVE_FAILURES:
                        raise VoicetuneError(f"{consecutive_failures} checkpoints in a row failed, the last: {failed}. "
                                             f"Free disk space in {run.path} and rerun the same command to resume") from None
                if fit_on_disk(payload, run, disk_guard, retention, resumed_name, reporter):
                    saver.submit(payload)
                    if decision.kind == "full":
                        last_full_save = now
            if stop_signal is not None:
                if is_main:
                    finish_saves(saver, reporter)
                accelerator.wait_for_everyone()
                saved = saver.last_committed is not None and saver.last_committed.step == loop.step
                raise StoppedBySignal(stop_signal, resume_hint(stop_signal, config, loop.step, saved or not is_main))

        if is_main:
            finish_saves(saver, reporter)
            if saver.last_committed is None or saver.last_committed.step != loop.step:
                raise VoicetuneError(final_save_missing(run, loop.step))
            export_ready(adapter, run, config, reporter)
        accelerator.wait_for_everyone()
        rate = (loop.step - session_start_step) / max(time.monotonic() - session_start_time, 1e-9)
        # "best" is read back from the committed checkpoints: never one whose save was skipped.
        best = retention.best(run.store.valid_infos()) if is_main else None
        best_text = (f"best {config.best_metric} {best.metrics[config.best_metric]:.4f} at step {best.step} ({best.name})"
                     if best else f"no checkpoint has a {config.best_metric}")
        reporter.say(f"done: {loop.step} updates ({rate:.2f} updates/s this session); {best_text}")
        last = saver.last_committed.name if saver.last_committed else None
        return TrainResult(loop.step, None, last, best.name if best else None,
                           best.metrics[config.best_metric] if best else None)
    except StoppedBySignal:
        raise
    except Exception as err:
        error = err
        if isinstance(err, SaveFailed):
            error = VoicetuneError(f"{err}. Earlier checkpoints are intact; free disk space and rerun to resume")
        # Every error of a run lands in its train.log, the traceback included.
        log.error("training failed: %s: %s", type(err).__name__, err, exc_info=err)
        error.log_path = run.log_path  # where the CLI says the traceback is
        discard_run = is_main and created and isinstance(error, UsageError) and not run.store.scan()
        if error is err:
            raise
        raise error from None
    finally:
        if batches is not None:
            # Shut the DataLoader workers down now: an exception's traceback would otherwise keep
            # the suspended generator (and its workers, which ignore SIGTERM) alive until exit.
            batches.close()
        if saver is not None and saver.in_flight:
            with contextlib.suppress(SaveFailed):
                saver.wait()  # never leave a commit half-done on the way out of an error
        if reporter is not None:
            reporter.close()
        signals.uninstall()
        if is_main:
            run.lock.release()
        detach_log_file(log_handler)
        if discard_run:
            shutil.rmtree(run.path, ignore_errors=True)


# ---- set-up ------------------------------------------------------------------------------


def settle_config(config: TrainConfig, adapter: ModelAdapter) -> TrainConfig:
    """Fill fields left unset with the model's defaults, then generic ones."""
    defaults = {k: v for k, v in adapter.default_settings().items() if getattr(config, k, None) is None}
    values = config.model_dump()
    values.update(defaults)
    if values.get("lr") is None:
        values["lr"] = 1e-4
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
        raise CheckpointError(
            f"{checkpoint.path} was trained with another architecture:\n  " + "\n  ".join(differences)
            + "\n  use the same model settings to resume, or --init-from to start a new run from its weights"
        )


def init_weights(adapter: ModelAdapter, model: torch.nn.Module, start: StartPoint) -> None:
    """--init-from: weights only, step 0. Upstream files go through the adapter's importer."""
    if start.init_is_upstream_file:
        adapter.load_upstream_weights(model, start.init_from)
        return
    loaded = load_checkpoint(start.init_from, components=[st.MODEL, st.LOOP])
    arch = loaded.json.get(st.LOOP, {}).get("architecture")
    if arch is not None and _jsonable(arch) != _jsonable(adapter.architecture()):
        differing = sorted(k for k in set(arch) | set(adapter.architecture()) if arch.get(k) != _jsonable(adapter.architecture()).get(k))
        raise CheckpointError(f"--init-from {start.init_from}: architecture differs in {', '.join(differing)}")
    adapter.load_checkpoint_weights(model, loaded.tensors[st.MODEL])


def restore_loop_state(checkpoint: LoadedCheckpoint, ema: EMA, accelerator, loop: st.LoopState, rank: int) -> dict:
    """EMA, grad scaler and loop counters; returns this rank's RNG state for the caller to apply last."""
    ema.load_state_dict(checkpoint.tensors[st.EMA_FILE], checkpoint.json[st.EMA_FILE])
    saved = checkpoint.json[st.LOOP]
    restored = st.LoopState.from_json(saved["state"])
    loop.__dict__.update(restored.__dict__)
    if saved.get("scaler") and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(saved["scaler"])
    rng_tree = checkpoint.tree(st.RNG)
    rank_state = st.rng_for_rank(rng_tree, rank)
    if rank_state is None:
        log.warning("the checkpoint has no RNG state for rank %d (different process count): rank 0's is used", rank)
        rank_state = st.rng_for_rank(rng_tree, 0)
    return rank_state


@dataclass(frozen=True)
class CheckpointSizes:
    """Estimated bytes of this run's checkpoints (tensors dominate; JSON files are small)."""

    full: int  # model + EMA + optimizer moments + RNG
    milestone: int  # what a milestone holds: full state, or model + EMA


# manifest, loop/EMA/optimizer JSON and the store's own allowance: small, but a tiny model's
# checkpoint is small too.
JSON_FILES_BYTES = 16 * 1024


def checkpoint_sizes(weights, ema: EMA, params, config: TrainConfig) -> CheckpointSizes:
    weight_bytes = safetensors_size(weights) + JSON_FILES_BYTES
    ema_bytes = 4 * sum(v.numel() for v in ema.shadow.values())
    rng_json, rng_tensors = st.rng_files([st.capture_rng()])
    rng_bytes = safetensors_size(rng_tensors) + len(json_bytes(rng_json))
    full = weight_bytes + ema_bytes + 8 * sum(p.numel() for p in params) + rng_bytes  # AdamW: two fp32 moments
    return CheckpointSizes(full, full if config.milestone_state == "full" else weight_bytes + ema_bytes)


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


def announce_start(reporter, config, splits, start, loop, params, plan, sizes: CheckpointSizes, save_schedule,
                   retention, run, has_validation: bool) -> None:
    trainable = sum(p.numel() for p in params)
    if start.resume_from is not None:
        reporter.say(f"resuming from {start.resume_from.path} at step {loop.step} (epoch {loop.epoch}, batch {loop.position})")
    elif start.init_from is not None:
        reporter.say(f"new run from the weights of {start.init_from}, step 0")
    else:
        reporter.say("new run, step 0")
    for name in start.quarantined:
        reporter.say(f"checkpoint {name} failed verification and was moved to {run.store.quarantine_dir}", logging.WARNING)
    reporter.say(f"model {config.model}: {trainable:,} trainable parameters; data: {splits.description}")
    skipped = plan.skipped_items()
    if skipped:
        reporter.say(f"{skipped} of {len(plan.lengths)} training clips are longer than --batch-frames "
                     f"{config.batch_frames} and are never used: pass --batch-frames {max(plan.lengths)} to use them all",
                     logging.WARNING)
    if not has_validation:
        reporter.say(f"no validation clip is usable ({splits.description}): validation is skipped and the best "
                     f"checkpoint is chosen by {config.best_metric}. Add clips, or prepare with --for {config.model}",
                     logging.WARNING)
    peak = projected_peak_bytes(sizes.full, sizes.milestone, save_schedule, retention, loop.step, config.max_updates)
    free = shutil.disk_usage(run.path).free
    reporter.say(f"checkpoints: ~{format_size(sizes.full)} full state, ~{format_size(sizes.milestone)} per milestone; "
                 f"projected peak disk use {format_size(peak)} ({format_size(free)} free)")
    if peak > free:
        reporter.say("the projected peak exceeds free disk space: retention and the disk guard will prune or skip saves; "
                     "consider --keep-last, --milestone-state weights or --disk-budget", logging.WARNING)


# ---- per update --------------------------------------------------------------------------


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
def validate(adapter, accelerator, model, splits: DataSplits, config: TrainConfig, world: int, rank: int) -> float:
    """Mean loss over the validation split (fixed batches, fixed noise), across ranks."""
    batches = validation_batches(splits, config)
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    model.eval()
    with preserved_rng(VALIDATION_SEED + rank):
        for index in range(rank, len(batches), world):
            batch = move_to(adapter.collate([splits.val[i] for i in batches[index]]), accelerator.device)
            with accelerator.autocast():
                loss = adapter.compute_loss(model, batch)
            total += torch.tensor([loss.float().item() * len(batches[index]), len(batches[index])],
                                  dtype=torch.float64, device=accelerator.device)
    model.train()
    if world > 1:
        total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def write_samples(adapter, model, ema: EMA, weights, prompts, reporter: Reporter, run: RunFolder, step: int) -> None:
    """Synthesize the fixed prompts with the EMA weights into RUN/samples/step_N/ and TensorBoard."""
    import copy

    try:
        ema_model = copy.deepcopy(model)
        adapter.load_checkpoint_weights(ema_model, ema.weights_like(weights))
        ema_model.eval()
        with preserved_rng(SAMPLES_SEED), torch.no_grad():
            samples = adapter.synthesize_samples(ema_model, prompts)
        del ema_model
        out = run.samples_dir / f"step_{step:08d}"
        reporter.samples(step, samples, out)
        reporter.say(f"samples of step {step}: {out}")
    except Exception as err:  # samples are for people; a failure must not stop training
        log.error("samples of step %d failed", step, exc_info=True)
        reporter.say(f"samples of step {step} failed: {type(err).__name__}: {err} (training goes on)", logging.WARNING)


def build_payload(decision: SaveDecision, adapter, accelerator, optimizer, ema: EMA, weights, schedule: LRSchedule,
                  loop: st.LoopState, config: TrainConfig, metrics: dict[str, float], world: int) -> CheckpointPayload | None:
    """Snapshot everything into host memory (the only part of a save on the training thread)."""
    rng_states = [st.capture_rng()]
    if world > 1:
        rng_states = [None] * world
        torch.distributed.all_gather_object(rng_states, st.capture_rng())
    if not accelerator.is_main_process:
        return None
    pin = torch.cuda.is_available()
    ema_tensors, ema_counters = ema.state_dict()
    loop_json = {
        "state": loop.to_json(),
        "config": config.flag_dict(),
        "architecture": _jsonable(adapter.architecture()),
        "schedule": schedule.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "metrics": metrics,
    }
    payload = CheckpointPayload(
        step=loop.step, role=decision.role, kind=decision.kind, epoch=loop.epoch, metrics=metrics,
        wall_time=loop.elapsed_seconds, config_hash=config.config_hash(),
        tensor_files={st.MODEL: st.snapshot_tensors(weights, pin), st.EMA_FILE: st.snapshot_tensors(ema_tensors, pin)},
        json_files={st.EMA_FILE: ema_counters, st.LOOP: loop_json},
    )
    if decision.kind == "full":
        opt_json, opt_tensors = st.optimizer_files(optimizer.state_dict())
        rng_json, rng_tensors = st.rng_files(rng_states)
        payload.tensor_files[st.OPTIMIZER] = st.snapshot_tensors(opt_tensors, pin)
        payload.json_files[st.OPTIMIZER] = opt_json
        payload.tensor_files[st.RNG] = st.snapshot_tensors(rng_tensors)
        payload.json_files[st.RNG] = rng_json
    return payload


def fit_on_disk(payload: CheckpointPayload, run: RunFolder, guard: DiskGuard, retention: RetentionPolicy,
                resumed_name: str | None, reporter: Reporter) -> bool:
    """Disk guard: prune what retention allows, or skip this save with a loud warning."""
    infos = run.store.valid_infos()
    planned = CheckpointInfo(f"step_{payload.step:08d}", payload.step, payload.role, payload.kind,
                             payload.estimated_bytes(), payload.metrics)
    run.path.mkdir(parents=True, exist_ok=True)
    verdict = guard.check(planned, shutil.disk_usage(run.path).free, sum(i.size_bytes for i in infos), infos,
                          retention, protected={resumed_name} if resumed_name else set())
    if not verdict.fits:
        reporter.say(f"SKIPPED the checkpoint of step {payload.step}: {verdict.reason}. Training goes on; "
                     f"free disk space or raise --disk-budget", logging.ERROR)
        return False
    for name in verdict.prune:
        run.store.remove(name)
        reporter.say(f"disk guard: removed {name} early to make room (retention would remove it after this save)")
    return True


def export_ready(adapter, run: RunFolder, config: TrainConfig, reporter: Reporter) -> None:
    """When training ends, the best checkpoint (else the newest) goes to RUN/ready/ in the model's
    upstream format, ready for upstream inference tools (seed 004's "ready" folder)."""
    from voicetune.inference import export_trained, resolve_checkpoint

    ready = run.path / "ready"
    try:
        source = resolve_checkpoint(run.path)
        # The old ready/ stays until the new one is complete (fsio.atomic_dir never deletes first).
        with fsio.atomic_dir(ready) as tmp:
            files = export_trained(source.path, adapter.export_format, tmp)
            (tmp / "SOURCE.txt").write_text(f"{source.path}\nstep {source.step}\n", encoding="utf-8")
        reporter.say(f"exported {source.name} ({adapter.export_format}) to {ready}: {', '.join(p.name for p in files)}")
    except Exception as err:  # the checkpoints are safe; an export can be redone with `ckpt export`
        log.error("export to %s failed", ready, exc_info=True)
        reporter.say(f"export to {ready} failed: {type(err).__name__}: {err}; "
                     f"run `voicetune ckpt export {run.path} --format {adapter.export_format} --out DIR`", logging.WARNING)


def final_save_missing(run: RunFolder, step: int) -> str:
    """The error of a run whose last update has no committed checkpoint."""
    infos = run.store.valid_infos()
    newest = max(infos, key=lambda i: i.step) if infos else None
    kept = f"the newest saved checkpoint is {newest.name}" if newest else "no checkpoint of this run was saved"
    return (f"the checkpoint of the final step {step} was NOT saved (see the SKIPPED lines above): {kept}. "
            f"Free disk space in {run.path} (or raise --disk-budget) and rerun the same command to finish")


def finish_saves(saver: BackgroundSaver, reporter: Reporter) -> None:
    saver.wait()
    if saver.last_committed is not None:
        reporter.say(f"checkpoint {saver.last_committed.name} committed ({saver.last_seconds:.1f} s)")


def resume_hint(signum: int, config: TrainConfig, step: int, saved: bool) -> str:
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    what = "after a clean checkpoint" if saved else "(its final checkpoint was skipped: see the errors above)"
    return (f"stopped by {name} at step {step} {what}; rerun the same command "
            f"(voicetune train --data {config.data} --run {config.run} ...) to resume")


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
