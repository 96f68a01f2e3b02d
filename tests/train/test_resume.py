"""Training never loses progress: real `voicetune train` subprocesses are stopped, killed and
resumed, and must end bit for bit where an uninterrupted run ends (weights, EMA, optimizer state,
random generator states and every logged loss)."""

from __future__ import annotations

import json
import random
import resource
import signal
import time
from pathlib import Path

import pytest

from support.harness import (
    Training,
    assert_ranks_agree,
    assert_same_tensors,
    cli_env,
    last_logged_step,
    load_tensors,
    run_cli,
    toy_args,
    wait_until,
)
from voicetune.checkpoints.store import CheckpointStore
from voicetune.train.reporting import read_metrics

N = 80
CADENCE = ["--save-every", "20", "--last-every", "5"]
BIG = {"VOICETUNE_TOY_HIDDEN": "512"}  # ~5 MB checkpoints: a save stays in flight long enough to hit


def save_in_flight(run: Path) -> str | None:
    """The name of a checkpoint being committed right now: a temporary directory of a step newer
    than every committed one (retention's deletions also pass through temporary names, but of
    older steps)."""
    folder = run / "checkpoints"
    try:
        entries = [p.name for p in folder.iterdir()]
    except FileNotFoundError:
        return None
    committed = [int(n[5:13]) for n in entries if ".tmp-" not in n]
    for name in entries:
        if ".tmp-" in name and int(name[5:13]) > max(committed, default=0):
            return name.split(".tmp-")[0]
    return None


def final_dir(run: Path) -> Path:
    store = CheckpointStore(run)
    return next(c.path for c in store.scan() if c.step == N)


