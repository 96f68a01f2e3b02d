"""When to save and what to keep: pure policy objects (no torch, no I/O).

Two cadences, as users of the upstream trainers expect:
- milestones every `save_every` updates, kept by retention: the `keep_last` newest, every
  `keep_every`-th milestone if set, and the best by a named metric;
- a rolling full-state checkpoint every `last_every` updates (or `last_every_minutes`), of which
  only the newest is kept.

THE best checkpoint is decided here alone (`RetentionPolicy.standing`, by `compare`): two
checkpoints said with the same sentences and seeds are compared by their paired differences.

Retention never removes the checkpoint the run resumed from, nor the best one, and it only runs
after a successful commit (the store's caller enforces the ordering; these objects only decide).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

ROUNDING = 1e-9  # scores are stored rounded: 0.5 - 0.5 read back is "equal", not a hair apart
Role = Literal["milestone", "rolling"]
StateKind = Literal["full", "weights"]


@dataclass(frozen=True)
class CheckpointInfo:
    """What policies need to know about one committed checkpoint (read from its manifest)."""

    name: str  # directory name, e.g. "step_00001200"
    step: int
    role: Role
    kind: StateKind
    size_bytes: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)  # numbers, and a scored milestone's "weights"/"scores"

    @property
    def is_full(self) -> bool:
        return self.kind == "full"

    def measured(self, metric: str) -> float | None:
        return measured(self.metrics, metric)


def measured(metrics: Mapping[str, Any], metric: str) -> float | None:
    """The finite number `metric` holds in `metrics`, else None."""
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def pairs_key(metric: str) -> str:
    """The name of a metric's per-pair values in a manifest's metrics: score -> score_pairs (one
    value per evaluation sentence and seed, in the evaluation set's order)."""
    return f"{metric}_pairs"


PAIR_SET = "pair_set"  # in metrics: which sentences and seeds the pairs were said with (a fingerprint)
# One-sided 95% quantiles of Student's t for 1..30 degrees of freedom (n pairs: n - 1); beyond, the
# normal's. A later checkpoint is better when its gain exceeds this many standard errors.
T95: tuple[float, ...] = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782)
T95 += (1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703)
T95 += (1.701, 1.699, 1.697)
T95_NORMAL = 1.645
Verdict = Literal["better", "worse", "tie"]


@dataclass(frozen=True)
class Comparison:
    """What the evidence says about one checkpoint against another on a metric.

    `difference` is this one's value minus the other's (in the metric's own units: a lower loss is
    a negative difference); `stderr` the standard error of the per-pair differences (None when they
    were not paired: one value each); `verdict` "better" or "worse" beyond the evidence's noise,
    else "tie" (the evidence cannot tell them apart). `trend`: a best that took over by staying
    ahead on average at two milestones in a row (`RetentionPolicy.standing`), not by the test."""

    step: int  # the other checkpoint's
    verdict: Verdict
    difference: float
    stderr: float | None = None
    pairs: int = 0
    trend: bool = False

    def describe(self) -> str:
        """E.g. "better than step 15: +0.029 ± 0.008 (paired, 8 pairs)"."""
        words = {"better": "better than", "worse": "worse than", "tie": "cannot be told from"}[self.verdict]
        if self.trend:
            words = "ahead of"
        evidence = (
            f"{self.difference:+.3f} ± {self.stderr:.3f} (paired, {self.pairs} pairs)"
            if self.stderr is not None
            else f"{self.difference:+.3f} (unpaired: one value each)"
        )
        return f"{words} step {self.step}: {evidence}" + (" at two milestones in a row" if self.trend else "")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.describe()}


