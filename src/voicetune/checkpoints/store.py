"""The checkpoint store: atomic commit, verification, quarantine, loading, retention.

It knows no model and no training loop: a checkpoint is a set of named files (tensors written as
safetensors, the rest as JSON) plus a manifest. The rules (DESIGN.md):

- Commit = write into `step_N.tmp-<pid>-<n>/` (fsio's temporary name), fsync every file, write manifest.json last,
  fsync it and the directory, rename the directory into place, fsync the parent. A crash at any
  instant leaves the old set of checkpoints, or the old set plus one complete new one.
- Valid = manifest present and every file's size and sha256 match. "Latest" is the highest step
  among valid checkpoints, read from manifests, never from directory names.
- An invalid checkpoint is moved to quarantine/ with REASON.txt; nothing else is ever deleted
  except by retention, which runs only after a successful commit.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from voicetune import fsio
from voicetune.checkpoints import serialization as ser
from voicetune.checkpoints.policy import CheckpointInfo, RetentionPolicy
from voicetune.checkpoints.scores import EVAL_JSONL, read_eval_rows
from voicetune.errors import CheckpointDamaged, CheckpointError
from voicetune.faults import crash_point

log = logging.getLogger("voicetune.checkpoints")

MANIFEST = "manifest.json"
FORMAT = "voicetune-checkpoint"
FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
QUARANTINE_DIR = "quarantine"
ABANDONED_DIR = "abandoned"
ABANDON_PLAN = "ABANDONED.json"


@dataclass
class CheckpointPayload:
    """What one commit writes: tensor files, JSON files and the manifest's facts."""

    step: int
    role: Literal["milestone", "rolling"]
    kind: Literal["full", "weights"]
    tensor_files: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # "model" -> tensors
    json_files: dict[str, Any] = field(default_factory=dict)  # "loop" -> JSON-able
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time: float = 0.0
    config_hash: str = ""
    session: str = ""  # the training session that wrote it
    parent: str | None = None  # the checkpoint this one's training continued (its timeline)
    rank_weights: dict[str, str] = field(default_factory=dict)  # "rank1" -> sha256 of its weights (several processes)

    def estimated_bytes(self) -> int:
        tensors = sum(ser.safetensors_size(t) for t in self.tensor_files.values())
        return tensors + sum(len(ser.json_bytes(v)) for v in self.json_files.values()) + 4096


@dataclass
class StoredCheckpoint:
    """A checkpoint directory as found on disk, with what its manifest says."""

    path: Path
    manifest: dict[str, Any] | None
    problem: str | None = None  # why it is invalid (None: not known to be invalid)
    too_new: bool = False  # written by a newer voicetune: refused, never quarantined
    # Scores measured after the commit (RUN/eval.jsonl: a milestone a stop reached during its
    # scoring, scored by the resumed run); its manifest stays as committed.
    scored_later: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def step(self) -> int:
        return int(self.manifest["step"]) if self.manifest else -1

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "?") if self.manifest else "?"

    @property
    def role(self) -> str:
        return self.manifest.get("role", "?") if self.manifest else "?"

    @property
    def size_bytes(self) -> int:
        if not self.manifest:
            return 0
        return sum(int(f["size"]) for f in self.manifest.get("files", {}).values())

    @property
    def metrics(self) -> dict[str, Any]:
        """The manifest's metrics, and the scores measured after the commit (`scored_later`)."""
        return {**(self.manifest.get("metrics", {}) if self.manifest else {}), **self.scored_later}

    def info(self) -> CheckpointInfo:
        return CheckpointInfo(self.name, self.step, self.role, self.kind, self.size_bytes, self.metrics)  # type: ignore[arg-type]


@dataclass
class LoadedCheckpoint:
    """A verified checkpoint's contents: tensors by file, JSON by file, and its manifest."""

    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, dict[str, torch.Tensor]]
    json: dict[str, Any]

    def tree(self, component: str) -> Any:
        """Reassemble a component saved with `split_tree` (e.g. 'optimizer')."""
        return ser.join_tree(self.json.get(component), self.tensors.get(component, {}))


