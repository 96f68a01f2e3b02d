"""A training session's start and end, and the checks before its first update.

Start: the paths, the LOCK and the choice of where training starts (rank 0 chooses, the others
follow), the data (refused if it changed since the checkpoint, unless told how to go on), the
compatibility of the checkpoint, the training state, the disk room for a checkpoint, what is
printed at start.
End: the last commit waited for, the stop (with a resume command that works), the final-save
check, the best checkpoint exported to RUN/ready/, the result; every error lands in train.log.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voicetune.checkpoints.manager import CheckpointManager, Start
from voicetune.checkpoints.policy import DiskGuard
from voicetune.checkpoints.saver import SaveFailed
from voicetune.checkpoints.store import LoadedCheckpoint, load_checkpoint
from voicetune.config import ARCHITECTURE_FIELDS, TrainConfig, format_size
from voicetune.data.language import RunLanguage
from voicetune.errors import IncompatibleCheckpointError, StoppedBySignal, UsageError, VoicetuneError
from voicetune.models.base import ModelAdapter
from voicetune.train import state as st
from voicetune.train.distributed import broadcast_object
from voicetune.train.launch import PROCESSES_ENV
from voicetune.train.plan import checkpoint_sizes as plan_checkpoint_sizes
from voicetune.train.plan import plan_for_model
from voicetune.train.reporting import Reporter, Throughput
from voicetune.train.run_folder import RunFolder
from voicetune.train.sampler import BatchPlan

log = logging.getLogger("voicetune.train")

# Flags that only apply to a fresh start: a resume command leaves them out.
FRESH_START_FLAGS = ("--resume", "--init-from")


@dataclass
class TrainResult:
    step: int
    stopped_by: int | None  # signal number, or None when max_updates was reached
    last_checkpoint: str | None
    best_checkpoint: str | None
    best_value: float | None


def load_session(adapter, accelerator, config: TrainConfig, run: RunFolder, start: Start):
    """The data, the restored (or new) training state and the batch plan of this session."""
    if start.loaded is not None:  # what the run learnt from its data stays as it was (a language it added)
        adapter.use_saved_architecture(start.loaded.json.get(st.LOOP, {}).get("architecture") or {})
    assert config.data is not None, "TrainConfig requires --data"
    with accelerator.main_process_first():  # rank 0 fills the cache, the others reuse it
        splits = adapter.load_data(Path(config.data), run.cache_dir)
    data = {
        "path": str(Path(config.data).resolve()),
        "fingerprint": splits.fingerprint,
        "description": splits.description,
    }
    restart_epoch = check_data_unchanged(start, run.read_run_json().get("dataset"), data, config)
    if start.loaded is not None:
        check_compatible(start.loaded, config, adapter)
    state = st.TrainState.build(adapter, accelerator, config, start.loaded, initializer(adapter, start), data)
    if restart_epoch:
        state.loop.epoch, state.loop.position = state.loop.epoch + 1, 0
    world = accelerator.num_processes
    plan = BatchPlan.build(splits.train_lengths, config.seed, config.batch_size, config.batch_frames, world)
    if not plan.epoch_batches(0):
        raise UsageError(
            f"--data {config.data}: {len(splits.train_lengths)} training items make no batch for "
            f"{world} process(es); add data or lower --batch-size/--batch-frames"
        )
    return splits, data, state, plan, restart_epoch


def finish_session(
    manager: CheckpointManager,
    state: st.TrainState,
    adapter,
    config: TrainConfig,
    reporter: Reporter,
    meter: Throughput,
    stop: int | None,
    session_start_step: int,
) -> TrainResult:
    """After the last update: wait for the last commit, then stop (signal), fail (unsaved last
    step) or export ready/ and report the best, read back from committed checkpoints."""
    accelerator, loop = state.accelerator, state.loop
    is_main = accelerator.is_main_process
    if is_main:
        manager.finish()
    accelerator.wait_for_everyone()
    saved = (
        not is_main
        or (manager.last_committed is not None and manager.last_committed.step == loop.step)
        or (loop.step == session_start_step > 0)  # stopped before its first update: the resumed one stands
    )
    if stop is not None:
        raise StoppedBySignal(stop, resume_hint(stop, config, loop.step, saved))
    if not saved and loop.step > session_start_step:
        raise VoicetuneError(final_save_missing(manager, loop.step))
    if is_main:
        state.optimizer.state.clear()  # committed: the export builds a model of its own, give it the room
        export_ready(manager, adapter, reporter.say)
    best = manager.best() if is_main else None
    best_text = (
        f"best {config.best_metric} {best.metrics[config.best_metric or '']:.4f} at step {best.step} ({best.name})"
        if best
        else f"no checkpoint has a {config.best_metric}"
    )
    reporter.say(
        f"done: {loop.step} updates ({meter.session_rate(loop.step):.2f} updates/s this session; milestone "
        f"validation and samples took {meter.paused:.0f} s of its {meter.session_seconds():.0f} s); {best_text}"
    )
    last = manager.last_committed.name if manager.last_committed else None
    return TrainResult(loop.step, None, last, best.name if best else None, manager.best_value(best))


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
    assert start.resume_from is not None, "only a resumed run has data to compare"
    raise UsageError(
        f"--data {config.data}: the dataset changed since {start.resume_from.name} was saved ({'; '.join(changes)}).\n"
        f"  To go on over the new data with the same weights and optimizer, add --data-changed restart-epoch;\n"
        f"  or start a new run from its weights: --run NEW_RUN --init-from {start.resume_from.path}"
    )


def initializer(adapter: ModelAdapter, start: Start) -> Callable[[torch.nn.Module], None] | None:
    """--init-from: weights only, step 0. Upstream files go through the adapter's importer."""
    if start.init_from is None or start.resume_from is not None:
        return None
    init_from = start.init_from

    def load(model: torch.nn.Module) -> None:
        if start.init_is_upstream_file:
            adapter.load_upstream_weights(model, init_from)
            return
        loaded = load_checkpoint(init_from, components=[st.MODEL, st.LOOP])
        arch, current = loaded.json.get(st.LOOP, {}).get("architecture"), _jsonable(adapter.architecture())
        if arch is not None and _jsonable(arch) != current:
            differing = sorted(k for k in set(arch) | set(current) if arch.get(k) != current.get(k))
            raise IncompatibleCheckpointError(
                f"--init-from {start.init_from}: architecture differs in {', '.join(differing)}"
            )
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
            f"{checkpoint.path} was trained with another architecture:\n  "
            + "\n  ".join(differences)
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
            f"--disk-budget {size_flag(sizes.full + largest)}"
        )
    free = shutil.disk_usage(run.path).free
    if free - guard.margin_bytes < sizes.full:
        raise UsageError(
            f"--run {run.path}: {format_size(free)} free, but a checkpoint of this run takes ~{format_size(sizes.full)} "
            f"(+{format_size(guard.margin_bytes)} kept free); free disk space or use a --run folder on a larger disk"
        )


