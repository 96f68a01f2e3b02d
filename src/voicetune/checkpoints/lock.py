"""RUN/LOCK: the one process allowed to write a run.

The lock is an flock on RUN/LOCK held for the life of the process: the kernel releases it when
the process dies, however it dies, so a lock left by a dead process is simply taken over. The
file also records pid, host and start time, for the message a second writer gets and for the
takeover note.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from voicetune.errors import RunLockedError

log = logging.getLogger("voicetune.checkpoints")

LOCK_FILE = "LOCK"


class RunLock:
    """Exclusive writer lock of a run directory. Use as a context manager or acquire()/release()."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.previous_holder: dict | None = None  # set when a stale lock was taken over

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(since {holder.get('started', '?')}); stop that process first, or use another --run folder"
            ) from None
        holder = _read_holder(fd)
        if holder.get("pid"):
            self.previous_holder = holder
            log.warning(
                "took over the lock of %s left by pid %s on %s, which is no longer running",
                self.path.parent, holder.get("pid"), holder.get("host"),
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Empty the file before unlocking, so that the next holder sees a clean release.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}


def read_holder(run_dir: Path) -> dict:
    """What RUN/LOCK says about its writer: pid, host and start time; {} when it was released.

    Reads the file's content only, whatever the lock mechanism. A writer killed with -9 leaves
    its entry behind, so a caller that needs to know whether the writer still runs checks the pid
    (see `voicetune.train.control.running_trainer`)."""
    try:
        holder = json.loads((Path(run_dir) / LOCK_FILE).read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
