"""fsio, the one place for durable files: atomic writes and directory replacement under a real
SIGKILL at each instant, one temporary-name scheme and its sweeper, streaming sha256."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.harness import cli_env
from voicetune import fsio


def test_atomic_writes_leave_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "a" / "state.json"
    fsio.atomic_write_json(target, {"step": 1})
    with pytest.raises(RuntimeError):
        with fsio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer died")
    assert json.loads(target.read_text()) == {"step": 1}
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]
    assert fsio.atomic_write_bytes(target, b"same", only_if_changed=True)
    assert not fsio.atomic_write_bytes(target, b"same", only_if_changed=True)


def test_sha256_file_streams_what_hashlib_computes_at_once(tmp_path):
    data = bytes(range(256)) * 40_000  # several chunks of the small chunk size below
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert fsio.sha256_file(path, chunk_bytes=65536) == hashlib.sha256(data).hexdigest() == fsio.sha256_bytes(data)


def test_the_sweeper_removes_only_temporary_names(tmp_path):
    keep = [tmp_path / "step_00000010", tmp_path / "notes.tmp-file.txt", tmp_path / "metadata.csv"]
    keep[0].mkdir()
    keep[1].write_text("a user's file")
    keep[2].write_text("x")
    leftovers = [fsio.temp_path(tmp_path / "step_00000020"), fsio.temp_path(tmp_path / "metadata.csv")]
    leftovers[0].mkdir()
    (leftovers[0] / "model.safetensors").write_bytes(b"partial")
    leftovers[1].write_text("partial")
    assert sorted(fsio.sweep_temporaries(tmp_path)) == sorted(leftovers)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


REPLACE_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from voicetune import fsio
    with fsio.atomic_dir(Path(sys.argv[1])) as tmp:
        (tmp / "model.safetensors").write_text("new")
    print("replaced")
""")


@pytest.mark.parametrize("instant", ["replace_dir.swapped", None])
def test_replacing_a_folder_never_leaves_it_missing(tmp_path, instant):
    target = tmp_path / "ready"
    target.mkdir()
    (target / "model.safetensors").write_text("old")
    env = cli_env(**({"VOICETUNE_CRASH_AT": instant} if instant else {}))
    result = subprocess.run(
        [sys.executable, "-c", REPLACE_SCRIPT, str(target)], env=env, capture_output=True, text=True
    )
    assert result.returncode == (-9 if instant else 0), result.stderr
    # Killed after the swap: the new folder is in place and the old one waits under a temporary name.
    assert (target / "model.safetensors").read_text() == "new"
    fsio.sweep_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["ready"]


def test_move_refuses_to_overwrite(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(FileExistsError):
        fsio.move(tmp_path / "a", tmp_path / "b")
    fsio.move(tmp_path / "a", tmp_path / "sub" / "a")
    assert (tmp_path / "sub" / "a").is_dir() and not (tmp_path / "a").exists()


def test_no_hand_written_rename_outside_fsio():
    src = Path(__file__).resolve().parents[2] / "src" / "voicetune"
    offenders = [
        f"{p.relative_to(src)}:{n}"
        for p in src.rglob("*.py")
        if p.name != "fsio.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "os.replace(" in line or "os.rename(" in line or ".replace(path)" in line
    ]
    assert offenders == []
