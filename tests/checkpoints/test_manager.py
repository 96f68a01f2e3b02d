"""The checkpoint manager: where training starts (timelines, one-pass loading, quarantine, a
newer format refused), the one choice of best by any metric name, options read from run.json."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from support.harness import cli_env
from voicetune.checkpoints.manager import CheckpointManager, CheckpointOptions
from voicetune.checkpoints.store import CheckpointPayload, CheckpointStore, load_checkpoint
from voicetune.errors import CheckpointError, UsageError


def payload(step: int, metrics=None, role="milestone") -> CheckpointPayload:
    gen = torch.Generator().manual_seed(step)
    return CheckpointPayload(
        step=step,
        role=role,
        kind="full",
        metrics=metrics or {"val_loss": 1.0 / step},
        tensor_files={"model": {"w": torch.randn(32, 32, generator=gen)}},
        json_files={"loop": {"step": step}},
    )


def run_with(tmp_path, steps=(10, 20, 30)) -> CheckpointManager:
    manager = CheckpointManager(tmp_path / "run", CheckpointOptions(keep_last=10))
    for step in steps:
        manager.store.commit(payload(step))
    return manager


def test_resuming_an_older_checkpoint_moves_its_future_aside(tmp_path):
    manager = run_with(tmp_path)
    start = manager.start(str(manager.store.dir / "step_00000010"), None)
    assert start.resume_from.step == 10 and torch.equal(
        start.loaded.tensors["model"]["w"], payload(10).tensor_files["model"]["w"]
    )
    assert [c.name for c in manager.store.scan()] == ["step_00000010"]
    assert sorted(c.name for c in manager.store.scan_abandoned()) == ["step_00000020", "step_00000030"]
    plan = json.loads((start.abandoned_to / "ABANDONED.json").read_text())
    assert plan["complete"] and plan["resumed_from"] == "step_00000010" and plan["session"] == manager.session
    # The next save of this session names its parent and session; "latest" is the new timeline's.
    manager.save(payload(15, role="rolling"))
    committed = manager.finish()
    assert committed.manifest["parent"] == "step_00000010" and committed.manifest["session"] == manager.session
    again = CheckpointManager(manager.run_dir).start("auto", None)
    assert again.resume_from.name == committed.name
    with pytest.raises(UsageError, match="abandoned timeline"):
        CheckpointManager(manager.run_dir).start(str(start.abandoned_to / "step_00000030"), None)


ABANDON_SCRIPT = textwrap.dedent("""
    import sys
    from voicetune.checkpoints.manager import CheckpointManager
    CheckpointManager(sys.argv[1]).start(sys.argv[2], None)
""")


def test_an_abandonment_killed_halfway_is_finished_at_the_next_start(tmp_path):
    manager = run_with(tmp_path, steps=(10, 20, 30, 40))
    result = subprocess.run(
        [sys.executable, "-c", ABANDON_SCRIPT, str(manager.run_dir), str(manager.store.dir / "step_00000010")],
        env=cli_env(VOICETUNE_CRASH_AT="abandon.moved_one"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == -9, result.stderr
    assert len(manager.store.scan()) == 3  # one of the three moved, then the kill
    start = CheckpointManager(manager.run_dir).start("auto", None)  # a plain restart
    assert start.resume_from.name == "step_00000010"  # never the abandoned future's step 40
    assert sorted(c.name for c in manager.store.scan_abandoned()) == ["step_00000020", "step_00000030", "step_00000040"]


def test_a_damaged_latest_is_quarantined_while_loading_and_the_start_falls_back(tmp_path):
    manager = run_with(tmp_path)
    model = manager.store.dir / "step_00000030" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-3] ^= 0x04
    model.write_bytes(bytes(data))
    start = manager.start("auto", None)
    assert start.resume_from.name == "step_00000020" and start.quarantined == ("step_00000030",)
    reason = (manager.store.quarantine_dir / "step_00000030" / "REASON.txt").read_text()
    assert "model.safetensors does not match its sha256" in reason


def test_a_checkpoint_of_a_newer_voicetune_is_refused_not_quarantined(tmp_path):
    manager = run_with(tmp_path)
    manifest_path = manager.store.dir / "step_00000030" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="upgrade voicetune"):
        manager.start("auto", None)
    with pytest.raises(CheckpointError, match="upgrade voicetune"):
        load_checkpoint(manifest_path.parent)
    assert manifest_path.is_file() and not manager.store.quarantine_dir.exists()


def test_best_takes_any_metric_name_from_the_manifests(tmp_path):
    store = CheckpointStore(tmp_path / "run")
    for step, score in ((10, 0.5), (20, 0.9), (30, 0.7)):
        store.commit(payload(step, metrics={"val_loss": 1.0 / step, "score": score}))
    (tmp_path / "run" / "run.json").write_text(json.dumps({"config": {"best_metric": "score", "best_mode": "max"}}))
    manager = CheckpointManager(tmp_path / "run")  # options from run.json
    assert manager.best().name == "step_00000020" and manager.best_value(manager.best()) == 0.9
    assert manager.best_checkpoint().name == "step_00000020"
    by_loss = CheckpointManager(tmp_path / "run", CheckpointOptions(best_metric="val_loss"))
    assert by_loss.best().name == "step_00000030"


def test_options_from_a_config_parse_the_disk_budget():
    options = CheckpointOptions.from_config({"save_every": 5, "keep_last": 2, "disk_budget": "1M", "lr": 0.1})
    assert (options.save_every, options.keep_last, options.disk_budget_bytes) == (5, 2, 1024 * 1024)


def test_a_failed_retention_is_reported_as_such_and_the_save_stands(tmp_path):
    import shutil
    import subprocess as sp

    if not shutil.which("chattr"):
        pytest.skip("chattr is needed to make a checkpoint undeletable")
    lines = []
    manager = CheckpointManager(
        tmp_path / "run", CheckpointOptions(keep_last=1), say=lambda text, level: lines.append(text)
    )
    manager.save(payload(10))
    manager.finish()
    old = manager.store.dir / "step_00000010"
    sp.run(["chattr", "+i", str(old)], check=True)  # even root cannot rename or delete it now
    try:
        manager.save(payload(20))
        committed = manager.finish()  # no SaveFailed: the save itself succeeded
    finally:
        sp.run(["chattr", "-i", str(old)], check=True)
    assert committed.name == "step_00000020" and manager.store.verify(committed).problem is None
    failed = [line for line in lines if "RETENTION FAILED" in line]
    assert len(failed) == 1 and "after committing step_00000020 (the checkpoint is safe)" in failed[0]
    assert not any("checkpoint of step" in line and "failed" in line for line in lines)