def assert_same_run(straight: Path, resumed: Path) -> None:
    a, b = final_dir(straight), final_dir(resumed)
    for component in ("model", "ema", "optimizer", "rng"):
        assert_same_tensors(load_tensors(a / f"{component}.safetensors"), load_tensors(b / f"{component}.safetensors"))
    assert json.loads((a / "rng.json").read_text()) == json.loads((b / "rng.json").read_text())  # python/numpy
    la, lb = read_metrics(straight / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [la[s]["train/loss"] for s in range(1, N + 1)] == [lb[s]["train/loss"] for s in range(1, N + 1)]
    assert la[N]["val/loss"] == lb[N]["val/loss"]


@pytest.fixture(scope="module")
def straight_run(toy_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    result = run_cli("train", *toy_args(toy_corpus, run, *CADENCE, max_updates=N))
    assert result.returncode == 0, result.stderr + result.stdout
    return run


@pytest.fixture(scope="module")
def straight_big_run(toy_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight_big") / "run"
    result = run_cli("train", *toy_args(toy_corpus, run, *CADENCE, max_updates=N), env=cli_env(**BIG))
    assert result.returncode == 0, result.stderr + result.stdout
    return run


def test_sigterm_resume_and_fallback_past_a_damaged_checkpoint_equal_a_straight_run(toy_corpus, straight_run, tmp_path):
    run = tmp_path / "run"
    args = toy_args(toy_corpus, run, *CADENCE, max_updates=N)
    training = Training(args, log=tmp_path / "first.log")
    assert wait_until(lambda: last_logged_step(run) >= 33, proc=training.proc)
    training.signal(signal.SIGTERM)
    assert training.wait() == 143
    out = training.output()
    assert "stopped by SIGTERM" in out and "rerun the same command" in out
    stopped_at = last_logged_step(run)
    assert 33 <= stopped_at < N
    store = CheckpointStore(run)
    final = [c for c in store.scan() if c.step == stopped_at]
    assert final and final[0].kind == "full" and store.verify(final[0]).problem is None

    # Damage the checkpoint written at the stop: the run must quarantine it and fall back.
    model_file = final[0].path / "model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-10] ^= 0x10
    model_file.write_bytes(bytes(data))
    resumed = run_cli("train", *args)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert f"{final[0].name} failed verification" in resumed.stdout
    assert (run / "quarantine" / final[0].name / "REASON.txt").read_text().count("sha256") == 1
    assert (
        "resuming from" in resumed.stdout
        and final[0].name not in resumed.stdout.split("resuming from")[1].split("\n")[0]
    )
    assert_same_run(straight_run, run)
    # Samples appear right after the resume too, not only at milestones.
    resumed_step = int(resumed.stdout.split("resuming from")[1].split("at step ")[1].split(" ")[0])
    assert (run / "samples" / f"step_{resumed_step:08d}" / "val_0000_gen.wav").is_file()


def test_kill_9_at_random_moments_and_during_background_saves(toy_corpus, straight_big_run, tmp_path):
    run = tmp_path / "run"
    args = toy_args(toy_corpus, run, *CADENCE, max_updates=N)
    rng = random.Random(7)
    kills_during_save = kills = 0
    for attempt in range(12):
        training = Training(args, env=cli_env(**BIG), log=tmp_path / "log.txt")
        if attempt % 2 == 0:
            # A random moment once training is under way.
            wait_until(lambda: last_logged_step(run) > 0, proc=training.proc)
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            # The instant a background save has its temporary directory on disk.
            wait_until(lambda: save_in_flight(run), interval=0.001, proc=training.proc)
            kills_during_save += training.proc.poll() is None and save_in_flight(run) is not None
        if training.proc.poll() is not None:
            assert training.wait() == 0, training.output()
            break
        training.kill_group()
        kills += 1
        store = CheckpointStore(run)
        assert all(c.problem is None for c in store.scan()), "a kill must never leave a half-committed checkpoint"
    else:
        assert Training(args, env=cli_env(**BIG)).wait() == 0
    assert kills >= 3 and kills_during_save >= 1
    assert "left by an interrupted save" in (run / "train.log").read_text()
    assert_same_run(straight_big_run, run)


def test_sigterm_during_a_save_waits_for_it_then_saves_and_exits_143(toy_corpus, straight_big_run, tmp_path):
    run = tmp_path / "run"
    args = toy_args(toy_corpus, run, *CADENCE, max_updates=N)
    training = Training(args, env=cli_env(**BIG), log=tmp_path / "log.txt")
    in_flight = []
    assert wait_until(
        lambda: in_flight.append(save_in_flight(run)) or in_flight[-1], interval=0.001, proc=training.proc
    )
    training.signal(signal.SIGTERM)
    assert training.wait() == 143, training.output()
    store = CheckpointStore(run)
    # The save in flight was finished (retention may have removed it since), not dropped.
    assert f"committed {in_flight[-1]} (step" in (run / "train.log").read_text()
    assert store.scan() and all(store.verify(c).problem is None for c in store.scan())
    assert not list(store.dir.glob("*.tmp-*"))
    assert run_cli("train", *args, env=cli_env(**BIG)).returncode == 0
    assert_same_run(straight_big_run, run)


def test_ctrl_c_exits_130_after_a_checkpoint(toy_corpus, tmp_path):
    run = tmp_path / "run"
    training = Training(toy_args(toy_corpus, run, *CADENCE, max_updates=10_000), log=tmp_path / "log.txt")
    assert wait_until(lambda: last_logged_step(run) >= 3, proc=training.proc)
    training.signal(signal.SIGINT)
    assert training.wait() == 130
    step = last_logged_step(run)
    assert CheckpointStore(run).latest_valid().step == step


def test_an_error_in_a_background_save_surfaces_and_loses_nothing(toy_corpus, tmp_path):
    run = tmp_path / "run"
    # Files above 3 MB fail with EFBIG: weights-only milestones (2.6 MB files) fit, the
    # optimizer file of a full-state checkpoint (two moments, 5.1 MB) does not.
    limit = 3_000_000

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = toy_args(
        toy_corpus, run, "--save-every", "10", "--last-every", "5", "--milestone-state", "weights", max_updates=22
    )
    result = run_cli("train", *args, env=cli_env(VOICETUNE_TOY_HIDDEN="768"), preexec_fn=small_disk)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "checkpoint of step 5 failed" in output and "File too large" in output  # surfaced at the next save
    assert "Earlier checkpoints are intact" in output  # the final one fails at exit
    store = CheckpointStore(run)
    assert [c.step for c in store.scan()] == [10, 20]
    assert all(store.verify(c).problem is None for c in store.scan())
    assert not list(store.dir.glob("*.tmp-*"))


def test_disk_budget_skips_saves_loudly_while_training_goes_on(toy_corpus, tmp_path):
    """A budget of about two and a half checkpoints: a milestone and a rolling checkpoint fill it,
    retention may remove neither, so every later save is skipped with an error line; training
    still runs to the end, and since the last step has no checkpoint the run exits 1."""
    run = tmp_path / "run"
    args = toy_args(
        toy_corpus,
        run,
        "--save-every",
        "5",
        "--last-every",
        "2",
        "--keep-last",
        "3",
        "--disk-budget",
        "420K",
        max_updates=30,
    )
    result = run_cli("train", *args)
    assert result.returncode == 1, result.stderr + result.stdout
    assert "projected peak disk use" in result.stdout
    assert "SKIPPED the checkpoint of step 8" in result.stdout  # the first save that cannot fit
    assert "final step 30 was NOT saved" in result.stderr and "step_00000006" in result.stderr
    assert last_logged_step(run) == 30  # training went on past every skipped save
    store = CheckpointStore(run)
    assert sum(c.size_bytes for c in store.scan()) <= 420 * 1024
    assert [c.step for c in store.scan()] == [5, 6]


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(toy_corpus, tmp_path):
    run = tmp_path / "run"
    args = toy_args(toy_corpus, run, *CADENCE, max_updates=10_000)
    first = Training(args, log=tmp_path / "first.log")
    assert wait_until(lambda: last_logged_step(run) >= 6, proc=first.proc)
    second = run_cli("train", *args)
    assert second.returncode == 1
    assert f"in use by pid {first.proc.pid}" in second.stderr
    first.kill_group()
    third = run_cli("train", *toy_args(toy_corpus, run, *CADENCE, max_updates=1))
    assert third.returncode == 0, third.stderr
    assert "the run is complete" in third.stdout  # it took the lock and read the run (past --max-updates 1)
    assert f"left by pid {first.proc.pid}" in (run / "train.log").read_text()


@pytest.mark.slow
def test_two_processes_train_and_resume_exactly(toy_corpus, tmp_path):
    def args(run):
        return toy_args(toy_corpus, run, *CADENCE, "--processes", "2", "--batch-size", "2", max_updates=N)

    straight = tmp_path / "straight"
    result = run_cli("train", *args(straight))
    assert result.returncode == 0, result.stderr
    assert json.loads((final_dir(straight) / "rng.json").read_text()).keys() == {"rank0", "rank1"}
    assert (straight / "train.rank1.log").is_file()

    run = tmp_path / "run"
    training = Training(args(run), log=tmp_path / "log.txt")
    assert wait_until(lambda: last_logged_step(run) >= 25, proc=training.proc)
    training.signal(signal.SIGTERM)
    assert training.wait() == 143, training.output()
    result = run_cli("train", *args(run))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    assert_same_run(straight, run)
    assert_ranks_agree(run)
