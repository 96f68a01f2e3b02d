"""Preemption grace and degrading instead of dying.

Cloud schedulers send SIGKILL about 30 s after SIGTERM: a SIGTERM that arrives while milestone
samples are being synthesized (minutes for a real model on CPU) must cut them short and commit
the final checkpoint within seconds, and the run must resume exactly. Writes that are only for
people (metrics.jsonl, TensorBoard, samples) failing on a full disk print one loud line each and
training goes on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from support.harness import (
    Training,
    assert_same_tensors,
    cli_env,
    load_tensors,
    printed_resume_command,
    run_cli,
    toy_args,
    wait_until,
)
from voicetune.checkpoints.store import CheckpointStore

N = 20
CADENCE = ["--save-every", "10", "--last-every", "5"]
GRACE_SECONDS = 10  # well inside the ~30 s a cloud scheduler gives


def final(run: Path, step: int) -> Path:
    return next(c.path for c in CheckpointStore(run).scan() if c.step == step)


def test_sigterm_during_samples_commits_within_seconds_and_resumes_exactly(toy_corpus, tmp_path):
    straight = tmp_path / "straight"
    assert run_cli("train", *toy_args(toy_corpus, straight, *CADENCE, max_updates=N)).returncode == 0

    run = tmp_path / "run"
    marker = tmp_path / "synthesizing"
    training = Training(
        toy_args(toy_corpus, run, *CADENCE, max_updates=N),
        env=cli_env(VOICETUNE_TOY_SLOW_SAMPLES=str(marker)),
        log=tmp_path / "log.txt",
    )
    assert wait_until(marker.exists, interval=0.01, proc=training.proc), training.output()
    training.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert training.wait(timeout=60) == 143, training.output()
    took = time.monotonic() - signalled
    assert not Path(f"{marker}.done").exists()  # the synthesis was cut short, not waited for
    assert took < GRACE_SECONDS, f"{took:.1f} s from SIGTERM to exit"
    store = CheckpointStore(run)
    (stopped,) = [c for c in store.scan() if c.step == 10]
    assert stopped.kind == "full" and store.verify(stopped).problem is None
    assert "stopped by SIGTERM at step 10 after a clean checkpoint" in training.output()

    resumed = run_cli("train", *toy_args(toy_corpus, run, *CADENCE, max_updates=N))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {stopped.path} at step 10" in resumed.stdout
    for component in ("model", "ema", "optimizer", "rng"):
        assert_same_tensors(
            load_tensors(final(straight, N) / f"{component}.safetensors"),
            load_tensors(final(run, N) / f"{component}.safetensors"),
        )


def test_the_printed_resume_command_of_a_run_started_with_resume_never_resumes(toy_corpus, tmp_path):
    run, release = tmp_path / "run", tmp_path / "release"
    args = toy_args(toy_corpus, run, *CADENCE, "--resume", "never", max_updates=N)
    training = Training(args, env=cli_env(VOICETUNE_PAUSE_AT=f"update:{release}"), log=tmp_path / "log.txt")
    assert wait_until(Path(f"{release}.reached").exists, proc=training.proc), training.output()
    training.signal(signal.SIGTERM)
    assert wait_until(lambda: "SIGTERM: stopping" in training.output(), proc=training.proc)
    release.write_text("go")
    assert training.wait(timeout=120) == 143, training.output()
    assert "to resume, run (the flags of a fresh start left out):" in training.output()
    command = printed_resume_command(training.output())
    assert command[command.index("--resume") + 1] == "auto" and "never" not in command
    resumed = run_cli(*command)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {final(run, 1)} at step 1" in resumed.stdout


def test_full_disk_for_metrics_tensorboard_and_samples_says_so_once_and_training_goes_on(toy_corpus, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink("/dev/full", run / "metrics.jsonl")  # every write fails with ENOSPC, as on a full disk
    (run / "tensorboard").write_text("not a folder")  # TensorBoard cannot create its event file
    (run / "samples").write_text("not a folder")  # nor can samples be written
    result = run_cli("train", *toy_args(toy_corpus, run, *CADENCE, max_updates=12))
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    for sink in ("metrics.jsonl", "TensorBoard", "samples"):
        assert out.count(f"WRITING {sink} FAILED") == 1, out
    assert "No space left on device" in out
    store = CheckpointStore(run)
    assert sorted(c.step for c in store.scan()) == [10, 12]
    assert all(store.verify(c).problem is None for c in store.scan())
