"""The training loop: one function, read top to bottom.

    train(config) -> TrainResult

1. Settle the config (model defaults for unset fields), the accelerator and the run folder; the
   checkpoint manager takes the LOCK and chooses (and loads) where training starts (session.py).
2. Load the data (refusing a changed dataset unless told how to go on), build the TrainState
   (model, optimizer, EMA, schedule, counters), print the plan (session.py).
3. Loop over updates; at each save point the manager says what is due: a milestone validates and
   synthesizes samples (milestone.py, cut short by a stop request), then a snapshot goes to the
   background saver. SIGTERM/SIGINT stop after a final full checkpoint.
4. Wait for the last save, export the best checkpoint to RUN/ready/, report (session.py).

This module holds `train()` and the update loop only. Components (adapter, manager, state,
reporter) are built here and passed around; the loop holds no model- or storage-specific code.
Collectives between ranks live in distributed.py, the DataLoader in batches.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Generator
from typing import Any

import torch

from voicetune.checkpoints.manager import CheckpointManager, CheckpointOptions
from voicetune.checkpoints.policy import SaveDecision
from voicetune.config import TrainConfig
from voicetune.console import attach_log_file, detach_log_file
from voicetune.errors import StoppedBySignal, UsageError
from voicetune.faults import pause_point
from voicetune.models.base import DataSplits, ModelAdapter
from voicetune.models.registry import create_adapter
from voicetune.train import state as st
from voicetune.train.batches import iterate_batches
from voicetune.train.defaults import settle_config, settle_language
from voicetune.train.device import configure_device
from voicetune.train.distributed import (
    Watchdog,
    agreed_stop_signal,
    broadcast_object,
    collective_failure,
    make_accelerator,
    mean_across_ranks,
)
from voicetune.train.evaluator import MilestoneEvaluator
from voicetune.train.milestone import milestone, validation_batches, write_samples
from voicetune.train.oom import MemoryChange, UpdatePasses
from voicetune.train.reporting import Reporter, Throughput
from voicetune.train.run_folder import RunFolder
from voicetune.train.session import (
    TrainResult,
    already_complete,
    announce_start,
    check_paths,
    checkpoint_sizes,
    choose_start,
    finish_session,
    load_session,
    logged_error,
    refuse_if_no_room,
)
from voicetune.train.signals import StopRequested, StopSignals

log = logging.getLogger("voicetune.train")


def train(config: TrainConfig, adapter: ModelAdapter | None = None) -> TrainResult:
    """Train `config.model` on `config.data` into `config.run`, resuming as `config.resume` says."""
    check_paths(config)
    config, language, language_warning = settle_language(config)  # adapters read it (a tokenizer per language)
    adapter = adapter or create_adapter(config)
    config = settle_config(config, adapter)
    configure_device(config)  # --gpu-memory, deterministic: before anything touches CUDA
    accelerator = make_accelerator(config)
    rank, is_main = accelerator.process_index, accelerator.is_main_process
    assert config.run is not None, "TrainConfig requires --run"
    run = RunFolder(config.run)
    created = run.create()  # a refused command removes the folder it created
    log_handler = attach_log_file(run.log_path if is_main else run.path / f"train.rank{rank}.log")
    signals = StopSignals().install()
    watchdog = Watchdog.for_run(config, accelerator, run.log_path)
    reporter: Reporter | None = None
    manager = CheckpointManager(
        run.path,
        CheckpointOptions.from_config(config.flag_dict()),
        say=lambda text, level: reporter.say(text, level) if reporter else log.log(level, text),
    )
    batches: Generator[Any, None, None] | None = None
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
        reporter = Reporter(
            run.path,
            run.tensorboard_dir,
            run.metrics_path,
            loop.step,
            config.max_updates,
            config.log_every,
            enabled=is_main,
            save_every=config.save_every,
        )
        if is_main:
            run.record_session(
                config.flag_dict(), adapter.architecture(), data, start, loop.step, manager.session, language
            )
            announce_start(
                reporter,
                config,
                adapter,
                state.core_model,
                splits,
                start,
                loop,
                plan,
                run,
                has_validation,
                restart_epoch,
                language,
            )
            if language_warning:
                reporter.say(language_warning, logging.WARNING)
        prompts = (
            adapter.sample_prompts(splits, config.sample_text, config.max_sample_prompts) if config.samples else []
        )
        if start.loaded is not None and prompts and is_main:
            # Samples right after every resume, so that progress is audible even when the run
            # never reaches another milestone (sampling at milestones alone would leave it silent).
            with contextlib.suppress(StopRequested):
                write_samples(state, prompts, reporter, run, signals)
        evaluator = MilestoneEvaluator(config, adapter, run, reporter, loop.step, enabled=is_main)
        with contextlib.suppress(StopRequested), signals.interruptible():
            evaluator.score_cut_short(start.resume_from, state.core_model, state.ema, state.weights)
        rng = st.TrainState.rng_of(start.loaded, rank) if start.loaded is not None else None
        start.loaded = None  # the checkpoint's files are no longer needed
        # The random streams are set last, right before the first update, so that nothing done
        # during set-up (which differs between a fresh start and a resume) can shift them.
        st.restore_rng(rng) if rng is not None else st.set_seeds(config.seed + rank)

        # ---- the loop ------------------------------------------------------------------------
        batches = iterate_batches(adapter, splits, plan, loop, rank, config, accelerator)

        passes = update_passes(state, splits, config, reporter, run)
        meter = Throughput(loop.step, config)
        session_start_step = loop.step
        # A stop that came during a resume's set-up (its samples, the cut-short milestone's scoring)
        # ends the session at the checkpoint it resumed from, which nothing has changed since: the
        # next resume then starts there again and scores that milestone. An update first would
        # save a later step, and the milestone would stay unscored.
        stop = agreed_stop_signal(accelerator, signals) if start.resume_from is not None else None
        state.model.train()
        watchdog.start()  # from here on, a rank that waits past --collective-timeout ends the job
        while loop.step < config.max_updates and stop is None:
            watchdog.phase("update", loop.step + 1)
            scalars = train_update(state, passes, batches, splits, config)
            reporter.update(loop.step, meter.add(loop.step, scalars))
            stop = agreed_stop_signal(accelerator, signals)
            decision = manager.due(loop.step, final=loop.step == config.max_updates or stop is not None)
            if decision is None:
                continue
            metrics, stop_early = {}, None
            if decision.role == "milestone":
                metrics = milestone(
                    state,
                    splits,
                    config,
                    prompts,
                    reporter,
                    run,
                    signals,
                    has_validation,
                    stop,
                    evaluator,
                    meter,
                    watchdog,
                )
                watchdog.phase("end of the milestone (every rank waits for rank 0's samples and scores)", loop.step)
                stop = agreed_stop_signal(accelerator, signals)
                stop_early = broadcast_object(accelerator, evaluator.stop_reason)
                if stop_early:
                    decision = SaveDecision("milestone", "full")  # the run ends here: its last checkpoint is full
            watchdog.phase("checkpoint", loop.step)
            payload = state.payload(decision.role, decision.kind, metrics)  # every rank takes part
            if is_main:
                manager.save(payload)
            # The snapshot is the saver's now: kept here it would hold a second copy of the whole
            # state in host memory until the next save (gigabytes for a released model), and through the export.
            payload = None
            if stop_early:
                reporter.say(stop_early)
                break

        watchdog.phase("final checkpoint", loop.step)
        return finish_session(manager, state, adapter, config, reporter, meter, stop, session_start_step)
    except StoppedBySignal:
        raise
    except Exception as err:
        error = logged_error(err, run)
        if accelerator.num_processes > 1 and collective_failure(err):
            error = watchdog.collective_failed(err)
            error.log_path = run.log_path
        discard_run = is_main and created and isinstance(error, UsageError) and not run.store.scan()
        if error is err:
            raise
        raise error from None
    finally:
        watchdog.close()
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


def update_passes(
    state: st.TrainState, splits: DataSplits, config: TrainConfig, reporter: Reporter, run: RunFolder
) -> UpdatePasses:
    """Forward and backward of every micro-batch of an update; split smaller and retried on
    out-of-memory, each change said once and recorded in run.json."""
    is_main, loop = state.accelerator.is_main_process, state.loop

    def memory_changed(change: MemoryChange) -> None:
        reporter.say(change.describe(), logging.WARNING)
        if is_main:
            run.record_memory_change(change.to_json())

    if loop.micro_split > 1 or loop.item_limit is not None:
        reporter.say(
            f"memory settings from the checkpoint (out-of-memory recovery): each batch runs as "
            f"{loop.micro_split} micro-batches"
            + (f", items of length {loop.item_limit} or more left out" if loop.item_limit is not None else "")
        )
    return UpdatePasses(
        state.adapter,
        state.model,
        state.accelerator,
        state.optimizer,
        splits,
        config.grad_accum,
        loop,
        state.accelerator.num_processes,
        memory_changed,
    )


# ---- per update ----


def train_update(
    state: st.TrainState, passes: UpdatePasses, batches, splits: DataSplits, config: TrainConfig
) -> dict[str, float]:
    """One optimizer update over `grad_accum` micro-batches; returns its scalars for the log."""
    accelerator, loop = state.accelerator, state.loop
    world = accelerator.num_processes
    update_started = time.monotonic()
    lr = state.schedule.lr(loop.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    pause_point("update")
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
    return {
        "train/loss": train_loss,
        "train/lr": lr,
        "train/grad_norm": grad_norm,
        "train/loss_smoothed": loop.smoothed_loss,
        "frames": frames * world,
    }


def clip_gradients(accelerator, params: list[torch.nn.Parameter], max_norm: float) -> float:
    if max_norm and max_norm > 0:
        return float(accelerator.clip_grad_norm_(params, max_norm))
    grads = [p.grad for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0