def compare(
    a: Mapping[str, Any], b: Mapping[str, Any], metric: str, mode: Literal["min", "max"], other_step: int = 0
) -> Comparison:
    """Measurements `a` against `b` (both measured) on `metric`.

    Paired (both hold `<metric>_pairs` of the same length and the same `pair_set`): the
    difference of the two values (of the pairs both said, when one said only some) against the
    standard error of the per-pair differences; `a` is
    better (worse) when its gain exceeds T95 standard errors, a one-sided paired t-test at 5%.
    The checkpoints were said with the same sentences and seeds, so what a sentence or a seed
    does to both cancels out, and each one's own spread decides nothing. Unpaired (older
    manifests, a validation loss, fewer than two pairs): the values alone, strictly."""
    mine, theirs = measured(a, metric), measured(b, metric)
    if mine is None or theirs is None:
        raise ValueError(f"compare() compares measured {metric!r} values only")
    difference = round(mine - theirs, 9)
    gain = difference if mode == "max" else -difference
    differences = _paired_differences(a, b, metric)
    if differences is None:
        verdict: Verdict = "better" if gain > ROUNDING else "worse" if gain < -ROUNDING else "tie"
        return Comparison(other_step, verdict, difference)
    n = len(differences)
    centre = sum(differences) / n
    if n < len(a[pairs_key(metric)]):  # a set said only some seeds: its value is not over the same takes
        difference = round(centre, 9)
        gain = difference if mode == "max" else -difference
    stderr = math.sqrt(sum((d - centre) ** 2 for d in differences) / (n - 1) / n)
    noise = (T95[n - 2] if n - 2 < len(T95) else T95_NORMAL) * stderr
    verdict = "better" if gain > noise + ROUNDING else "worse" if gain < -noise - ROUNDING else "tie"
    return Comparison(other_step, verdict, difference, stderr, n)


def _paired_differences(a: Mapping[str, Any], b: Mapping[str, Any], metric: str) -> list[float] | None:
    """a's per-pair values minus b's, where both measured a pair (a weight set that said only
    some seeds holds None for the others); None unless at least two pairs were said alike (the
    same `pair_set`, the same count)."""
    mine, theirs = a.get(pairs_key(metric)), b.get(pairs_key(metric))
    if not isinstance(mine, list) or not isinstance(theirs, list) or len(mine) != len(theirs):
        return None
    if a.get(PAIR_SET) != b.get(PAIR_SET):
        return None
    differences = [float(x) - float(y) for x, y in zip(mine, theirs) if _finite(x) and _finite(y)]
    return differences if len(differences) >= 2 else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Standing:
    """Where the checkpoints of a run stand on the best metric (`RetentionPolicy.standing`)."""

    best: CheckpointInfo | None
    tied: tuple[CheckpointInfo, ...] = ()  # others the evidence cannot tell from the best
    since_best: int = 0  # measured checkpoints after the best: none of them took over
    # name -> that checkpoint against the best; the best's own: against the best it took over from
    comparisons: Mapping[str, Comparison] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveDecision:
    role: Role
    kind: StateKind


