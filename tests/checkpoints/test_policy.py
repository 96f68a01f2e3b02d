"""Save cadence, retention and disk guard: pure policies tested with tables of fake checkpoints."""

import pytest

from voicetune.checkpoints.policy import (
    CheckpointInfo,
    DiskGuard,
    RetentionPolicy,
    SaveSchedule,
    projected_peak_bytes,
)


def milestone(step, val=None, kind="full", size=100):
    return CheckpointInfo(f"step_{step:08d}", step, "milestone", kind, size, {} if val is None else {"val_loss": val})


def rolling(step, size=100):
    return CheckpointInfo(f"step_{step:08d}", step, "rolling", "full", size)


@pytest.mark.parametrize(
    "step, minutes, expected",
    [
        (100, 0, ("milestone", "full")),
        (50, 0, ("rolling", "full")),
        (51, 0, None),
        (51, 31, ("rolling", "full")),  # the time cadence
        (200, 31, ("milestone", "full")),  # a milestone wins over a rolling save
    ],
)
def test_save_schedule(step, minutes, expected):
    schedule = SaveSchedule(save_every=100, last_every=25, last_every_minutes=30)
    decision = schedule.decide(step, minutes)
    assert (None if decision is None else (decision.role, decision.kind)) == expected


def test_weights_only_milestones_and_counts():
    schedule = SaveSchedule(save_every=100, last_every=None, milestone_kind="weights")
    assert schedule.decide(300, 0).kind == "weights"
    assert schedule.decide(301, 999) is None
    assert schedule.count_milestones(0, 1000) == 10
    assert schedule.count_milestones(250, 1000) == 8


@pytest.mark.parametrize(
    "infos, protected, kept",
    [
        # keep_last=2 newest milestones
        ([milestone(100), milestone(200), milestone(300)], set(), {"step_00000200", "step_00000300"}),
        # the best survives rotation even when old
        (
            [milestone(100, 0.1), milestone(200, 0.5), milestone(300, 0.6), milestone(400, 0.7)],
            set(),
            {"step_00000100", "step_00000300", "step_00000400"},
        ),
        # the checkpoint the run resumed from survives
        (
            [milestone(100), milestone(200), milestone(300)],
            {"step_00000100"},
            {"step_00000100", "step_00000200", "step_00000300"},
        ),
        # only the newest rolling one, and none once a newer full milestone exists
        ([milestone(100), rolling(150), rolling(175)], set(), {"step_00000100", "step_00000175"}),
        ([milestone(100), rolling(150), milestone(200)], set(), {"step_00000100", "step_00000200"}),
        # weights-only milestones never push out the newest full-state checkpoint
        (
            [
                rolling(150),
                milestone(200, kind="weights"),
                milestone(300, kind="weights"),
                milestone(400, kind="weights"),
            ],
            set(),
            {"step_00000150", "step_00000300", "step_00000400"},
        ),
    ],
)
def test_retention_keeps(infos, protected, kept):
    policy = RetentionPolicy(keep_last=2, save_every=100)
    assert policy.keep(infos, protected) == kept
    assert {i.name for i in policy.to_remove(infos, protected)} == {i.name for i in infos} - kept


def test_retention_keep_every_and_best_mode():
    infos = [milestone(s, val=s / 1000) for s in range(100, 1100, 100)]
    policy = RetentionPolicy(keep_last=1, keep_every=5, save_every=100, best_mode="max")
    assert policy.keep(infos) == {"step_00000500", "step_00001000"}  # best by max is also the newest
    assert RetentionPolicy(keep_last=1, save_every=100).best(infos).name == "step_00000100"
    assert RetentionPolicy(best_metric="bleu").best(infos) is None
    nan = [milestone(100, float("nan")), milestone(200, 0.3)]
    assert RetentionPolicy().best(nan).name == "step_00000200"


def test_disk_guard_fits_without_pruning():
    verdict = DiskGuard(margin_bytes=0).check(
        milestone(300), 10_000, 0, [milestone(100), milestone(200)], RetentionPolicy(keep_last=2)
    )
    assert verdict.fits and verdict.prune == ()


def test_disk_guard_prunes_what_retention_would_remove_after_the_save():
    infos = [milestone(100, size=400), milestone(200, size=400)]
    guard = DiskGuard(budget_bytes=1000, margin_bytes=0)
    verdict = guard.check(milestone(300, size=400), 10**9, 800, infos, RetentionPolicy(keep_last=2))
    assert verdict.fits and verdict.prune == ("step_00000100",)


def test_disk_guard_never_prunes_the_best_the_resumed_or_the_only_full_state():
    infos = [milestone(100, val=0.1, size=400), rolling(150, size=400)]
    guard = DiskGuard(budget_bytes=1000, margin_bytes=0)
    verdict = guard.check(rolling(175, size=400), 10**9, 800, infos, RetentionPolicy(keep_last=1))
    assert not verdict.fits and "budget" in verdict.reason
    protected = guard.check(
        milestone(200, size=400),
        10**9,
        800,
        [milestone(100, size=400), rolling(150, size=400)],
        RetentionPolicy(keep_last=1),
        protected={"step_00000100"},
    )
    assert not protected.fits


def test_disk_guard_free_space_and_margin():
    guard = DiskGuard(margin_bytes=100)
    assert not guard.check(milestone(100, size=950), 1000, 0, [], RetentionPolicy()).fits
    assert guard.check(milestone(100, size=900), 1000, 0, [], RetentionPolicy()).fits