class CheckpointStore:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / CHECKPOINTS_DIR
        self.quarantine_dir = self.run_dir / QUARANTINE_DIR
        self.abandoned_dir = self.run_dir / ABANDONED_DIR

    # ---- scanning -------------------------------------------------------------------------

    def remove_temporary(self) -> list[Path]:
        """Delete leftovers of interrupted commits (`*.tmp-*`). Only the lock holder may call this."""
        return fsio.sweep_temporaries(self.dir)

    def scan(self) -> list[StoredCheckpoint]:
        """Every committed checkpoint directory, with its manifest when readable (no hashing)."""
        found: list[StoredCheckpoint] = []
        if not self.dir.is_dir():
            return found
        for entry in sorted(self.dir.iterdir()):
            if fsio.is_temp_name(entry.name) or not entry.is_dir():
                continue
            found.append(read_checkpoint_dir(entry))
        unscored = [c for c in found if c.manifest and c.role == "milestone" and "score" not in c.metrics]
        if unscored:
            later = {row["step"]: row for row in read_eval_rows(self.run_dir / EVAL_JSONL)}
            for ckpt in unscored:
                ckpt.scored_later = {k: v for k, v in later.get(ckpt.step, {}).items() if k != "step"}
        return found

    def valid_infos(self) -> list[CheckpointInfo]:
        """Policy view of the checkpoints whose manifest reads (for retention and disk guard)."""
        return [c.info() for c in self.scan() if c.problem is None]

    # ---- commit ---------------------------------------------------------------------------

    def commit(self, payload: CheckpointPayload) -> StoredCheckpoint:
        """Write `payload` as a new checkpoint, atomically. Raises OSError (disk full...) with no
        temporary directory left behind."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self._free_name(payload)
        tmp = fsio.temp_path(final)
        tmp.mkdir()
        # One thread hashes while the caller's thread writes; another fsyncs each finished file
        # while the next one is written. The manifest is written only once all are durable.
        files: dict[str, dict[str, Any]] = {}
        pending: list[Future] = []
        with ThreadPoolExecutor(1, "hash") as hasher, ThreadPoolExecutor(1, "fsync") as syncer:
            try:
                for component, tensors in payload.tensor_files.items():
                    name = f"{component}.safetensors"
                    files[name], synced = _write_file(
                        tmp / name, functools.partial(_write_tensors, tensors=tensors), hasher, syncer
                    )
                    pending.append(synced)
                for component, obj in payload.json_files.items():
                    name = f"{component}.json"
                    data = ser.json_bytes(obj)
                    files[name], synced = _write_file(
                        tmp / name, functools.partial(_write_bytes, data=data), hasher, syncer
                    )
                    pending.append(synced)
                for synced in pending:
                    synced.result()  # raises the fsync's error, if any
            except BaseException:
                for synced in pending:
                    synced.exception()  # let every fsync finish before the directory goes
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        try:
            crash_point("commit.files_written")
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "step": payload.step,
                "epoch": payload.epoch,
                "role": payload.role,
                "kind": payload.kind,
                "metrics": payload.metrics,
                "wall_time": payload.wall_time,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": socket.gethostname(),
                "config_hash": payload.config_hash,
                "session": payload.session,
                "parent": payload.parent,
                "files": files,
            }
            if payload.rank_weights:
                manifest["rank_weights_sha256"] = payload.rank_weights
            _write_file(tmp / MANIFEST, lambda w: w.write(ser.json_bytes(manifest)))[1].result()
            fsio.fsync_dir(tmp)
            crash_point("commit.manifest_written")
            fsio.commit_dir(tmp, final)
            crash_point("commit.renamed")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("committed %s (step %d, %s %s)", final.name, payload.step, payload.role, payload.kind)
        return StoredCheckpoint(final, manifest)

    def _free_name(self, payload: CheckpointPayload) -> Path:
        base = f"step_{payload.step:08d}"
        candidate = self.dir / base
        n = 1
        while candidate.exists():
            candidate = self.dir / f"{base}_{payload.role}{'' if n == 1 else n}"
            n += 1
        return candidate

    # ---- verification, quarantine ---------------------------------------------------------

    def verify(self, checkpoint: StoredCheckpoint | Path) -> StoredCheckpoint:
        """Full verification (every file's size and sha256); returns it with `problem` set or None."""
        ckpt = checkpoint if isinstance(checkpoint, StoredCheckpoint) else read_checkpoint_dir(Path(checkpoint))
        if ckpt.problem is None:
            ckpt.problem = verify_files(ckpt.path, ckpt.manifest or {})
        return ckpt

    def quarantine(self, checkpoint: StoredCheckpoint, reason: str) -> Path:
        """Move an invalid checkpoint out of the way, with REASON.txt. Never deletes it."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = fsio.move(checkpoint.path, fsio.free_name(self.quarantine_dir, checkpoint.name))
        fsio.atomic_write_text(
            target / "REASON.txt",
            f"quarantined {time.strftime('%Y-%m-%d %H:%M:%S')} by pid {os.getpid()} on "
            f"{socket.gethostname()}\nreason: {reason}\n",
        )
        log.warning("quarantined %s: %s", checkpoint.name, reason)
        return target

    def latest_valid(
        self,
        require_full: bool = True,
        on_quarantine: Callable[[StoredCheckpoint, Path], None] | None = None,
    ) -> StoredCheckpoint | None:
        """Newest valid checkpoint (by manifest step), verifying newest first.

        Every checkpoint found invalid on the way is quarantined; directories whose manifest is
        missing or unreadable are quarantined too, since no step can be trusted for them.
        """
        for ckpt in self.candidates(require_full, on_quarantine):
            self.verify(ckpt)
            if ckpt.problem is None:
                return ckpt
            self._quarantine_reporting(ckpt, ckpt.problem, on_quarantine)
        return None

    def load_latest(
        self,
        require_full: bool = True,
        on_quarantine: Callable[[StoredCheckpoint, Path], None] | None = None,
    ) -> tuple[StoredCheckpoint, LoadedCheckpoint] | None:
        """Newest checkpoint that loads, verified in the same pass that reads it (a resume reads
        each file once); damaged ones met on the way are quarantined, as in `latest_valid`."""
        for ckpt in self.candidates(require_full, on_quarantine):
            try:
                return ckpt, load_checkpoint(ckpt.path)
            except CheckpointDamaged as err:
                ckpt.problem = str(err).split(": ", 1)[-1]
                self._quarantine_reporting(ckpt, ckpt.problem, on_quarantine)
        return None

    def candidates(
        self, require_full: bool = True, on_quarantine: Callable[[StoredCheckpoint, Path], None] | None = None
    ) -> list[StoredCheckpoint]:
        """Checkpoints whose manifest reads, newest first (unhashed). Directories whose manifest
        is missing or unreadable are quarantined, since no step can be trusted for them; one
        written by a newer voicetune stops everything (its run has moved past this version)."""
        found = []
        for ckpt in self.scan():
            if ckpt.too_new:
                raise CheckpointError(f"{ckpt.path}: {ckpt.problem}")
            if ckpt.problem is not None:
                self._quarantine_reporting(ckpt, ckpt.problem, on_quarantine)
            elif not require_full or ckpt.kind == "full":
                found.append(ckpt)
        return sorted(found, key=lambda c: c.step, reverse=True)

    def _quarantine_reporting(self, ckpt, reason, callback) -> None:
        target = self.quarantine(ckpt, reason)
        if callback:
            callback(ckpt, target)

    # ---- timelines ------------------------------------------------------------------------

    def abandon_after(self, resumed: StoredCheckpoint, session: str) -> Path | None:
        """Resuming `resumed` (older than the newest) leaves the future after it behind: move every
        checkpoint of a later step to abandoned/<time>/, so that "latest" is always the newest of
        the timeline being trained. Returns that folder, or None when nothing was after it.

        The plan (ABANDONED.json, which names what to move) is written first and marked complete
        last: a crash in between is finished by `finish_abandoning` at the next start, before
        anything else reads the checkpoints.
        """
        later = sorted(c.name for c in self.scan() if c.manifest is not None and c.step > resumed.step)
        if not later:
            return None
        folder = fsio.free_name(self.abandoned_dir, time.strftime("%Y%m%d-%H%M%S"))
        folder.mkdir(parents=True)
        plan = {
            "resumed_from": resumed.name,
            "resumed_step": resumed.step,
            "session": session,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "checkpoints": later,
            "complete": False,
        }
        fsio.atomic_write_json(folder / ABANDON_PLAN, plan)
        fsio.fsync_dir(self.abandoned_dir)
        self._carry_out(folder, plan)
        return folder

    def finish_abandoning(self) -> list[Path]:
        """Complete the moves of an abandonment that a crash interrupted. Lock holder only."""
        finished = []
        for plan_path in sorted(self.abandoned_dir.glob(f"*/{ABANDON_PLAN}")):
            try:
                plan = json.loads(plan_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not plan.get("complete"):
                self._carry_out(plan_path.parent, plan)
                finished.append(plan_path.parent)
        return finished

    def _carry_out(self, folder: Path, plan: dict[str, Any]) -> None:
        # Until the plan is marked complete no new checkpoint is written (training has not
        # started), so every name it lists still in checkpoints/ is one to move.
        for name in plan["checkpoints"]:
            if (self.dir / name).is_dir():
                fsio.move(self.dir / name, folder / name)
                crash_point("abandon.moved_one")
        fsio.atomic_write_json(folder / ABANDON_PLAN, {**plan, "complete": True})
        log.info("moved %s (after %s) to %s", ", ".join(plan["checkpoints"]), plan["resumed_from"], folder)

    def scan_abandoned(self) -> list[StoredCheckpoint]:
        """Checkpoints of abandoned timelines (listed, never resumed)."""
        found = []
        if self.abandoned_dir.is_dir():
            for folder in sorted(self.abandoned_dir.iterdir()):
                if folder.is_dir():
                    found += [read_checkpoint_dir(p) for p in sorted(folder.iterdir()) if p.is_dir()]
        return found

    def remove_abandoned(self) -> list[str]:
        """Delete every abandoned timeline; returns the checkpoint names removed."""
        removed = [f"{c.path.parent.name}/{c.name}" for c in self.scan_abandoned()]
        if self.abandoned_dir.is_dir():
            fsio.remove_tree(self.abandoned_dir)
        return removed

    # ---- retention ------------------------------------------------------------------------

    def apply_retention(self, policy: RetentionPolicy, protected: Iterable[str] = ()) -> list[str]:
        """Remove what `policy` does not keep. Call only after a successful commit."""
        removed = []
        for info in policy.to_remove(self.valid_infos(), protected):
            self.remove(info.name)
            removed.append(info.name)
        return removed

    def remove(self, name: str) -> None:
        """Delete one checkpoint: renamed to a temporary name first, so a crash mid-delete
        leaves a leftover that the next start removes, never a half-deleted checkpoint."""
        fsio.remove_tree(self.dir / name)
        log.info("removed %s (retention)", name)


# ---- free functions shared with `ckpt verify` of a single directory ------------------------


def read_checkpoint_dir(path: Path) -> StoredCheckpoint:
    """Read a checkpoint directory's manifest (no hashing)."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return StoredCheckpoint(path, None, "manifest.json is missing (the commit never finished)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return StoredCheckpoint(path, None, f"manifest.json is unreadable: {err}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return StoredCheckpoint(path, None, "manifest.json is not a voicetune checkpoint manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        return StoredCheckpoint(
            path,
            manifest,
            f"written by a newer voicetune (checkpoint format {manifest.get('format_version')}, this "
            f"voicetune reads up to {FORMAT_VERSION}); upgrade voicetune to use it",
            too_new=True,
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("step"), int):
        return StoredCheckpoint(path, None, "manifest.json lacks its step or file list")
    return StoredCheckpoint(path, manifest)


