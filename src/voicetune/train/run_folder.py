"""A run folder: run.json (identity, config, lineage, sessions), the LOCK, and where its parts
live. Where training starts is the checkpoint manager's decision (checkpoints/manager.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicetune import __version__, fsio
from voicetune.checkpoints.lock import RunLock
from voicetune.checkpoints.store import CheckpointStore
from voicetune.errors import UsageError

if TYPE_CHECKING:
    from voicetune.checkpoints.manager import Start
    from voicetune.data.language import RunLanguage

log = logging.getLogger("voicetune.train")

RUN_LOG = "train.log"  # the run's own log: every session's lines and tracebacks
RUN_JSON = "run.json"


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.store = CheckpointStore(self.path)
        self.lock = RunLock(self.path)
        self.samples_dir = self.path / "samples"
        self.tensorboard_dir = self.path / "tensorboard"
        self.log_path = self.path / RUN_LOG
        self.metrics_path = self.path / "metrics.jsonl"
        self.cache_dir = self.path / "cache"

    def record_memory_change(self, change: dict[str, Any]) -> None:
        """Add an out-of-memory recovery (train/oom.py) to run.json: `memory_changes` lists them
        all, `memory_settings` holds the settings in force."""
        info = self.read_run_json()
        info.setdefault("memory_changes", []).append({"time": _now(), **change})
        info["memory_settings"] = {k: change[k] for k in ("micro_split", "item_limit")}
        fsio.atomic_write_json(self.path / RUN_JSON, info)

    def create(self) -> bool:
        """Make the folder; True when it did not exist (a refused command then removes it)."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--run {self.path}: is a file, not a folder; pass a new or existing run folder")
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        return created

    def sweep_temporaries(self) -> list[Path]:
        """Remove what interrupted writes left (commits, samples, kept evaluations, ready/). Lock holder only."""
        folders = (self.store.dir, self.samples_dir, self.path / "eval", self.path)
        return [p for folder in folders for p in fsio.sweep_temporaries(folder)]

    def read_run_json(self) -> dict[str, Any]:
        path = self.path / RUN_JSON
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("run.json is unreadable (%s); a new one is written", err)
            return {}

    def record_session(
        self,
        config: dict[str, Any],
        architecture: dict[str, Any],
        dataset: dict[str, Any],
        start: Start,
        start_step: int,
        session: str,
        language: RunLanguage,
    ) -> dict[str, Any]:
        """Create or update run.json (atomically): identity once, a line per session; the language
        the run speaks and where it came from (the dataset, --language)."""
        info = self.read_run_json()
        info.setdefault("id", uuid.uuid4().hex[:12])
        info.setdefault("created", _now())
        info["voicetune_version"] = __version__
        info["config"] = config
        info["architecture"] = architecture
        info["dataset"] = dataset
        info["language"] = {"code": language.code, "from": language.source}
        lineage = info.setdefault("lineage", {})
        if start.init_from is not None and start.resume_from is None:
            lineage["init_from"] = str(start.init_from.resolve())
            source = _run_id_of(start.init_from)
            if source:
                lineage["init_from_run"] = source
        if start.resume_from is not None and start.resume_from.path.parent != self.store.dir:
            lineage.setdefault("resumed_from_other_run", []).append(str(start.resume_from.path.resolve()))
        info.setdefault("sessions", []).append(
            {
                "started": _now(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start_step": start_step,
                "resumed_from": start.resume_from.name if start.resume_from else None,
                "quarantined": list(start.quarantined),
                "session": session,
                "abandoned_to": str(start.abandoned_to) if start.abandoned_to else None,
            }
        )
        fsio.atomic_write_json(self.path / RUN_JSON, info)
        return info


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
