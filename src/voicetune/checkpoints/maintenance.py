"""What `voicetune ckpt list | verify | prune` do, as library functions returning plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voicetune.checkpoints.lock import RunLock
from voicetune.checkpoints.manager import CheckpointManager, CheckpointOptions
from voicetune.checkpoints.policy import Comparison, RetentionPolicy, Standing
from voicetune.checkpoints.store import MANIFEST, CheckpointStore, StoredCheckpoint
from voicetune.errors import UsageError

# Written by milestone evaluation (train.evaluator): the measures of the weights chosen, their
# score's spread over seeds, its per-pair values (each sentence and seed), which weights ("ema" or
# "raw") and every weight set's measures.
SCORE_KEYS = ("wer", "cer", "similarity", "dnsmos", "score", "score_spread", "score_pairs", "weights", "scores")


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
    tied_with: int | None = None  # the best's step, when the evidence cannot tell this checkpoint from it
    compared: Comparison | None = None  # this checkpoint against the best (the best: against the one it took over from)

    @property
    def tie(self) -> bool:
        return self.tied_with is not None

    def to_json(self) -> dict[str, Any]:
        # The milestone scores also as top-level keys (None where not scored).
        return {
            **asdict(self),
            "tie": self.tie,
            "compared": self.compared.to_json() if self.compared else None,
            **{key: self.metrics.get(key) for key in SCORE_KEYS},
        }


def comparison_lines(rows: list[CheckpointRow]) -> list[str]:
    """What each comparison with the best found, one line per compared checkpoint: "step 45
    (best): better than step 15: +0.029 ± 0.008 (paired, 8 pairs)" (`ckpt list`, the studio)."""
    return [
        f"step {r.step}{' (best)' if r.best else ''}: {r.compared.describe()}"
        for r in rows
        if r.compared is not None and r.status != "abandoned"
    ]


def retention_of_run(run: Path, keep_last: int | None = None) -> RetentionPolicy:
    """The run's own retention settings (from run.json), optionally with another keep_last."""
    return CheckpointOptions.of_run(run, keep_last=keep_last).retention()


def _row(ckpt: StoredCheckpoint, standing: Standing, verified: bool) -> CheckpointRow:
    m = ckpt.manifest or {}
    status = "ok" if verified and ckpt.problem is None else ("unverified" if ckpt.problem is None else "invalid")
    best = standing.best
    tied = best is not None and any(t.name == ckpt.name for t in standing.tied)
    return CheckpointRow(
        ckpt.name,
        str(ckpt.path),
        m.get("step"),
        m.get("role", "?"),
        m.get("kind", "?"),
        ckpt.size_bytes,
        ckpt.metrics,
        m.get("created"),
        best is not None and ckpt.name == best.name,
        status,
        ckpt.problem,
        best.step if tied and best is not None else None,
        standing.comparisons.get(ckpt.name),
    )


def list_checkpoints(run: Path, include_abandoned: bool = False) -> tuple[list[CheckpointRow], list[str]]:
    """Checkpoints of a run from their manifests (no hashing), and the quarantined ones. With
    `include_abandoned`, also those of abandoned timelines (status "abandoned", never resumed).

    Each row: `best` (THE best, the manager's), `compared` (what comparing it with the best found;
    for the best, with the best it took over from), `tied_with` (the best's step when the evidence
    cannot tell the row from it: the earlier stays best), and in `to_json()` the scores of
    milestone evaluation (`SCORE_KEYS`)."""
    store = _store(run)
    found = store.scan()
    standing = CheckpointManager(run).standing([c.info() for c in found if c.problem is None])
    rows = sorted((_row(c, standing, verified=False) for c in found), key=lambda r: (r.step or -1, r.name))
    if include_abandoned:
        for ckpt in store.scan_abandoned():
            row = _row(ckpt, Standing(None), verified=False)
            row.name, row.status = f"{ckpt.path.parent.name}/{ckpt.name}", "abandoned"
            rows.append(row)
    quarantined = sorted(p.name for p in store.quarantine_dir.iterdir()) if store.quarantine_dir.is_dir() else []
    return rows, quarantined


def verify_target(target: Path) -> list[CheckpointRow]:
    """Hash every file of one checkpoint, or of every checkpoint of a run. Read-only."""
    target = Path(target)
    if (target / MANIFEST).is_file() or (target.is_dir() and target.parent.name == "checkpoints"):
        store = CheckpointStore(target.parent.parent)
        return [_row(store.verify(target), Standing(None), verified=True)]
    store = _store(target)
    checked = [store.verify(c) for c in store.scan()]
    standing = CheckpointManager(target).standing([c.info() for c in checked if c.problem is None])
    return sorted((_row(c, standing, verified=True) for c in checked), key=lambda r: (r.step or -1, r.name))


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
