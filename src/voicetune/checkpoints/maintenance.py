"""What `voicetune ckpt list | verify | prune` do, as library functions returning plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voicetune.checkpoints.lock import RunLock
from voicetune.checkpoints.manager import CheckpointManager, CheckpointOptions
from voicetune.checkpoints.policy import RetentionPolicy
from voicetune.checkpoints.store import MANIFEST, CheckpointStore, StoredCheckpoint
from voicetune.errors import UsageError

SCORE_KEYS = ("wer", "cer", "similarity", "dnsmos", "score")  # written by milestone evaluation


@dataclass
class CheckpointRow:
    name: str
    path: str
    step: int | None
    role: str
    kind: str
    size_bytes: int
    metrics: dict[str, float]
    created: str | None
    best: bool
    status: str  # "ok", "unverified" (list does not hash), or the problem
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        # The milestone scores also as top-level keys (None where not scored).
        return {**asdict(self), **{key: self.metrics.get(key) for key in SCORE_KEYS}}


def retention_of_run(run: Path, keep_last: int | None = None) -> RetentionPolicy:
    """The run's own retention settings (from run.json), optionally with another keep_last."""
    return CheckpointOptions.of_run(run, keep_last=keep_last).retention()


def _row(ckpt: StoredCheckpoint, best_name: str | None, verified: bool) -> CheckpointRow:
    m = ckpt.manifest or {}
    status = "ok" if verified and ckpt.problem is None else ("unverified" if ckpt.problem is None else "invalid")
    return CheckpointRow(ckpt.name, str(ckpt.path), m.get("step"), m.get("role", "?"), m.get("kind", "?"), ckpt.size_bytes,
                         dict(m.get("metrics", {})), m.get("created"), ckpt.name == best_name, status, ckpt.problem)


def list_checkpoints(run: Path, include_abandoned: bool = False) -> tuple[list[CheckpointRow], list[str]]:
    """Checkpoints of a run from their manifests (no hashing), and the quarantined ones. With
    `include_abandoned`, also those of abandoned timelines (status "abandoned", never resumed)."""
    store = _store(run)
    found = store.scan()
    best = CheckpointManager(run).best([c.info() for c in found if c.problem is None])
    rows = sorted((_row(c, best.name if best else None, verified=False) for c in found), key=lambda r: (r.step or -1, r.name))
    if include_abandoned:
        for ckpt in store.scan_abandoned():
            row = _row(ckpt, None, verified=False)
            row.name, row.status = f"{ckpt.path.parent.name}/{ckpt.name}", "abandoned"
            rows.append(row)
    quarantined = sorted(p.name for p in store.quarantine_dir.iterdir()) if store.quarantine_dir.is_dir() else []
    return rows, quarantined


def verify_target(target: Path) -> list[CheckpointRow]:
    """Hash every file of one checkpoint, or of every checkpoint of a run. Read-only."""
    target = Path(target)
    if (target / MANIFEST).is_file() or (target.is_dir() and target.parent.name == "checkpoints"):
        store = CheckpointStore(target.parent.parent)
        return [_row(store.verify(target), None, verified=True)]
    store = _store(target)
    checked = [store.verify(c) for c in store.scan()]
    best = CheckpointManager(target).best([c.info() for c in checked if c.problem is None])
    return sorted((_row(c, best.name if best else None, verified=True) for c in checked), key=lambda r: (r.step or -1, r.name))


def prune_run(run: Path, keep_last: int | None = None, dry_run: bool = False, abandoned: bool = False) -> list[str]:
    """Apply retention now; with `abandoned`, also delete every abandoned timeline. Takes the
    run's LOCK, so it refuses while training is running."""
    store = _store(run)
    policy = retention_of_run(run, keep_last)
    if dry_run:
        names = [i.name for i in policy.to_remove(store.valid_infos())]
        return names + ([f"{c.path.parent.name}/{c.name}" for c in store.scan_abandoned()] if abandoned else [])
    with RunLock(run):
        removed = store.apply_retention(policy)
        return removed + (store.remove_abandoned() if abandoned else [])


def _store(run: Path) -> CheckpointStore:
    store = CheckpointStore(Path(run))
    if not store.dir.is_dir():
        raise UsageError(f"{run}: no checkpoints/ folder here; pass a run folder made by `voicetune train`")
    return store