def size_flag(n: int) -> str:
    """A size for a flag, rounded up: '270K', '12M', '3G'."""
    for unit, scale in (("G", 2**30), ("M", 2**20)):
        if n >= 100 * scale:
            return f"{math.ceil(n / scale)}{unit}"
    return f"{math.ceil(n / 1024)}K"


def announce_start(
    reporter,
    config,
    adapter,
    model,
    splits,
    start: Start,
    loop,
    plan,
    run,
    has_validation: bool,
    restart_epoch: bool,
    language: RunLanguage,
) -> None:
    spoken = f"language {language.describe()}"
    if start.resume_from is not None:
        reporter.say(
            f"resuming from {start.resume_from.path} at step {loop.step} (epoch {loop.epoch}, batch {loop.position}); "
            f"{spoken}"
        )
    if start.abandoned_to is not None:
        resumed = start.resume_from.name if start.resume_from is not None else "the checkpoint resumed from"
        reporter.say(
            f"the checkpoints after {resumed} (an abandoned future) were moved to "
            f"{start.abandoned_to}: `voicetune ckpt list {run.path} --all` lists them",
            logging.WARNING,
        )
    if restart_epoch:
        reporter.say(
            f"--data-changed restart-epoch: weights and optimizer kept, epoch {loop.epoch} starts over the "
            f"new data ({splits.description})",
            logging.WARNING,
        )
    if start.init_from is not None:
        reporter.say(f"new run from the weights of {start.init_from}, step 0; {spoken}")
    elif start.resume_from is None:
        reporter.say(f"new run, step 0; {spoken}")
    for name in start.quarantined:
        reporter.say(
            f"checkpoint {name} failed verification and was moved to {run.store.quarantine_dir}", logging.WARNING
        )
    skipped = plan.skipped_items()
    if skipped:
        reporter.say(
            f"{skipped} of {len(plan.lengths)} training clips are longer than --batch-frames "
            f"{config.batch_frames} and are never used: pass --batch-frames {max(plan.lengths)} to use them all",
            logging.WARNING,
        )
    if not has_validation:
        reporter.say(
            f"no validation clip is usable ({splits.description}): validation is skipped and the best "
            f"checkpoint is chosen by {config.best_metric}. Add clips, or prepare with --for {config.model}",
            logging.WARNING,
        )
    # The same plan `voicetune plan` prints: sizes, disk use, memory.
    run_plan = plan_for_model(config, adapter, model, run_dir=run.path, start_step=loop.step, hints=False)
    for line in run_plan.lines():
        reporter.say(line, logging.WARNING if "exceeds free disk" in line or "does NOT fit" in line else logging.INFO)
    reporter.say(f"data: {splits.description}")