def verify_files(path: Path, manifest: dict[str, Any]) -> str | None:
    """Why the files of a checkpoint do not match its manifest, or None when they all do."""
    for name, expected in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != int(expected["size"]):
            return f"{name} has {size} bytes, the manifest says {expected['size']} (truncated or overwritten)"
        if fsio.sha256_file(file) != expected["sha256"]:
            return f"{name} does not match its sha256 (the file is damaged)"
    return None


def load_checkpoint(path: Path, components: Iterable[str] | None = None) -> LoadedCheckpoint:
    """Load a checkpoint, verifying each file in the same pass that reads it.

    Each file is read once: safetensors files are memory-mapped (copy-on-write) and hashed through
    the mapping, and their tensors are views of the mapped pages, so neither a second read nor a
    second copy in memory happens; a file that does not match its manifest is never parsed.
    Raises CheckpointDamaged when a file does not match, CheckpointError when it cannot be used.
    """
    ckpt = read_checkpoint_dir(path)
    if ckpt.problem is not None or ckpt.manifest is None:
        raise (CheckpointError if ckpt.too_new else CheckpointDamaged)(f"{path}: {ckpt.problem}")
    wanted = set(components) if components is not None else None
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    json_parts: dict[str, Any] = {}
    for name, expected in ckpt.manifest["files"].items():
        component, _, ext = name.rpartition(".")
        if wanted is not None and component not in wanted:
            continue
        try:
            mapped = _map_verified(path / name, expected)
        except FileNotFoundError:
            raise CheckpointDamaged(f"{path / name}: {name} is missing") from None
        except OSError as err:
            raise CheckpointError(f"{path / name}: cannot read: {err}") from None
        if ext == "safetensors":
            tensors[component] = ser.safetensors_views(mapped)
        elif ext == "json":
            json_parts[component] = json.loads(bytes(mapped))
    return LoadedCheckpoint(path, ckpt.manifest, tensors, json_parts)


