"""The checkpoint store: atomic commit, verification of every damaged-file shape, quarantine and
fallback, crash at each instant of a commit (real SIGKILL), a disk that fills mid-write, the LOCK."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.harness import cli_env
from voicetune.checkpoints.lock import RunLock
from voicetune.checkpoints.store import CheckpointPayload, CheckpointStore, load_checkpoint
from voicetune.checkpoints.upstream import load_pickled_checkpoint
from voicetune.errors import CheckpointError, RunLockedError


def payload(step: int, role="milestone", kind="full", scale=1.0) -> CheckpointPayload:
    gen = torch.Generator().manual_seed(step)
    return CheckpointPayload(
        step=step,
        role=role,
        kind=kind,
        metrics={"val_loss": 1.0 / step},
        tensor_files={"model": {"w": torch.randn(64, 64, generator=gen) * scale, "b": torch.zeros(64)}},
        json_files={"loop": {"step": step, "note": "x"}},
    )


def committed_store(tmp_path: Path, steps=(10, 20, 30)) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "run")
    for step in steps:
        store.commit(payload(step))
    return store


def test_commit_writes_a_verified_directory(tmp_path):
    store = committed_store(tmp_path, steps=(10,))
    (ckpt,) = store.scan()
    assert ckpt.name == "step_00000010" and ckpt.step == 10 and ckpt.kind == "full"
    manifest = json.loads((ckpt.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "loop.json"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert store.verify(ckpt).problem is None
    loaded = load_checkpoint(ckpt.path)
    assert torch.equal(loaded.tensors["model"]["w"], payload(10).tensor_files["model"]["w"])
    assert loaded.json["loop"] == {"step": 10, "note": "x"}
    assert not list(store.dir.glob("*.tmp-*"))


def flip_bit(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) - 100 if offset is None else offset  # inside tensor data, not the header
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda d: os.truncate(d / "model.safetensors", (d / "model.safetensors").stat().st_size // 2),
    "zero-length": lambda d: os.truncate(d / "model.safetensors", 0),
    "bit-flip": lambda d: flip_bit(d / "model.safetensors"),
    "missing-file": lambda d: (d / "model.safetensors").unlink(),
    "missing-manifest": lambda d: (d / "manifest.json").unlink(),
    "garbage-manifest": lambda d: (d / "manifest.json").write_text("{not json"),
    "json-bit-flip": lambda d: flip_bit(d / "loop.json", 5),
}
EXPECTED_REASON = {
    "truncated": "bytes",
    "zero-length": "bytes",
    "bit-flip": "sha256",
    "missing-file": "missing",
    "missing-manifest": "manifest.json is missing",
    "garbage-manifest": "unreadable",
    "json-bit-flip": "sha256",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_latest_is_quarantined_and_the_run_falls_back(tmp_path, damage):
    store = committed_store(tmp_path)
    newest = store.dir / "step_00000030"
    DAMAGE[damage](newest)
    quarantined = []
    latest = store.latest_valid(on_quarantine=lambda c, target: quarantined.append(target))
    assert latest is not None and latest.name == "step_00000020"
    assert [p.name for p in quarantined] == ["step_00000030"]
    reason = (store.quarantine_dir / "step_00000030" / "REASON.txt").read_text()
    assert EXPECTED_REASON[damage] in reason
    assert not newest.exists()  # moved, not deleted: the files are still in quarantine/
    assert any((store.quarantine_dir / "step_00000030").iterdir())
    with pytest.raises(CheckpointError):
        load_checkpoint(store.quarantine_dir / "step_00000030")


def test_a_flipped_bit_loads_silently_everywhere_but_the_manifest_catches_it(tmp_path):
    store = committed_store(tmp_path, steps=(10,))
    path = store.dir / "step_00000010" / "model.safetensors"
    original = load_file(str(path))["w"].clone()
    flip_bit(path)
    silently = load_file(str(path))["w"]  # safetensors does not notice ...
    assert not torch.equal(silently, original)
    assert "sha256" in store.verify(store.dir / "step_00000010").problem  # ... the manifest does
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(store.dir / "step_00000010")


def test_latest_is_read_from_manifests_not_names(tmp_path):
    store = committed_store(tmp_path, steps=(10, 20))
    os.rename(store.dir / "step_00000010", store.dir / "step_99999999")  # a misleading name
    assert store.latest_valid().step == 20
    assert store.latest_valid(require_full=True).name == "step_00000020"


def test_weights_only_checkpoints_are_not_resumable(tmp_path):
    store = CheckpointStore(tmp_path / "run")
    store.commit(payload(10, role="rolling"))
    store.commit(payload(20, kind="weights"))
    assert store.latest_valid(require_full=True).step == 10
    assert store.latest_valid(require_full=False).step == 20


def test_same_step_gets_a_distinct_name(tmp_path):
    store = CheckpointStore(tmp_path / "run")
    store.commit(payload(10, kind="weights"))
    store.commit(payload(10, role="rolling"))
    assert sorted(c.name for c in store.scan()) == ["step_00000010", "step_00000010_rolling"]


CRASH_SCRIPT = textwrap.dedent("""
    import sys, torch
    from voicetune.checkpoints.store import CheckpointStore, CheckpointPayload
    store = CheckpointStore(sys.argv[1])
    store.commit(CheckpointPayload(step=40, role="milestone", kind="full",
                 tensor_files={"model": {"w": torch.ones(256, 256)}}, json_files={"loop": {"step": 40}}))
    print("committed")
