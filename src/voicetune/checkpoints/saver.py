"""Background checkpoint writer: at most one save in flight.

The training thread only snapshots state into host memory and hands a `CheckpointPayload` over;
serialization, hashing, fsync, the atomic rename and retention run in this worker thread (file
writes and sha256 release the GIL). An error in a background save is kept and raised by the next
`submit` or `wait`, so it surfaces at the next save or at exit, never silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from voicetune.checkpoints.store import CheckpointPayload, CheckpointStore, StoredCheckpoint

log = logging.getLogger("voicetune.checkpoints")


class SaveFailed(Exception):
    def __init__(self, step: int, error: BaseException):
        super().__init__(f"checkpoint of step {step} failed: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


class BackgroundSaver:
    def __init__(
        self,
        store: CheckpointStore,
        after_commit: Callable[[StoredCheckpoint], None],
        enabled: bool = True,
        before_commit: Callable[[CheckpointPayload], None] = lambda payload: None,
    ):
        self.store = store
        self.before_commit = before_commit  # fills in what is known only now (the parent checkpoint)
        self.after_commit = after_commit  # retention and bookkeeping, run in the worker after a commit
        self.enabled = enabled
        self._thread: threading.Thread | None = None
        self._error: SaveFailed | None = None
        self.last_committed: StoredCheckpoint | None = None
        self.last_seconds = 0.0

    @property
    def in_flight(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the save in flight is done; raise SaveFailed if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, payload: CheckpointPayload) -> None:
        """Start writing `payload` (after waiting for the previous save, whose error is raised)."""
        self.wait()
        if not self.enabled:
            self._write(payload)
            self.wait()
            return
        self._thread = threading.Thread(
            target=self._write, args=(payload,), name=f"save-step-{payload.step}", daemon=True
        )
        self._thread.start()

    def _write(self, payload: CheckpointPayload) -> None:
        started = time.perf_counter()
        try:
            self.before_commit(payload)
            stored = self.store.commit(payload)
            self.last_committed = stored
        except BaseException as err:
            log.exception("checkpoint of step %d failed", payload.step)
            self._error = SaveFailed(payload.step, err)
            return
        finally:
            self.last_seconds = time.perf_counter() - started
        # The checkpoint is committed: what follows (retention) can fail without failing the save.
        self.after_commit(stored)