@dataclass(frozen=True)
class SaveSchedule:
    """Decides whether the update just finished should be checkpointed, and how."""

    save_every: int
    last_every: int | None = None
    last_every_minutes: float | None = None
    milestone_kind: StateKind = "full"

    def __post_init__(self) -> None:
        if self.save_every < 1:
            raise ValueError("save_every must be >= 1")
        if self.last_every is not None and self.last_every < 1:
            raise ValueError("last_every must be >= 1")

    def decide(self, step: int, minutes_since_full_save: float) -> SaveDecision | None:
        """The save due after update `step`, or None. A milestone wins over a rolling save."""
        if step % self.save_every == 0:
            return SaveDecision("milestone", self.milestone_kind)
        if self.last_every is not None and step % self.last_every == 0:
            return SaveDecision("rolling", "full")
        if self.last_every_minutes is not None and minutes_since_full_save >= self.last_every_minutes:
            return SaveDecision("rolling", "full")
        return None

    def count_milestones(self, first_step: int, last_step: int) -> int:
        """How many milestones fall in (first_step, last_step]."""
        return max(0, last_step // self.save_every - first_step // self.save_every)


@dataclass(frozen=True)
class RetentionPolicy:
    """Which committed checkpoints to keep."""

    keep_last: int = 3
    keep_every: int | None = None  # keep every K-th milestone (by milestone index step/save_every)
    save_every: int = 1
    best_metric: str | None = "val_loss"
    best_mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise ValueError("keep_last must be >= 1")

    def best(self, infos: Iterable[CheckpointInfo]) -> CheckpointInfo | None:
        """THE best checkpoint: see `standing`."""
        return self.standing(infos).best

    def standing(self, infos: Iterable[CheckpointInfo]) -> Standing:
        """The best checkpoint by the metric, walked in step order (`compare` decides each step):

        - the first measured checkpoint is the best;
        - a later one that is better than the best (beyond the noise of their paired
          differences) takes over;
        - a later one ahead of the best on average, right after another that was ahead of it too,
          takes over (the trend): two milestones in a row that score above the best are where the
          run is going, and one noisy early milestone, whose noise widens every comparison with
          it, cannot keep them out forever;
        - anything else leaves the best where it is: when the evidence cannot tell two checkpoints
          apart, the earlier stays (and the run's "ready" voice does not move back and forth).
        """
        metric, mode = self.best_metric or "", self.best_mode
        measured = sorted((i for i in infos if metric and i.measured(metric) is not None), key=lambda i: i.step)
        if not measured:
            return Standing(None)
        best, took_over, ahead_before = measured[0], None, False
        for info in measured[1:]:
            found = compare(info.metrics, best.metrics, metric, mode, best.step)
            ahead = (found.difference if mode == "max" else -found.difference) > ROUNDING
            if found.verdict == "better" or (ahead and ahead_before):
                trend = found.verdict != "better"
                best, took_over, ahead_before = info, replace(found, trend=trend), False
            else:
                ahead_before = ahead
        comparisons = {
            i.name: compare(i.metrics, best.metrics, metric, mode, best.step) for i in measured if i is not best
        }
        if took_over is not None:
            comparisons[best.name] = took_over
        tied = tuple(i for i in measured if i is not best and comparisons[i.name].verdict == "tie")
        return Standing(best, tied, sum(1 for i in measured if i.step > best.step), comparisons)

    def beats(self, a: CheckpointInfo, b: CheckpointInfo) -> bool:
        """Whether `a` is better than `b` by the evidence (`compare`)."""
        return compare(a.metrics, b.metrics, self.best_metric or "", self.best_mode).verdict == "better"

    def keep(self, infos: Sequence[CheckpointInfo], protected: Iterable[str] = ()) -> set[str]:
        """Names of the checkpoints to keep."""
        kept = self._keep(infos, protected)
        # The best is a walk through the checkpoints in step order: removing an earlier best that a
        # later one beat could hand the title to a checkpoint that only tied that earlier best.
        # Such earlier checkpoints stay (nearest first) until the remaining ones choose the same best.
        best = self.best(infos)
        dropped = sorted(
            (i for i in infos if i.name not in kept and best is not None and i.step < best.step), key=lambda i: -i.step
        )
        while dropped and _name(self.best([i for i in infos if i.name in kept])) != _name(best):
            kept.add(dropped.pop(0).name)
        return kept

    def _keep(self, infos: Sequence[CheckpointInfo], protected: Iterable[str]) -> set[str]:
        kept = set(protected)
        milestones = sorted((i for i in infos if i.role == "milestone"), key=lambda i: i.step)
        kept.update(i.name for i in milestones[-self.keep_last :])
        if self.keep_every:
            kept.update(i.name for i in milestones if (i.step // self.save_every) % self.keep_every == 0)
        best = self.best(infos)
        if best is not None:
            kept.add(best.name)
        # The newest full-state checkpoint is what a crash resumes from: always kept. Older rolling
        # checkpoints are dropped, so only the newest rolling one survives (and none once a newer
        # full-state milestone has made it redundant).
        full = [i for i in infos if i.is_full]
        if full:
            kept.add(max(full, key=lambda i: i.step).name)
        return kept

    def to_remove(self, infos: Sequence[CheckpointInfo], protected: Iterable[str] = ()) -> list[CheckpointInfo]:
        """Checkpoints retention removes, oldest first."""
        kept = self.keep(infos, protected)
        return sorted((i for i in infos if i.name not in kept), key=lambda i: i.step)


def _name(info: CheckpointInfo | None) -> str | None:
    return info.name if info is not None else None


@dataclass(frozen=True)
class DiskVerdict:
    """What the disk guard decided for one save."""

    fits: bool
    prune: tuple[str, ...]  # names to remove first (allowed by retention), oldest first
    needed_bytes: int
    available_bytes: int
    reason: str = ""


@dataclass(frozen=True)
class DiskGuard:
    """Decides whether a save of `estimated_bytes` fits in free space and the run's budget.

    `margin_bytes` stays free on the disk so that logs, TensorBoard and the OS keep working.
    """

    budget_bytes: int | None = None
    margin_bytes: int = 64 * 1024 * 1024

    def check(
        self,
        planned: CheckpointInfo,
        free_bytes: int,
        used_bytes: int,
        infos: Sequence[CheckpointInfo],
        retention: RetentionPolicy,
        protected: Iterable[str] = (),
    ) -> DiskVerdict:
        """Fit `planned` (its size_bytes an estimate) by pruning what retention allows.

        Allowed: what retention would remove once `planned` is committed (the milestone that falls
        out of keep_last, say), oldest first, but never the newest full-state checkpoint that
        exists now: if the save then fails, the run must still have something to resume from.
        """
        full_now = [i for i in infos if i.is_full]
        safety_net = {max(full_now, key=lambda i: i.step).name} if full_now else set()
        candidates = [
            i for i in retention.to_remove([*infos, planned], {*protected, *safety_net}) if i.name != planned.name
        ]
        prune: list[str] = []
        free, used = free_bytes, used_bytes
        for info in [None, *candidates]:  # first try without pruning anything
            if info is not None:
                prune.append(info.name)
                free += info.size_bytes
                used -= info.size_bytes
            room = self._room(free, used)
            if planned.size_bytes <= room:
                return DiskVerdict(True, tuple(prune), planned.size_bytes, room)
        room = self._room(free, used)
        limit = (
            "the disk budget"
            if self.budget_bytes is not None and self.budget_bytes - used < free
            else "free disk space"
        )
        return DiskVerdict(
            False, (), planned.size_bytes, room, f"needs {planned.size_bytes} bytes but {limit} leaves {max(room, 0)}"
        )

    def _room(self, free: int, used: int) -> int:
        room = free - self.margin_bytes
        if self.budget_bytes is not None:
            room = min(room, self.budget_bytes - used)
        return room


def projected_peak_bytes(
    full_bytes: int,
    milestone_bytes: int,
    schedule: SaveSchedule,
    retention: RetentionPolicy,
    start_step: int,
    max_updates: int,
) -> int:
    """Most bytes the checkpoints of a run can take at once.

    keep_last milestones, the best, every keep_every-th milestone, the rolling one, plus one
    more being written (a commit writes the new checkpoint before retention drops an old one).
    """
    milestones = min(retention.keep_last, schedule.count_milestones(0, max_updates))
    if retention.keep_every:
        milestones += schedule.count_milestones(0, max_updates) // retention.keep_every
    if retention.best_metric:
        milestones += 1
    milestones = min(milestones, schedule.count_milestones(0, max_updates))
    has_rolling = schedule.last_every is not None or schedule.last_every_minutes is not None
    in_flight = max(full_bytes, milestone_bytes)
    return milestones * milestone_bytes + (full_bytes if has_rolling else 0) + in_flight


WEIGHT_SETS = ("ema", "raw")  # what a checkpoint holds: ema.safetensors, and model.safetensors (the trained weights)


def weights_of(metrics: Mapping[str, Any]) -> str:
    """The weight set a checkpoint's score chose (its metrics' `weights`); the EMA for a checkpoint
    that was never scored, or scored before both were."""
    chosen = metrics.get("weights")
    return chosen if chosen in WEIGHT_SETS else "ema"


def choose_weights(scores: Mapping[str, Mapping[str, Any]], metric: str = "score") -> str:
    """Which of a checkpoint's weight sets it is heard with: the EMA (what upstream inference
    uses), unless the raw weights are better by the evidence (`compare`: paired over the same
    sentences and seeds). Either alone, when only one was measured."""
    ema, raw = scores.get("ema") or {}, scores.get("raw") or {}
    if measured(raw, metric) is None:
        return "ema"
    if measured(ema, metric) is None:
        return "raw"
    return "raw" if compare(raw, ema, metric, "max").verdict == "better" else "ema"