""")


@pytest.mark.parametrize(
    "instant, survives", [("commit.files_written", False), ("commit.manifest_written", False), ("commit.renamed", True)]
)
def test_kill_9_at_each_instant_of_a_commit(tmp_path, instant, survives):
    store = committed_store(tmp_path)
    before = {c.name for c in store.scan()}
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(store.run_dir)],
        env=cli_env(VOICETUNE_CRASH_AT=instant),
        capture_output=True,
        text=True,
    )
    assert result.returncode == -9, result.stderr
    after = {c.name for c in store.scan()}
    assert after == (before | {"step_00000040"} if survives else before)
    assert all(store.verify(c).problem is None for c in store.scan())  # old set, or old set + one complete
    leftovers = list(store.dir.glob("*.tmp-*"))
    assert bool(leftovers) == (not survives)
    store.remove_temporary()
    assert not list(store.dir.glob("*.tmp-*"))
    assert store.latest_valid().step == (40 if survives else 30)


DISK_FULL_SCRIPT = textwrap.dedent("""
    import errno, resource, sys, torch
    from voicetune.checkpoints.store import CheckpointStore, CheckpointPayload
    # A file-size limit makes the kernel fail writes past it with EFBIG, as a full disk fails them
    # with ENOSPC (Python ignores SIGXFSZ, so the write returns the error).
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    store = CheckpointStore(sys.argv[1])
    try:
        store.commit(CheckpointPayload(step=40, role="milestone", kind="full",
                     tensor_files={"model": {"w": torch.ones(512, 512)}}, json_files={"loop": {}}))
    except OSError as err:
        print("errno", err.errno)
""")


def test_disk_filling_mid_write_leaves_earlier_checkpoints_and_no_temporary(tmp_path):
    store = committed_store(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", DISK_FULL_SCRIPT, str(store.run_dir)], env=cli_env(), capture_output=True, text=True
    )
    assert f"errno {errno.EFBIG}" in result.stdout, result.stderr
    assert [c.name for c in store.scan()] == ["step_00000010", "step_00000020", "step_00000030"]
    assert all(store.verify(c).problem is None for c in store.scan())
    assert not list(store.dir.glob("*.tmp-*"))


def test_retention_after_commit_removes_through_a_temporary_name(tmp_path):
    from voicetune.checkpoints.policy import RetentionPolicy

    store = committed_store(tmp_path, steps=(10, 20, 30, 40))
    removed = store.apply_retention(RetentionPolicy(keep_last=2), protected={"step_00000010"})
    assert removed == ["step_00000020"]  # 30 and 40 are the newest two, 10 was resumed from
    removed = store.apply_retention(RetentionPolicy(keep_last=1))
    assert removed == ["step_00000010", "step_00000030"]
    assert [c.name for c in store.scan()] == ["step_00000040"]


LOCK_HOLDER = "import sys, time; from voicetune.checkpoints.lock import RunLock; RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)"


def test_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], env=cli_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(tmp_path).acquire()  # stale: its process is dead
    assert lock.previous_holder["pid"] == holder.pid
    lock.release()
    again = RunLock(tmp_path).acquire()  # a clean release leaves nothing to take over
    assert again.previous_holder is None
    again.release()


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/voicetune-pickle-marker")


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    evil = tmp_path / "model_last.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"model_state_dict": RunsCode()}, fh)
    with pytest.raises(CheckpointError, match="refused"):
        load_pickled_checkpoint(evil)
    assert not MARKER.exists()
    good = tmp_path / "good.pt"
    torch.save({"model_state_dict": {"w": torch.ones(2)}}, good)
    assert torch.equal(load_pickled_checkpoint(good)["model_state_dict"]["w"], torch.ones(2))
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_pickled_checkpoint(truncated)