HASH_CHUNK = 8 * 1024 * 1024


def _map_verified(file: Path, expected: dict[str, Any]) -> memoryview:
    """The bytes of `file`, memory-mapped copy-on-write, once their size and sha256 match."""
    import hashlib
    import mmap

    with open(file, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size != int(expected["size"]):
            raise CheckpointDamaged(
                f"{file}: {file.name} has {size} bytes, the manifest says {expected['size']} (truncated or overwritten)"
            )
        if size == 0:
            view = memoryview(b"")
        else:
            # ACCESS_COPY: tensors that alias the file (an optimizer's moments) may be written in
            # place; those pages are copied then, and the file never changes.
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
            mapping.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mapping)
    digest = hashlib.sha256()
    for offset in range(0, size, HASH_CHUNK):
        digest.update(view[offset : offset + HASH_CHUNK])
    if digest.hexdigest() != expected["sha256"]:
        raise CheckpointDamaged(
            f"{file}: {file.name} does not match its sha256 (the file is damaged); run `voicetune ckpt verify`"
        )
    return view


def _write_tensors(writer: ser.HashingWriter, tensors: dict[str, Any]) -> None:
    ser.write_safetensors(writer, tensors)


def _write_bytes(writer: ser.HashingWriter, data: bytes) -> None:
    writer.write(data)


def _write_file(
    path: Path, produce: Callable[[ser.HashingWriter], Any], hasher=None, syncer=None
) -> tuple[dict[str, Any], Future]:
    """Create `path` and let `produce` write it through a hashing writer. Returns its size and
    sha256, and a future that completes once the file is fsynced and closed."""
    handle = open(path, "xb", buffering=1024 * 1024)
    try:
        writer = ser.HashingWriter(handle, hasher)
        produce(writer)
        handle.flush()
    except BaseException:
        handle.close()
        raise

    def sync_and_close() -> None:
        try:
            os.fsync(handle.fileno())
        finally:
            handle.close()

    if syncer is None:
        done: Future = Future()
        try:
            sync_and_close()
            done.set_result(None)
        except OSError as err:
            done.set_exception(err)
        return {"size": writer.size, "sha256": writer.sha256.hexdigest()}, done
    return {"size": writer.size, "sha256": writer.sha256.hexdigest()}, syncer.submit(sync_and_close)
