"""Milestone work, for people: the validation loss, the samples and the scores of a milestone.

    metrics = milestone(state, splits, config, prompts, reporter, run, signals, has_validation, stop,
                        evaluator, meter)

Validation and samples run with fixed seeds inside a forked RNG, so training's own random stream
is never touched; a stop request cuts them short, so a SIGTERM is answered by a checkpoint within
seconds. Their time is kept out of the update rate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch

from voicetune.config import TrainConfig
from voicetune.faults import pause_point
from voicetune.models.base import DataSplits
from voicetune.train import state as st
from voicetune.train.device import move_to
from voicetune.train.distributed import Watchdog, waiting_in
from voicetune.train.evaluator import MilestoneEvaluator
from voicetune.train.reporting import Reporter, Throughput
from voicetune.train.run_folder import RunFolder
from voicetune.train.sampler import BatchPlan
from voicetune.train.signals import StopRequested, StopSignals

log = logging.getLogger("voicetune.train")

# Seeds used for validation and samples, inside a forked RNG: the same noise at every milestone
# makes validation losses comparable, and training's own random stream is never touched.
VALIDATION_SEED = 1234
SAMPLES_SEED = 4321


@contextlib.contextmanager
def preserved_rng(seed: int):
    """Run with a fixed seed and put every generator back afterwards."""
    saved = st.capture_rng()
    st.set_seeds(seed)
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


@torch.no_grad()
def validate(state: st.TrainState, splits: DataSplits, config: TrainConfig, signals: StopSignals) -> float | None:
    """Mean loss over the validation split, the same on every rank whatever the number of ranks;
    None when a stop request cut it short on any rank.

    Each batch has its own fixed noise (seeded by its index), and runs through the unwrapped model:
    the DistributedDataParallel wrapper starts a collective at each forward (its buffer broadcast),
    and ranks hold different numbers of batches (rank r takes batches r, r + world, ...). The only
    collective is one reduction at the end, which every rank reaches, cut short or not.
    """
    adapter, accelerator, model = state.adapter, state.accelerator, state.core_model
    rank, world = accelerator.process_index, accelerator.num_processes
    batches = validation_batches(splits, config)
    total = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss x items, items, cut short
    pause_point("validation")
    state.model.eval()
    try:
        with signals.interruptible():
            for index in range(rank, len(batches), world):
                pause_point("validation.batch")
                with preserved_rng(VALIDATION_SEED + index):
                    batch = move_to(adapter.collate([splits.val[i] for i in batches[index]]), accelerator.device)
                    with accelerator.autocast():
                        loss = adapter.compute_loss(model, batch)
                total[0] += loss.float().item() * len(batches[index])
                total[1] += len(batches[index])
    except StopRequested:
        total[2] = 1
    finally:
        state.model.train()
    if world > 1:
        with waiting_in("all_reduce of the validation losses"):
            total = accelerator.reduce(total, reduction="sum")
    if total[2] > 0:
        return None
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
                    reporter.say(
                        f"samples of step {step}: {len(prompts) - index} of {len(prompts)} prompts left out "
                        f"after {budget:.0f} s (--set sample_budget_seconds=...)",
                        logging.WARNING,
                    )
                    break
                samples += state.adapter.synthesize_samples(ema_model, [prompt])
        del ema_model
        out = run.samples_dir / f"step_{step:08d}"
        reporter.samples(step, samples, out)
        reporter.say(f"samples of step {step}: {out}")
    except Exception as err:  # samples are for people; a failure must not stop training
        log.exception("samples of step %d failed", step)
        reporter.say(f"samples of step {step} failed: {type(err).__name__}: {err} (training goes on)", logging.WARNING)


def milestone(
    state: st.TrainState,
    splits: DataSplits,
    config: TrainConfig,
    prompts,
    reporter: Reporter,
    run: RunFolder,
    signals: StopSignals,
    has_validation: bool,
    stop: int | None,
    evaluator: MilestoneEvaluator,
    meter: Throughput,
    watchdog: Watchdog,
) -> dict[str, Any]:
    """A milestone's metrics (smoothed training loss, validation loss, scores) and its samples;
    their time is kept out of the update rate.

    Every rank validates (one reduction at the end); samples and scores are rank 0's alone and
    hold no collective, so the other ranks wait for it at the next one. They are for people: a
    stop request cuts them short (or skips them), so the final checkpoint is committed within
    seconds of SIGTERM.
    """
    started, step = time.monotonic(), state.loop.step
    metrics: dict[str, Any] = {}
    if state.loop.smoothed_loss is not None and math.isfinite(state.loop.smoothed_loss):
        metrics["train_loss"] = float(state.loop.smoothed_loss)  # every milestone's fallback measure
    if stop is None and has_validation:
        watchdog.phase("validation", step)
        reporter.working(step, "validation loss")
        val_loss = validate(state, splits, config, signals)
        if val_loss is None:
            reporter.say(f"validation of step {step} cut short by the stop request")
        else:
            if math.isfinite(val_loss):  # a manifest is strict JSON
                metrics["val_loss"] = float(val_loss)
            reporter.scalars(step, {"val/loss": val_loss})
    if stop is None and state.accelerator.is_main_process:
        if prompts:
            watchdog.phase("samples", step)
            reporter.working(step, f"synthesizing {len(prompts)} samples")
            with contextlib.suppress(StopRequested):
                write_samples(state, prompts, reporter, run, signals)
        if evaluator.enabled:
            watchdog.phase("scoring", step)
            try:
                with signals.interruptible():
                    metrics.update(
                        evaluator.evaluate(step, state.core_model, state.ema, state.weights)
                    )  # finite already
            except StopRequested:
                reporter.say(f"scoring of step {step} cut short by the stop request")
    meter.pause(time.monotonic() - started)
    reporter.milestone_done(meter.last_pause, step)
    return metrics
