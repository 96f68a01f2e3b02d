"""`voicetune demo` (what `make demo` runs), shortened: corpus, train, SIGKILL, resume, table."""

from __future__ import annotations

from support.harness import cli_env, run_cli
from voicetune.checkpoints.store import CheckpointStore

# Milestones halfway and at the end (19, 38 and the last, 39), rolling checkpoints every 10: the kill at 22 resumes
# from step 20, which is no milestone, so its samples are the resume's own.
UPDATES = 39


def test_demo_kills_resumes_and_finishes_with_samples_and_an_export(tmp_path):
    out = tmp_path / "demo"
    env = cli_env(VOICETUNE_F5_NFE_STEPS="4")  # samples in 4 sampling steps: the code path of 16
    command = ("demo", "--out", str(out), "--max-updates", str(UPDATES), "--kill-at-step", "22")
    result = run_cli(*command, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "killed -9 at step" in text and "resuming from" in text
    run = out / "run"
    # The resume started from the rolling checkpoint of step 20 (the kill came at 22 or a bit later).
    resumed_at = int(text.split("resuming from")[1].split("at step ")[1].split(" ")[0])
    assert 20 <= resumed_at < UPDATES
    store = CheckpointStore(run)
    infos = store.scan()
    assert max(c.step for c in infos) == UPDATES and all(store.verify(c).problem is None for c in infos)
    assert f"step_{UPDATES:08d}" in text  # the table
    assert list((run / "samples" / f"step_{resumed_at:08d}").glob("*_gen.wav"))  # samples right after the resume
    assert (run / "ready" / "model.safetensors").is_file()
    assert f"tensorboard --logdir {run / 'tensorboard'}" in text
    assert run_cli("ckpt", "verify", str(run)).returncode == 0


def test_demo_refuses_a_kill_after_the_end(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--max-updates", "30", "--kill-at-step", "30")
    assert result.returncode == 2 and "--kill-at-step" in result.stderr + result.stdout