def test_projected_peak():
    schedule = SaveSchedule(save_every=100, last_every=10)
    retention = RetentionPolicy(keep_last=3)
    # 3 kept + best + rolling + one in flight
    assert projected_peak_bytes(10, 10, schedule, retention, 0, 1000) == 3 * 10 + 10 + 10 + 10
    assert (
        projected_peak_bytes(10, 2, SaveSchedule(save_every=100, milestone_kind="weights"), retention, 0, 150) == 2 + 10
    )


def test_policies_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, voicetune.checkpoints.policy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def scored(step, score, spread=None):
    metrics = {"score": score, **({} if spread is None else {"score_spread": spread})}
    return CheckpointInfo(f"step_{step:08d}", step, "milestone", "full", 100, metrics)


BY_SCORE = RetentionPolicy(keep_last=2, save_every=100, best_metric="score", best_mode="max")


@pytest.mark.parametrize(
    "scores, best, tied, since",
    [
        # (score, spread) per milestone at steps 100, 200, ...
        ([(0.50, 0.02), (0.51, 0.02)], 100, [200], 1),  # within the spread: a tie, the earlier stays
        ([(0.50, 0.02), (0.53, 0.02)], 200, [], 0),  # beyond it: the later one is best
        ([(0.50, 0.01), (0.52, 0.03)], 100, [200], 1),  # the larger of the two spreads counts
        ([(0.50, 0.02), (0.52, 0.02)], 100, [200], 1),  # exactly the spread is still a tie
        ([(0.50, 0.02), (0.51, 0.02), (0.515, 0.02), (0.519, 0.02)], 100, [200, 300, 400], 3),  # ties never add up
        ([(0.50, 0.02), (0.49, 0.02), (0.60, 0.02), (0.45, 0.02)], 300, [], 1),
        ([(0.50, 0.0), (0.50, 0.0)], 100, [200], 1),  # no spread: equal stays
        ([(0.50, None), (0.5001, None)], 200, [], 0),  # no spread measured: strictly better wins
        ([(float("nan"), 0.0), (0.3, 0.01)], 200, [], 0),  # an unmeasured score never wins
        ([], None, [], 0),
    ],
)
def test_best_changes_only_beyond_the_spread(scores, best, tied, since):
    infos = [scored(100 * (i + 1), score, spread) for i, (score, spread) in enumerate(scores)]
    standing = BY_SCORE.standing(infos)
    assert (standing.best.step if standing.best else None) == best
    assert [i.step for i in standing.tied] == tied
    assert standing.since_best == since
    assert BY_SCORE.best(infos) is standing.best


def test_best_by_lowest_value_uses_the_spread_too():
    policy = RetentionPolicy(best_metric="wer", best_mode="min")
    infos = [
        CheckpointInfo(f"s{i}", i, "milestone", "full", 1, {"wer": w, "wer_spread": 0.05})
        for i, w in enumerate([0.30, 0.27, 0.20])
    ]
    assert policy.best(infos).step == 2  # 0.27 ties 0.30; 0.20 beats it by 0.10


def test_words_in_metrics_are_not_measures():
    info = CheckpointInfo("s", 1, "milestone", "full", 1, {"score": 0.4, "weights": "raw", "scores": {"ema": {}}})
    assert RetentionPolicy(best_metric="weights", best_mode="max").best([info]) is None
    assert BY_SCORE.best([info]) is info


def test_retention_keeps_what_keeps_the_best_the_same():
    # 200 tied 100 (within 0.02) and stayed behind it; 300 beat 100 by 0.03 but only ties 200. Dropping
    # 100 alone would make 200 the first and so the best: 100 stays while 200 does.
    policy = RetentionPolicy(keep_last=3, save_every=100, best_metric="score", best_mode="max")
    infos = [scored(100, 0.50, 0.02), scored(200, 0.515, 0.02), scored(300, 0.53, 0.02), scored(400, 0.40, 0.02)]
    assert policy.best(infos).step == 300
    kept = policy.keep(infos)
    assert kept == {"step_00000100", "step_00000200", "step_00000300", "step_00000400"}
    assert policy.best([i for i in infos if i.name in kept]).step == 300
    # once 200 falls out too, 100 is no longer needed
    later = [*infos, scored(500, 0.41, 0.02), scored(600, 0.42, 0.02)]
    assert policy.keep(later) == {"step_00000300", "step_00000400", "step_00000500", "step_00000600"}


@pytest.mark.parametrize(
    "ema, raw, chosen",
    [
        ({"score": 0.40, "score_spread": 0.02}, {"score": 0.45, "score_spread": 0.02}, "raw"),
        ({"score": 0.40, "score_spread": 0.02}, {"score": 0.41, "score_spread": 0.02}, "ema"),  # a tie: upstream's EMA
        ({"score": 0.40, "score_spread": 0.01}, {"score": 0.43, "score_spread": 0.04}, "ema"),
        ({"score": 0.50, "score_spread": 0.0}, {"score": 0.30, "score_spread": 0.0}, "ema"),
        ({"score": None}, {"score": 0.30}, "raw"),
        ({"score": 0.30}, {}, "ema"),
    ],
)
def test_choose_weights(ema, raw, chosen):
    from voicetune.checkpoints.policy import choose_weights

    assert choose_weights({"ema": ema, "raw": raw}) == chosen