def logged_error(err: Exception, run: RunFolder) -> Exception:
    """Every error of a run lands in its train.log, the traceback included; returns the error the
    CLI shows (a failed save as a one-line VoicetuneError)."""
    error = err
    if isinstance(err, SaveFailed):
        error = VoicetuneError(f"{err}. Earlier checkpoints are intact; free disk space and rerun to resume")
    log.error("training failed: %s: %s", type(err).__name__, err, exc_info=err)
    error.log_path = run.log_path  # type: ignore[attr-defined]  # any error says where its traceback went (the CLI reads it)
    return error


def final_save_missing(manager: CheckpointManager, step: int) -> str:
    """The error of a run whose last update has no committed checkpoint."""
    infos = manager.store.valid_infos()
    newest = max(infos, key=lambda i: i.step) if infos else None
    kept = f"the newest saved checkpoint is {newest.name}" if newest else "no checkpoint of this run was saved"
    return (
        f"the checkpoint of the final step {step} was NOT saved (see the SKIPPED lines above): {kept}. "
        f"Free disk space in {manager.run_dir} (or raise --disk-budget) and rerun the same command to finish"
    )


def export_ready(manager: CheckpointManager, adapter: ModelAdapter, say: Callable[..., None]) -> None:
    """When training ends, the best checkpoint (else the newest) goes to RUN/ready/ in the model's
    upstream format, ready for upstream inference tools (seed 004's "ready" folder)."""
    from voicetune.synthesis.inference import export_trained

    ready = manager.run_dir / "ready"
    try:
        source, files = manager.export_ready(lambda ckpt, folder: export_trained(ckpt, adapter.export_format, folder))
        say(f"exported {source.name} ({adapter.export_format}) to {ready}: {', '.join(p.name for p in files)}")
    except Exception as err:  # the checkpoints are safe; an export can be redone with `ckpt export`
        log.exception("export to %s failed", ready)
        say(
            f"export to {ready} failed: {type(err).__name__}: {err}; run `voicetune ckpt export "
            f"{manager.run_dir} --format {adapter.export_format} --out DIR`",
            logging.WARNING,
        )


def resume_hint(signum: int, config: TrainConfig, step: int, saved: bool) -> str:
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    what = "after a clean checkpoint" if saved else "(its final checkpoint was skipped: see the errors above)"
    return f"stopped by {name} at step {step} {what}; {resume_command(config)}"


def resume_command(config: TrainConfig) -> str:
    """How to go on: the command as the user gave it (every flag, --config included), ready to
    paste, less what only a fresh start takes (--resume never or CHECKPOINT, --init-from): rerun
    as given, those would refuse the run's own checkpoints or go back to an older one."""
    import shlex
    import sys

    args, skip = [], False
    for arg in sys.argv[1:]:
        flag = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif flag in FRESH_START_FLAGS:
            skip = "=" not in arg
        else:
            args.append(arg)
    changed = len(args) != len(sys.argv) - 1
    if config.resume not in ("auto", "latest") or config.init_from:
        args += ["--resume", "auto"]  # a TOML file or VOICETUNE_RESUME may still say otherwise
        changed = True
    processes = os.environ.get(PROCESSES_ENV)
    if processes:  # a child of `--processes N`: its argv lacks the flag
        args[1:1] = ["--processes", processes]
    command = shlex.join(["voicetune", *args])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not processes:
        what = "with voicetune's part now" if changed else "with the same voicetune part"
        return f"to resume, rerun the launch command (torchrun / accelerate launch) on every node {what}:\n  {command}"
    what = "run (the flags of a fresh start left out)" if changed else "rerun the same command"
    return f"to resume, {what}:\n  {command}"


def already_complete(
    manager: CheckpointManager, adapter: ModelAdapter, config: TrainConfig, newest, is_main: bool
) -> TrainResult:
    """A rerun of a finished run: nothing to train, no samples redone, ready/ only if it is missing."""
    from voicetune.console import say

    best = manager.best() or manager.best(metric="train_loss")
    if is_main:
        say(
            f"the run is complete: {newest.name} is at step {newest.step} of --max-updates {config.max_updates}"
            f"{f'; best {best.name}' if best else ''}. Raise --max-updates to train further"
        )
        if not (manager.run_dir / "ready").is_dir():
            export_ready(manager, adapter, say)
    return TrainResult(
        newest.step,
        None,
        newest.name,
        best.name if best else None,
        best.metrics.get(config.best_metric or "") if best else None,
    )


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
