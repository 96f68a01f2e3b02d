"""A run folder: run.json (identity, config, lineage), the LOCK, the checkpoint store, and the
decision of where training starts (resume modes, --init-from)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicetune import __version__, fsio
from voicetune.checkpoints.lock import RunLock
from voicetune.checkpoints.policy import RetentionPolicy
from voicetune.checkpoints.store import (
    CHECKPOINTS_DIR,
    CheckpointStore,
    StoredCheckpoint,
    read_checkpoint_dir,
)
from voicetune.errors import CheckpointError, UsageError

log = logging.getLogger("voicetune.train")

RUN_JSON = "run.json"


@dataclass
class StartPoint:
    """Where a training session starts."""

    resume_from: StoredCheckpoint | None = None  # continue this full-state checkpoint
    init_from: Path | None = None  # fresh start from these weights (checkpoint dir or upstream file)
    init_is_upstream_file: bool = False
    quarantined: tuple[str, ...] = ()  # what was moved aside on the way


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.store = CheckpointStore(self.path)
        self.lock = RunLock(self.path)
        self.samples_dir = self.path / "samples"
        self.tensorboard_dir = self.path / "tensorboard"
        self.log_path = self.path / "train.log"
        self.metrics_path = self.path / "metrics.jsonl"
        self.cache_dir = self.path / "cache"

    def sweep_temporaries(self) -> list[Path]:
        """Remove what interrupted writes left (commits, samples, ready/). Lock holder only."""
        return [p for folder in (self.store.dir, self.samples_dir, self.path) for p in fsio.sweep_temporaries(folder)]

    def read_run_json(self) -> dict[str, Any]:
        path = self.path / RUN_JSON
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("run.json is unreadable (%s); a new one is written", err)
            return {}

    def record_session(self, config: dict[str, Any], architecture: dict[str, Any], dataset: dict[str, Any],
                       start: StartPoint, start_step: int) -> dict[str, Any]:
        """Create or update run.json (atomically): identity once, a line per session."""
        info = self.read_run_json()
        info.setdefault("id", uuid.uuid4().hex[:12])
        info.setdefault("created", _now())
        info["voicetune_version"] = __version__
        info["config"] = config
        info["architecture"] = architecture
        info["dataset"] = dataset
        lineage = info.setdefault("lineage", {})
        if start.init_from is not None and start.resume_from is None:
            lineage["init_from"] = str(start.init_from.resolve())
            source = _run_id_of(start.init_from)
            if source:
                lineage["init_from_run"] = source
        if start.resume_from is not None and start.resume_from.path.parent != self.store.dir:
            lineage.setdefault("resumed_from_other_run", []).append(str(start.resume_from.path.resolve()))
        info.setdefault("sessions", []).append({
            "started": _now(), "host": socket.gethostname(), "pid": os.getpid(),
            "start_step": start_step, "resumed_from": start.resume_from.name if start.resume_from else None,
            "quarantined": list(start.quarantined),
        })
        fsio.atomic_write_json(self.path / RUN_JSON, info)
        return info

    def choose_start(self, resume: str, init_from: str | None) -> StartPoint:
        """Apply --resume and --init-from. Only the lock holder calls this: it may quarantine."""
        quarantined: list[str] = []

        def note(ckpt: StoredCheckpoint, target: Path) -> None:
            quarantined.append(ckpt.name)
            log.warning("checkpoint %s is invalid (%s): moved to %s", ckpt.name, ckpt.problem, target)

        if resume not in ("auto", "latest", "never"):
            ckpt = self._explicit_checkpoint(Path(resume), note)
            return StartPoint(resume_from=ckpt, quarantined=tuple(quarantined))
        if resume == "never":
            if self.store.scan():
                raise UsageError(
                    f"--resume never: {self.store.dir} already holds checkpoints; "
                    "use a new --run folder, or --resume auto to continue this run"
                )
            latest = None
        else:
            latest = self.store.latest_valid(require_full=True, on_quarantine=note)
            if latest is None and resume == "latest":
                raise UsageError(
                    f"--resume latest: no valid full-state checkpoint in {self.store.dir}; "
                    "use --resume auto to start fresh"
                )
        if latest is not None:
            if init_from:
                log.info("--init-from %s ignored: the run continues from its own checkpoint %s", init_from, latest.name)
            return StartPoint(resume_from=latest, quarantined=tuple(quarantined))
        if init_from:
            path, upstream = resolve_init_from(init_from)
            return StartPoint(init_from=path, init_is_upstream_file=upstream, quarantined=tuple(quarantined))
        return StartPoint(quarantined=tuple(quarantined))

    def _explicit_checkpoint(self, path: Path, note) -> StoredCheckpoint:
        if not path.is_dir():
            raise UsageError(f"--resume {path}: no such checkpoint directory; `voicetune ckpt list RUN` lists them")
        ckpt = self.store.verify(read_checkpoint_dir(path))
        if ckpt.problem is not None:
            if path.resolve().parent == self.store.dir.resolve():
                note(ckpt, self.store.quarantine(ckpt, ckpt.problem))
            raise CheckpointError(f"--resume {path}: invalid checkpoint: {ckpt.problem}")
        if ckpt.kind != "full":
            raise UsageError(
                f"--resume {path}: a weights-only milestone cannot resume training (no optimizer state); "
                f"use --init-from {path} to start a new run from its weights"
            )
        return ckpt


def resolve_init_from(value: str) -> tuple[Path, bool]:
    """--init-from: a run folder (its best, else latest valid checkpoint), a checkpoint directory,
    or an upstream weights file. Returns (path, is_upstream_file)."""
    path = Path(value)
    if path.is_file():
        return path, True
    if (path / CHECKPOINTS_DIR).is_dir():
        store = CheckpointStore(path)
        infos = [c for c in store.scan() if c.problem is None]
        best = RetentionPolicy().best([c.info() for c in infos])
        ordered = sorted(infos, key=lambda c: c.step, reverse=True)
        if best is not None:
            ordered.insert(0, next(c for c in infos if c.name == best.name))
        for ckpt in ordered:
            if store.verify(ckpt).problem is None:
                return ckpt.path, False
        raise UsageError(f"--init-from {value}: the run has no valid checkpoint")
    if (path / "manifest.json").is_file():
        return path, False
    raise UsageError(f"--init-from {value}: not a run folder, a checkpoint directory or a weights file")


def _run_id_of(path: Path) -> str | None:
    for candidate in (path, *path.parents):
        run_json = candidate / RUN_JSON
        if run_json.is_file():
            try:
                return json.loads(run_json.read_text()).get("id")
            except (OSError, json.JSONDecodeError):
                return None
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
