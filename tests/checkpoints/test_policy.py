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
        ([milestone(100, 0.1), milestone(200, 0.5), milestone(300, 0.6), milestone(400, 0.7)], set(),
         {"step_00000100", "step_00000300", "step_00000400"}),
        # the checkpoint the run resumed from survives
        ([milestone(100), milestone(200), milestone(300)], {"step_00000100"},
         {"step_00000100", "step_00000200", "step_00000300"}),
        # only the newest rolling one, and none once a newer full milestone exists
        ([milestone(100), rolling(150), rolling(175)], set(), {"step_00000100", "step_00000175"}),
        ([milestone(100), rolling(150), milestone(200)], set(), {"step_00000100", "step_00000200"}),
        # weights-only milestones never push out the newest full-state checkpoint
        ([rolling(150), milestone(200, kind="weights"), milestone(300, kind="weights"), milestone(400, kind="weights")],
         set(), {"step_00000150", "step_00000300", "step_00000400"}),
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
    verdict = DiskGuard(margin_bytes=0).check(milestone(300), 10_000, 0, [milestone(100), milestone(200)],
                                              RetentionPolicy(keep_last=2))
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
    protected = guard.check(milestone(200, size=400), 10**9, 800, [milestone(100, size=400), rolling(150, size=400)],
                            RetentionPolicy(keep_last=1), protected={"step_00000100"})
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
    assert projected_peak_bytes(10, 2, SaveSchedule(save_every=100, milestone_kind="weights"), retention, 0, 150) == 2 + 10


def test_policies_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, voicetune.checkpoints.policy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
