"""The checkpoint manager of one run folder, in the manner of Orbax's CheckpointManager.

It owns the store, the save schedule, retention, the disk guard, the background saver, the
choice of where training starts, THE choice of the best checkpoint (used by training,
`synthesize`, `ckpt` and export) and the export of RUN/ready/. It knows no model and no training
loop: it is given payloads (tensors and JSON) and gives back loaded checkpoints.

    manager = CheckpointManager(run_dir, CheckpointOptions.from_config(config.flag_dict()))
    start = manager.start(resume="auto", init_from=None)        # lock holder only
    decision = manager.due(step, final=False)                   # None, or what to save
    manager.save(payload)                                       # background; prunes after commit
    manager.finish()                                            # wait for the last save
    best = manager.best_checkpoint()                            # verified, else the newest

Timelines: every manifest names its session and its parent checkpoint. Resuming an older
checkpoint of the same run moves the checkpoints after it to RUN/abandoned/<time>/, so that
"latest" is always the newest of the timeline being trained; abandoned ones are listed by
`ckpt list --all`, never resumed, and removed by `ckpt prune --abandoned`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from voicetune import fsio
from voicetune.checkpoints.policy import (
    CheckpointInfo,
    DiskGuard,
    RetentionPolicy,
    SaveDecision,
    SaveSchedule,
    Standing,
    weights_of,
)
from voicetune.checkpoints.saver import BackgroundSaver, SaveFailed
from voicetune.checkpoints.store import (
    CHECKPOINTS_DIR,
    MANIFEST,
    CheckpointPayload,
    CheckpointStore,
    LoadedCheckpoint,
    StoredCheckpoint,
    load_checkpoint,
    read_checkpoint_dir,
)
from voicetune.config import format_size
from voicetune.errors import CheckpointDamaged, CheckpointError, UsageError, VoicetuneError

log = logging.getLogger("voicetune.checkpoints")

RUN_JSON = "run.json"
READY_DIR = "ready"
MAX_CONSECUTIVE_SAVE_FAILURES = 3


@dataclass(frozen=True)
class CheckpointOptions:
    """The settings of a run that the manager uses (a subset of the training config)."""

    save_every: int = 1000
    last_every: int | None = None
    last_every_minutes: float | None = None
    milestone_state: Literal["full", "weights"] = "full"
    keep_last: int = 3
    keep_every: int | None = None
    best_metric: str = "val_loss"  # any metric name a manifest's metrics may hold (val_loss, train_loss, score...)
    best_mode: Literal["min", "max"] = "min"
    disk_budget_bytes: int | None = None
    async_save: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> CheckpointOptions:
        """From a config's fields (a TrainConfig's flag_dict(), or run.json's "config")."""
        known = {k: config[k] for k in cls.__dataclass_fields__ if config.get(k) is not None}
        if config.get("disk_budget"):
            from voicetune.config import parse_size

            known["disk_budget_bytes"] = parse_size(config["disk_budget"])
        return cls(**{**known, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def of_run(cls, run_dir: Path, **overrides: Any) -> CheckpointOptions:
        """The options a run was trained with (run.json), for commands that inspect it."""
        path = Path(run_dir) / RUN_JSON
        config: dict[str, Any] = {}
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8")).get("config", {})
            except (OSError, ValueError):
                log.warning("%s is unreadable: default checkpoint settings are used", path)
        return cls.from_config(config, **overrides)

    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(self.keep_last, self.keep_every, self.save_every, self.best_metric, self.best_mode)

    def schedule(self) -> SaveSchedule:
        return SaveSchedule(self.save_every, self.last_every, self.last_every_minutes, self.milestone_state)


@dataclass
class Start:
    """Where a training session starts, decided (and loaded) by `CheckpointManager.start`."""

    resume_from: StoredCheckpoint | None = None  # continue this full-state checkpoint ...
    loaded: LoadedCheckpoint | None = None  # ... whose files are these (read once, verified)
    init_from: Path | None = None  # or a fresh start from these weights (checkpoint dir or upstream file)
    init_is_upstream_file: bool = False
    quarantined: tuple[str, ...] = ()  # what was moved aside on the way
    abandoned_to: Path | None = None  # where the future after an older resumed checkpoint went

    def without_loaded(self) -> Start:
        """A copy small enough to broadcast to the other ranks (which load for themselves)."""
        return Start(
            self.resume_from, None, self.init_from, self.init_is_upstream_file, self.quarantined, self.abandoned_to
        )


def _log_line(message: str, level: int = logging.INFO) -> None:
    log.log(level, message)


class CheckpointManager:
    """The checkpoints of one run folder (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        options: CheckpointOptions | None = None,
        session: str | None = None,
        say: Callable[[str, int], None] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.store = CheckpointStore(self.run_dir)
        self.configure(options or CheckpointOptions.of_run(self.run_dir))
        self.session = session or uuid.uuid4().hex[:12]
        self._say: Callable[[str, int], None] = say or _log_line
        self._saver: BackgroundSaver | None = None
        self._protected: str | None = None  # the checkpoint this session resumed from
        self._parent: str | None = None  # the newest committed checkpoint of this session's timeline
        self._last_full_save = time.monotonic()
        self._failures = 0

    def configure(self, options: CheckpointOptions) -> None:
        """Use these settings from now on (training settles best_metric once the data is known)."""
        self.options = options
        self.retention = options.retention()
        self.schedule = options.schedule()
        self.guard = DiskGuard(options.disk_budget_bytes)

    # ---- where training starts -------------------------------------------------------------

    def start(self, resume: str, init_from: str | None) -> Start:
        """Apply --resume (auto | latest | never | CHECKPOINT) and --init-from, loading the
        checkpoint chosen (each file read once, verified as it is read). Lock holder only: it
        may quarantine damaged checkpoints and move an abandoned future aside."""
        self.store.finish_abandoning()
        quarantined: list[str] = []

        def note(ckpt: StoredCheckpoint, target: Path) -> None:
            quarantined.append(ckpt.name)
            log.warning("checkpoint %s is invalid (%s): moved to %s", ckpt.name, ckpt.problem, target)

        if resume not in ("auto", "latest", "never"):
            ckpt, loaded = self._explicit(Path(resume), note)
            abandoned = self.store.abandon_after(ckpt, self.session) if self._in_run(ckpt.path) else None
            return self._begin(Start(ckpt, loaded, quarantined=tuple(quarantined), abandoned_to=abandoned))
        found = None
        if resume == "never":
            if self.store.scan():
                raise UsageError(
                    f"--resume never: {self.store.dir} already holds checkpoints; "
                    "use a new --run folder, or --resume auto to continue this run"
                )
        else:
            found = self.store.load_latest(require_full=True, on_quarantine=note)
            if found is None and resume == "latest":
                raise UsageError(
                    f"--resume latest: no valid full-state checkpoint in {self.store.dir}; "
                    "use --resume auto to start fresh"
                )
        if found is not None:
            if init_from:
                log.info(
                    "--init-from %s ignored: the run continues from its own checkpoint %s", init_from, found[0].name
                )
            return self._begin(Start(found[0], found[1], quarantined=tuple(quarantined)))
        if init_from:
            path, upstream = resolve_init_from(init_from)
            return self._begin(Start(init_from=path, init_is_upstream_file=upstream, quarantined=tuple(quarantined)))
        return self._begin(Start(quarantined=tuple(quarantined)))

    def follow(self, start: Start) -> Start:
        """On ranks other than 0: load the checkpoint rank 0 chose (verifying it as it is read)."""
        if start.resume_from is not None:
            start.loaded = load_checkpoint(start.resume_from.path)
        return self._begin(start)

    def _begin(self, start: Start) -> Start:
        if start.resume_from is not None and self._in_run(start.resume_from.path):
            self._protected = self._parent = start.resume_from.name
        return start

    def _explicit(self, path: Path, note) -> tuple[StoredCheckpoint, LoadedCheckpoint]:
        if not path.is_dir():
            raise UsageError(f"--resume {path}: no such checkpoint directory; `voicetune ckpt list RUN` lists them")
        if self.store.abandoned_dir.resolve() in path.resolve().parents:
            raise UsageError(
                f"--resume {path}: this checkpoint belongs to an abandoned timeline and is never resumed; "
                f"start a new run from its weights with --init-from {path}"
            )
        ckpt = read_checkpoint_dir(path)
        if ckpt.too_new:
            raise CheckpointError(f"--resume {path}: {ckpt.problem}")
        loaded = None
        if ckpt.problem is None and ckpt.kind == "full":
            try:
                loaded = load_checkpoint(path)
            except CheckpointDamaged as err:
                ckpt.problem = str(err).split(": ", 1)[-1]
        if ckpt.problem is not None:
            if self._in_run(path):
                note(ckpt, self.store.quarantine(ckpt, ckpt.problem))
            raise CheckpointError(f"--resume {path}: invalid checkpoint: {ckpt.problem}")
        if loaded is None:
            raise UsageError(
                f"--resume {path}: a weights-only milestone cannot resume training (no optimizer state); "
                f"use --init-from {path} to start a new run from its weights"
            )
        return ckpt, loaded

    def _in_run(self, path: Path) -> bool:
        return Path(path).resolve().parent == self.store.dir.resolve()

    # ---- saving ----------------------------------------------------------------------------

    def due(self, step: int, final: bool) -> SaveDecision | None:
        """The save due after update `step`; the last one of a session (`final`) always has full state."""
        decision = self.schedule.decide(step, (time.monotonic() - self._last_full_save) / 60)
        if final:
            return SaveDecision(decision.role if decision else "rolling", "full")
        return decision

    def save(self, payload: CheckpointPayload) -> bool:
        """Hand a snapshot to the background saver, after the previous save has finished (its
        failure is reported here) and the disk guard has made room. False: skipped (no room)."""
        self._wait_counting_failures()
        if not self._fits(payload):
            return False
        payload.session = self.session
        if self._saver is None:
            self._saver = BackgroundSaver(
                self.store, self._after_commit, self.options.async_save, before_commit=self._before_commit
            )
        self._saver.submit(payload)
        if payload.kind == "full":
            self._last_full_save = time.monotonic()
        return True

    def finish(self) -> StoredCheckpoint | None:
        """Wait for the save in flight; raise SaveFailed if it failed. Returns the last commit."""
        if self._saver is not None:
            self._saver.wait()  # each commit is announced by _after_commit
        return self.last_committed

    def close(self) -> None:
        """On the way out of an error: never leave a commit half-done."""
        if self._saver is not None and self._saver.in_flight:
            try:
                self._saver.wait()
            except SaveFailed:
                pass

    @property
    def last_committed(self) -> StoredCheckpoint | None:
        return self._saver.last_committed if self._saver is not None else None

    def _wait_counting_failures(self) -> None:
        if self._saver is None:
            return
        try:
            self._saver.wait()
            self._failures = 0
        except SaveFailed as failed:
            self._failures += 1
            self._say(f"{failed}; earlier checkpoints are intact", logging.ERROR)
            if self._failures >= MAX_CONSECUTIVE_SAVE_FAILURES:
                raise VoicetuneError(
                    f"{self._failures} checkpoints in a row failed, the last: {failed}. "
                    f"Free disk space in {self.run_dir} and rerun the same command to resume"
                ) from None

    def _fits(self, payload: CheckpointPayload) -> bool:
        """Disk guard: prune what retention allows, or skip this save with a loud line."""
        infos = self.store.valid_infos()
        planned = CheckpointInfo(
            f"step_{payload.step:08d}",
            payload.step,
            payload.role,
            payload.kind,
            payload.estimated_bytes(),
            payload.metrics,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        verdict = self.guard.check(
            planned,
            shutil.disk_usage(self.run_dir).free,
            sum(i.size_bytes for i in infos),
            infos,
            self.retention,
            protected=self._protected_names(),
        )
        if not verdict.fits:
            self._say(
                f"SKIPPED the checkpoint of step {payload.step}: {verdict.reason}. Training goes on; "
                f"free disk space or raise --disk-budget",
                logging.ERROR,
            )
            return False
        for name in verdict.prune:
            self.store.remove(name)
            self._say(
                f"disk guard: removed {name} early to make room (retention would remove it after this save)",
                logging.INFO,
            )
        return True

    def _protected_names(self) -> set[str]:
        return {n for n in (self._protected,) if n}

    def _before_commit(self, payload: CheckpointPayload) -> None:
        # In the saver thread, in commit order: the parent is the newest commit of this timeline.
        payload.parent = self._parent

    def _after_commit(self, stored: StoredCheckpoint) -> None:
        # In the saver thread, after a successful commit only. A failure here is a retention
        # failure: the checkpoint is committed and stays valid.
        self._parent = stored.name
        self._say(
            f"checkpoint {stored.name} committed ({stored.role}, {stored.kind} state, "
            f"{format_size(stored.size_bytes)})",
            logging.INFO,
        )
        try:
            removed = self.store.apply_retention(self.retention, protected={*self._protected_names(), stored.name})
        except Exception as err:
            log.exception("retention after %s failed", stored.name)
            self._say(
                f"RETENTION FAILED after committing {stored.name} (the checkpoint is safe): "
                f"{type(err).__name__}: {err}; old checkpoints were not removed, run `voicetune ckpt prune "
                f"{self.run_dir}` once the cause is fixed",
                logging.ERROR,
            )
            return
        if removed:
            log.info("retention removed %s", ", ".join(removed))

    # ---- best and ready/ -------------------------------------------------------------------

    def best(self, infos: list[CheckpointInfo] | None = None, metric: str | None = None) -> CheckpointInfo | None:
        """THE best committed checkpoint: by the run's best_metric read from each manifest's
        metrics (any name: val_loss, train_loss, score...); a later checkpoint takes over only when
        the paired evidence says it is better, or when it is ahead at two milestones in a row
        (`RetentionPolicy.standing`), else the earlier stays. `metric` asks for another (lower is
        better), e.g. train_loss when no checkpoint has the run's."""
        policy = self.retention if metric is None else RetentionPolicy(best_metric=metric, best_mode="min")
        return policy.best(self.store.valid_infos() if infos is None else infos)

    def standing(self, infos: list[CheckpointInfo] | None = None) -> Standing:
        """The best committed checkpoint (as `best`), the checkpoints the evidence cannot tell
        from it (the earlier stays best), what each comparison found and how many came after it."""
        return self.retention.standing(self.store.valid_infos() if infos is None else infos)

    def best_value(self, info: CheckpointInfo | None) -> float | None:
        return info.metrics.get(self.options.best_metric) if info is not None else None

    def best_checkpoint(self, prefer: str = "best") -> StoredCheckpoint:
        """The best verified checkpoint (prefer="best"), else the newest verified one."""
        valid = [c for c in self.store.scan() if c.problem is None]
        ordered = sorted(valid, key=lambda c: c.step, reverse=True)
        best = self.best([c.info() for c in valid]) if prefer == "best" else None
        if best is not None:
            ordered.insert(0, next(c for c in valid if c.name == best.name))
        for ckpt in ordered:
            if self.store.verify(ckpt).problem is None:
                return ckpt
        raise CheckpointError(f"{self.run_dir}: no valid checkpoint (see `voicetune ckpt verify {self.run_dir}`)")

    def export_ready(self, export: Callable[[Path, Path], list[Path]]) -> tuple[StoredCheckpoint, list[Path]]:
        """Write the best checkpoint (else the newest) to RUN/ready/ with `export(checkpoint, folder)`
        (which exports the weights its score chose: SOURCE.txt says which).

        The old ready/ stays until the new one is complete (fsio.atomic_dir never deletes first).
        """
        source = self.best_checkpoint()
        with fsio.atomic_dir(self.run_dir / READY_DIR) as tmp:
            files = export(source.path, tmp)
            (tmp / "SOURCE.txt").write_text(
                f"{source.path}\nstep {source.step}\nweights {weights_of(source.metrics)}\n", encoding="utf-8"
            )
        return source, [self.run_dir / READY_DIR / p.name for p in files]


def resolve_init_from(value: str) -> tuple[Path, bool]:
    """--init-from: a run folder (its best, else newest valid checkpoint), a checkpoint directory,
    or an upstream weights file. Returns (path, is_upstream_file)."""
    path = Path(value)
    if path.is_file():
        return path, True
    if (path / CHECKPOINTS_DIR).is_dir():
        try:
            return CheckpointManager(path).best_checkpoint().path, False
        except CheckpointError:
            raise UsageError(f"--init-from {value}: the run has no valid checkpoint") from None
    if (path / MANIFEST).is_file():
        return path, False
    raise UsageError(f"--init-from {value}: not a run folder, a checkpoint directory or a weights file")


def resolve_checkpoint(target: Path, prefer: str = "best") -> StoredCheckpoint:
    """A checkpoint directory as given, or a run folder's best (else newest) valid checkpoint."""
    target = Path(target)
    if (target / MANIFEST).is_file():
        ckpt = read_checkpoint_dir(target)
        if ckpt.problem:
            raise CheckpointError(f"{target}: {ckpt.problem}")
        return ckpt
    if not (target / CHECKPOINTS_DIR).is_dir():
        raise UsageError(f"{target}: neither a checkpoint directory nor a run folder with checkpoints/")
    return CheckpointManager(target).best_checkpoint(prefer)
