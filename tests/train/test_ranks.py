"""Several processes never hang and always agree (issue 20), through the real CLI.

`voicetune train --processes 2` on the toy model (which has a buffer, as real models have, so that
DistributedDataParallel's forward runs a collective): validation with 1, 2 and 3 batches, which
two ranks cannot share evenly; samples and milestone scoring on and off; SIGTERM during an
update, during validation and during scoring, then the printed resume command; a rank that
stalls (a test-only pause point that is never released) ending through the watchdog with the
stacks of both ranks in RUN/train.log, and through SIGTERM within the grace. At every checkpoint
the manifest holds each rank's weights digest: equal, and equal to the digest of the saved file.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from support.harness import (
    TOY_MODEL,
    Training,
    assert_ranks_agree,
    cli_env,
    printed_resume_command,
    run_cli,
    wait_until,
    whisper_model_path,
)
from voicetune.checkpoints.store import CheckpointStore


@pytest.fixture(scope="session")
def corpus24(tmp_path_factory) -> Path:
    """24 clips: the toy model holds out 3 of them for validation."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("corpus24"), n_items=24, sample_rate=16000)


def args(data: Path, run: Path, *extra: str, updates: int = 4, model: str = TOY_MODEL) -> list[str]:
    return [
        "--data",
        str(data),
        "--run",
        str(run),
        "--model",
        model,
        "--max-updates",
        str(updates),
        "--save-every",
        "2",
        "--last-every",
        "1",
        "--workers",
        "0",
        "--processes",
        "2",
        *extra,
    ]


