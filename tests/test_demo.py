"""`voicetune demo` (what `make demo` runs), shortened: corpus, train, SIGKILL, resume, table."""

from __future__ import annotations

from support.harness import run_cli
from voicetune.checkpoints.store import CheckpointStore


def test_demo_kills_resumes_and_finishes_with_samples_and_an_export(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--max-updates", "45", "--kill-at-step", "22", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "killed -9 at step" in text and "resuming from" in text
    run = out / "run"
    # The resume started from the rolling checkpoint of step 20 (the kill came at 22 or a bit later).
    resumed_at = int(text.split("resuming from")[1].split("at step ")[1].split(" ")[0])
    assert 20 <= resumed_at < 45
    store = CheckpointStore(run)
    infos = store.scan()
    assert max(c.step for c in infos) == 45 and all(store.verify(c).problem is None for c in infos)
    assert "step_00000045" in text  # the table
    assert list((run / "samples" / f"step_{resumed_at:08d}").glob("*_gen.wav"))  # samples right after the resume
    assert (run / "ready" / "model.safetensors").is_file()
    assert f"tensorboard --logdir {run / 'tensorboard'}" in text
    assert run_cli("ckpt", "verify", str(run)).returncode == 0


def test_demo_refuses_a_kill_after_the_end(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--max-updates", "30", "--kill-at-step", "30")
    assert result.returncode == 2 and "--kill-at-step" in result.stderr + result.stdout
