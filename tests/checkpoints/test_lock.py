"""The directory lock (RUN/LOCK, DATASET/.voicetune/LOCK) is never inherited by children: a restart
right after kill -9 takes it while the dead holder's forked children (DataLoader workers) live on;
two writers started together, exactly one proceeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support.harness import Training, cli_env, last_logged_step, run_cli, toy_args, wait_until
from voicetune.checkpoints.lock import RunLock
from voicetune.checkpoints.store import CheckpointStore
from voicetune.errors import RunLockedError
from voicetune.fsio import DirLock, LockedError


def alive(pid: int) -> bool:
    """Running (a zombie, or a pid gone, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


HOLDER_WITH_CHILD = textwrap.dedent("""
    import os, sys, time
    from voicetune.fsio import DirLock
    DirLock(sys.argv[1]).acquire()
    child = os.fork()
    if child == 0:
        time.sleep(120)  # a forked child that outlives its parent, as DataLoader workers do
        os._exit(0)
    print(child, flush=True)
    time.sleep(120)
""")


def test_a_forked_child_does_not_keep_the_lock_of_its_killed_parent(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_WITH_CHILD, str(tmp_path)], env=cli_env(), stdout=subprocess.PIPE, text=True
    )
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(LockedError) as held:
            DirLock(tmp_path).acquire()
        assert held.value.holder["pid"] == holder.pid
        holder.kill()
        holder.wait()
        lock = DirLock(tmp_path).acquire()  # at once, while the child lives
        assert alive(child)
        assert lock.previous_holder["pid"] == holder.pid
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_one_process_cannot_take_its_own_lock_twice(tmp_path):
    # Closing a second descriptor of the file would silently drop a POSIX record lock.
    first = DirLock(tmp_path).acquire()
    with pytest.raises(LockedError):
        DirLock(tmp_path).acquire()
    assert first.held
    first.release()
    DirLock(tmp_path).acquire().release()


def test_restart_right_after_kill_9_of_a_trainer_with_live_workers_takes_the_lock(toy_corpus, tmp_path):
    run = tmp_path / "run"
    args = toy_args(toy_corpus, run, "--save-every", "20", "--last-every", "5", "--workers", "1", max_updates=10_000)
    training = Training(args, log=tmp_path / "log.txt")
    assert wait_until(lambda: CheckpointStore(run).scan() and last_logged_step(run) >= 6, proc=training.proc), (
        training.output()
    )
    workers = [pid for pid in children_of(training.proc.pid) if alive(pid)]
    assert workers, "the trainer should have a live DataLoader worker"
    os.kill(training.proc.pid, signal.SIGKILL)  # the trainer only: its workers are orphaned, still running
    training.wait()  # the kernel has torn the trainer down (its memory first, then its files and locks)
    dead = time.monotonic()
    lock = RunLock(run).acquire()  # the restart's first and only try
    took = time.monotonic() - dead
    still_running = [pid for pid in workers if alive(pid)]
    taken_from = lock.previous_holder
    lock.release()
    assert took < 0.1, f"the lock took {took:.3f} s after the trainer died"
    assert still_running, "the workers exited before the restart: nothing was proven"
    assert taken_from["pid"] == training.proc.pid
    next_step = CheckpointStore(run).latest_valid().step + 1
    restarted = run_cli("train", *toy_args(toy_corpus, run, "--workers", "1", max_updates=next_step))
    assert restarted.returncode == 0, restarted.stderr
    assert "resuming from" in restarted.stdout
    for pid in workers:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_two_prepares_started_together_exactly_one_proceeds(toy_corpus, tmp_path):
    dataset = tmp_path / "dataset"
    release = tmp_path / "go"
    env = cli_env(VOICETUNE_PAUSE_AT=f"prepare.locked:{release}")
    cmd = [
        sys.executable,
        "-m",
        "voicetune",
        "prepare",
        str(toy_corpus / "wavs"),
        "--out",
        str(dataset),
        "--transcriber",
        "none",
        "--min-seconds",
        "1",
        "--workers",
        "1",
    ]
    both = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        # The winner waits at the pause point (holding the lock) until the loser has finished.
        assert wait_until(lambda: any(p.poll() is not None for p in both), timeout=120)
        loser = next(p for p in both if p.poll() is not None)
        winner = next(p for p in both if p is not loser)
        out, err = loser.communicate()
        assert loser.returncode == 1, out + err
        assert f"another `voicetune prepare` (pid {winner.pid}) is writing {dataset}" in err
        assert Path(f"{release}.reached").read_text() == str(winner.pid)
        release.touch()
        out, err = winner.communicate(timeout=300)
        assert winner.returncode == 0, out + err
        assert (dataset / "metadata.csv").is_file()
    finally:
        for p in both:
            if p.poll() is None:
                p.kill()


def test_a_second_run_lock_names_the_holder(tmp_path):
    lock = RunLock(tmp_path).acquire()
    try:
        script = "import sys; from voicetune.checkpoints.lock import RunLock; RunLock(sys.argv[1]).acquire()"
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], env=cli_env(), capture_output=True, text=True
        )
        assert result.returncode == 1
        assert f"in use by pid {os.getpid()}" in result.stderr and RunLockedError.__name__ in result.stderr
    finally:
        lock.release()