def manifests(run: Path) -> list[dict]:
    return [c.manifest for c in sorted(CheckpointStore(run).scan(), key=lambda c: c.step)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch_size, corpus, split, samples, model",
    [
        # as reported: one validation batch, the defaults
        ("4", "toy_corpus", "14 train / 2 val clips", "true", TOY_MODEL),
        ("1", "toy_corpus", "14 train / 2 val clips", "false", TOY_MODEL),  # two batches
        ("1", "corpus24", "21 train / 3 val clips", "true", TOY_MODEL),  # three batches: one rank takes two
        # a real family: T3 under DDP beside its frozen S3Gen and voice encoder, samples by rank 0
        ("1", "toy_corpus", "15 train / 1 val clips", "true", "chatterbox-tiny"),
    ],
)
def test_two_processes_validate_any_number_of_batches(batch_size, corpus, split, samples, model, request, tmp_path):
    data, run = request.getfixturevalue(corpus), tmp_path / "run"
    flags = ("--batch-size", batch_size, "--set", f"samples={samples}")
    result = run_cli("train", *args(data, run, *flags, model=model), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"data: {split}" in result.stdout
    milestones = [m for m in manifests(run) if m["role"] == "milestone"]
    assert [m["step"] for m in milestones] == [2, 4]
    assert all(m["metrics"]["val_loss"] > 0 for m in milestones)
    assert_ranks_agree(run)
    assert (run / "samples" / "step_00000004").is_dir() == (samples == "true")


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["update", "validation.batch", "scoring"])
def test_sigterm_in_any_phase_stops_both_ranks_and_the_printed_command_resumes(phase, toy_corpus, tmp_path):
    run, release = tmp_path / "run", tmp_path / "release"
    env = cli_env(VOICETUNE_PAUSE_AT=f"{phase}@0:{release}")
    if phase == "scoring":
        env.update(VOICETUNE_EVALUATE="true", VOICETUNE_WHISPER_MODEL=str(whisper_model_path()))
    # --resume never: the stop message must print a command that works on the run it leaves.
    first = args(toy_corpus, run, "--batch-size", "4", "--resume", "never", "--set", "eval_clips=1", updates=6)
    training = Training(first, env=env, log=tmp_path / "first.txt")
    assert wait_until(lambda: Path(f"{release}.reached").exists(), timeout=600, proc=training.proc), training.output()
    training.signal(signal.SIGTERM)  # the launcher passes it on to both ranks
    assert wait_until(lambda: "SIGTERM: stopping" in training.output(), proc=training.proc)
    release.write_text("go")
    assert training.wait(timeout=600) == 143, training.output()
    paused_at = 1 if phase == "update" else 2  # the first update, or the first milestone
    assert f"stopped by SIGTERM at step {paused_at} after a clean checkpoint" in training.output()
    assert manifests(run)[-1]["step"] == paused_at and manifests(run)[-1]["kind"] == "full"
    if phase == "validation.batch":
        assert "validation of step 2 cut short" in training.output()
        assert "val_loss" not in manifests(run)[-1]["metrics"]
    if phase == "scoring":
        assert "scoring of step 2 cut short" in training.output()
        assert "val_loss" in manifests(run)[-1]["metrics"] and "score" not in manifests(run)[-1]["metrics"]

    command = printed_resume_command(training.output())
    assert "never" not in command and command[command.index("--processes") + 1] == "2"
    resumed = run_cli(*command, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {run / 'checkpoints' / f'step_{paused_at:08d}'}" in resumed.stdout
    assert manifests(run)[-1]["step"] == 6
    assert_ranks_agree(run)


@pytest.mark.slow
def test_a_stalled_rank_ends_the_job_through_the_watchdog_with_every_ranks_stacks(toy_corpus, tmp_path):
    run = tmp_path / "run"
    command = args(toy_corpus, run, "--batch-size", "4", "--collective-timeout", "10s", updates=4)
    env = cli_env(VOICETUNE_PAUSE_AT=f"validation@1:{tmp_path / 'never'}")  # rank 1 never leaves validation
    stalled = run_cli("train", *command, env=env, timeout=600)
    assert stalled.returncode == 1, stalled.stdout + stalled.stderr
    assert "phase 'validation' at step 2" in stalled.stderr
    log = (run / "train.log").read_text()
    rank1 = log[log.index("==== rank 1 of 2") :].split("==== end of rank 1")[0]
    assert "past --collective-timeout 10s" in rank1.splitlines()[0]
    assert "in pause_point" in rank1 and "in validate" in rank1  # where it stalled, every thread's stack
    # Rank 0 waited in validation's reduction: its watchdog ended it, or rank 1's exit failed the
    # collective (whichever came first, under load); either way its stacks are there, naming the
    # phase and the collective it waited in.
    rank0_header = log[log.index("==== rank 0 of 2") :].splitlines()[0]
    assert "phase 'validation' at step 2, in all_reduce of the validation losses" in rank0_header
    assert [m["step"] for m in manifests(run)] == [1]  # the milestone never came; step 1 stands

    resumed = run_cli("train", *command, timeout=600)  # the same command, the stall gone
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout and "step_00000001" in resumed.stdout
    assert_ranks_agree(run)


@pytest.mark.slow
def test_sigterm_ends_ranks_stuck_in_a_collective_within_the_grace(toy_corpus, tmp_path):
    run, never = tmp_path / "run", tmp_path / "never"
    command = args(toy_corpus, run, "--batch-size", "4", "--set", "stop_grace_seconds=3", updates=4)
    training = Training(command, env=cli_env(VOICETUNE_PAUSE_AT=f"validation@1:{never}"), log=tmp_path / "out.txt")
    assert wait_until(lambda: Path(f"{never}.reached").exists(), timeout=600, proc=training.proc), training.output()
    training.signal(signal.SIGTERM)
    # Rank 0 waits in validation's reduction for rank 1, which never comes: only the watchdog ends it.
    assert training.wait(timeout=120) == 143, training.output()
    assert "but this rank made no progress" in training.output()
    log = (run / "train.log").read_text()
    assert "==== rank 0 of 2" in log and "==== rank 1 of 2" in log
    assert [m["step"] for m in manifests(run)] == [1]
    assert all(CheckpointStore(run).verify(c).problem is None for c in CheckpointStore(run).scan())
    assert not list((run / "checkpoints").glob("*.tmp-*"))


def test_a_collective_timeout_that_is_not_a_duration_is_refused_with_exit_2(toy_corpus, tmp_path):
    result = run_cli("train", *args(toy_corpus, tmp_path / "run", "--collective-timeout", "soon"))
    assert result.returncode == 2
    assert "--collective-timeout" in result.stderr and "write e.g. 90s, 10m or 1h" in result.stderr
    assert not (tmp_path / "run").exists()


def test_ranks_whose_weights_differ_fail_the_checkpoint_naming_them():
    from voicetune.errors import VoicetuneError
    from voicetune.train.distributed import check_ranks_agree

    assert check_ranks_agree(["a" * 64, "a" * 64], 7) == {"rank0": "a" * 64, "rank1": "a" * 64}
    with pytest.raises(VoicetuneError, match=r"differ at step 7 \(rank0 aaaaaaaaaaaa, rank1 bbbbbbbbbbbb\)"):
        check_ranks_agree(["a" * 64, "b" * 64], 7)
