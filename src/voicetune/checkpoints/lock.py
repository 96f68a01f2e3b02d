"""RUN/LOCK: the one process allowed to write a run (a `fsio.DirLock`, see there for why a POSIX
record lock). The file records pid, host and start time, for the message a second writer gets
and for the note written when a dead writer's lock is taken over."""

from __future__ import annotations

from pathlib import Path

from voicetune.errors import RunLockedError
from voicetune.fsio import DirLock, LockedError

LOCK_FILE = "LOCK"


class RunLock(DirLock):
    """Exclusive writer lock of a run directory. Use as a context manager or acquire()/release()."""

    def __init__(self, run_dir: Path):
        super().__init__(Path(run_dir), LOCK_FILE)

    def acquire(self) -> RunLock:
        try:
            super().acquire()
        except LockedError as err:
            holder = err.holder
            raise RunLockedError(
                f"{self.path.parent} is in use by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(since {holder.get('started', '?')}); stop that process first, or use another --run folder"
            ) from None
        return self


def read_holder(run_dir: Path) -> dict:
    """What RUN/LOCK says about its writer: pid, host and start time; {} when it was released.

    Reads the file's content only, whatever the lock mechanism. A writer killed with -9 leaves
    its entry behind, so a caller that needs to know whether the writer still runs checks the pid
    (see `voicetune.train.control.running_trainer`)."""
    import json

    try:
        holder = json.loads((Path(run_dir) / LOCK_FILE).read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
