"""Starting, finding, stopping and following a `voicetune train` process from another program.

The studio (and anything else that is not a terminal) trains through these functions: training
always runs as its own `voicetune train` process in a session of its own, so the program that
started it may die, close or restart and the run goes on. A running run is found again through
its RUN/LOCK (pid and host of the writer), never through memory of having started it; it is
stopped with SIGTERM, which makes it write a clean checkpoint and exit 143.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicetune.checkpoints.lock import read_holder
from voicetune.errors import RunLockedError, UsageError
from voicetune.train.reporting import read_metrics, read_milestone_work
from voicetune.train.run_folder import RUN_JSON, RUN_LOG

TRAIN_LOG = "train-process.log"  # stdout and stderr of a started process (train.log is the run's own)

# Processes this program started: waited for when they end (so that no zombie looks alive), and
# shown as running in the seconds between their start and their taking the LOCK.
_started: dict[str, subprocess.Popen] = {}


def train_argv(flags: dict[str, Any]) -> list[str]:
    """`voicetune train` flags from {"max_updates": 30, "sample_text": ["a", "b"], ...} (None skipped)."""
    argv: list[str] = []
    for key, value in flags.items():
        if value is None or value == [] or value == "":
            continue
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            argv += [flag, str(item)]
    return argv


def running_trainer(run: Path) -> dict | None:
    """The holder of RUN/LOCK ({pid, host, started}) while a trainer writes the run, else None.

    A process on another host cannot be checked from here and is reported as running (its LOCK
    says so). A process this program just started counts as running before it takes the LOCK."""
    run = Path(run)
    child = _started.get(str(run.resolve()))
    if child is not None and child.poll() is not None:
        del _started[str(run.resolve())]
        child = None
    holder = read_holder(run)
    pid = holder.get("pid")
    if pid and holder.get("host") != socket.gethostname():
        return holder
    if pid and _alive(int(pid)):
        return holder
    if child is not None:
        return {"pid": child.pid, "host": socket.gethostname(), "started": "starting"}
    return None


def start_training(
    run: Path, flags: dict[str, Any], env: dict[str, str] | None = None, resume: bool | None = None
) -> int:
    """Start `voicetune train --run RUN <flags>` detached from this process; returns its pid.

    Its output goes to RUN/train-process.log. Refused while another trainer holds the run.
    `resume=False` starts a new run and refuses a run that has checkpoints (nothing is ever
    overwritten); `resume=True` continues one and refuses a run without any; None lets
    `--resume` (default auto) decide."""
    run = Path(run)
    holder = running_trainer(run)
    if holder:
        raise RunLockedError(
            f"{run} is being trained by pid {holder.get('pid')} on {holder.get('host')}; "
            "stop it first (or attach to it)"
        )
    has_checkpoints = any((run / "checkpoints").glob("step_*/manifest.json"))
    if resume is True and not has_checkpoints:
        raise UsageError(f"{run.name} has no checkpoint to resume from; start it instead")
    if resume is False and has_checkpoints:
        raise UsageError(
            f"{run.name} already has checkpoints: resume it, or give a new run name for a new run "
            "(nothing is ever deleted)"
        )
    if resume is not None:
        flags = {**flags, "resume": "auto" if resume else "never"}
    run.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "voicetune", "train", "--run", str(run), *train_argv(flags)]
    with open(run / TRAIN_LOG, "ab") as log:
        log.write(("\n$ " + " ".join(argv[1:]) + "\n").encode())
        log.flush()
        # A new session: the page's process group, its Ctrl-C and its death never reach training.
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=run,
        )
    _started[str(run.resolve())] = child
    return child.pid


def stop_training(run: Path) -> int:
    """SIGTERM the run's trainer (it writes a checkpoint and exits 143); returns its pid."""
    holder = running_trainer(run)
    if not holder:
        raise UsageError(f"{run}: no training is running in this run")
    if holder.get("host") != socket.gethostname():
        raise UsageError(f"{run} is being trained on {holder.get('host')}; stop it on that machine")
    pid = int(holder["pid"])
    os.kill(pid, signal.SIGTERM)
    return pid


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stands, from its files: run.json, metrics.jsonl and milestone-work.json."""

    step: int
    max_updates: int | None
    loss: float | None
    val_loss: float | None
    updates_per_s: float | None
    milestone_work: dict | None = None  # {step, work, line, since, eta_s}: what the milestone in progress does
    logged_eta: float | None = None  # the trainer's own ETA at its last log line (milestones included)

    @property
    def eta_seconds(self) -> float | None:
        """The trainer's ETA (the updates left and the milestones to come, as its console says):
        while a milestone works, the one it wrote then; else the last one it logged."""
        work = self.milestone_work or {}
        if isinstance(work.get("eta_s"), (int, float)):
            return float(work["eta_s"])
        if self.logged_eta is not None:
            return self.logged_eta
        if not self.max_updates or not self.updates_per_s:
            return None
        return max(0, self.max_updates - self.step) / self.updates_per_s


def training_progress(run: Path) -> TrainingProgress:
    """The last step, loss, validation loss and speed a run has logged, its planned length, and the
    milestone work in progress (if the trainer is alive: a killed one leaves its last words)."""
    run = Path(run)
    records = read_metrics(run / "metrics.jsonl")
    max_updates = None
    if (run / RUN_JSON).is_file():
        try:
            max_updates = json.loads((run / RUN_JSON).read_text(encoding="utf-8")).get("config", {}).get("max_updates")
        except ValueError:
            pass

    def last(key: str) -> float | None:
        values = [r[key] for _, r in sorted(records.items()) if isinstance(r.get(key), (int, float))]
        return float(values[-1]) if values else None

    return TrainingProgress(
        max(records) if records else 0,
        max_updates,
        last("train/loss"),
        last("val/loss"),
        last("perf/updates_per_s"),
        read_milestone_work(run),
        last("perf/eta_s"),
    )


def output_log(run: Path) -> Path | None:
    """What a page shows of a run's output: the started process's (TRAIN_LOG) when this program
    started its newest session, else the run's own train.log (a run trained from the command line)."""
    logs = [p for p in (run / TRAIN_LOG, run / RUN_LOG) if p.is_file()]
    return max(logs, key=lambda p: p.stat().st_mtime) if logs else None


def milestone_samples(run: Path) -> list[tuple[int, Path]]:
    """(step, wav) of every generated milestone sample, newest step first."""
    found = []
    for folder in (Path(run) / "samples").glob("step_*"):
        if folder.is_dir() and folder.name[5:].isdigit():
            found += [(int(folder.name[5:]), wav) for wav in sorted(folder.glob("*_gen.wav"))]
    return sorted(found, key=lambda item: (-item[0], item[1].name))


def _alive(pid: int) -> bool:
    """A running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
