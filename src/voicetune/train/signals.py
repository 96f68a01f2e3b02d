"""SIGTERM and SIGINT: ask the loop to stop at the next update boundary.

The handler records the signal. Inside `interruptible()` (validation, samples: work for people
that changes no training state) it also raises StopRequested at once, so that a preemption's
SIGTERM is answered by a committed checkpoint within seconds, not after minutes of synthesis:
cloud schedulers send SIGKILL about 30 seconds after SIGTERM. The loop finishes the current update, waits for a save in
flight, writes a full checkpoint and exits 143 (SIGTERM) or 130 (SIGINT). A second SIGINT aborts
at once: nothing is half-committed because commits are atomic, and the next start removes the
temporary directory a killed save leaves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class StopRequested(BaseException):
    """Raised inside `StopSignals.interruptible()` when a stop signal arrives. A BaseException, so
    that the `except Exception` of work that must not stop training does not swallow it."""


class StopSignals:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or None
        self._interruptible = False

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a stop signal cuts short with StopRequested (also if one came before)."""
        if self.signum is not None:
            raise StopRequested()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            os.write(sys.stderr.fileno(), b"\nsecond Ctrl-C: aborting now (checkpoints stay valid)\n")
            os._exit(130)
        if self.signum is None:
            self.signum = signum
            name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
            msg = f"\n{name}: stopping after this update and saving a checkpoint (Ctrl-C again aborts at once)\n"
            os.write(sys.stderr.fileno(), msg.encode())
            if self._interruptible:
                self._interruptible = False
                raise StopRequested()
