"""Fault injection points for tests that need a real kill or a pause at a precise instant.

Both do nothing unless their environment variable names the point, so production runs pay one
dictionary lookup. They exist so that tests drive timing from events, never from sleeps.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def crash_point(name: str) -> None:
    """VOICETUNE_CRASH_AT=<name> kills the process here with SIGKILL (no cleanup of any kind),
    the way storage engines test atomicity."""
    if os.environ.get("VOICETUNE_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


def pause_point(name: str) -> None:
    """VOICETUNE_PAUSE_AT=<name>[@<rank>]:<FILE> creates FILE.reached here (on that rank of several
    processes only, when given), then waits until FILE exists (the test creates it to let the
    process go on; a test that never creates it has a rank that stalls). Signal handlers run
    while it waits."""
    spec = os.environ.get("VOICETUNE_PAUSE_AT", "")
    point, _, path = spec.partition(":")
    point, _, rank = point.partition("@")
    if point != name or not path or (rank and rank != os.environ.get("RANK", "0")):
        return
    release = Path(path)
    Path(f"{path}.reached").write_text(str(os.getpid()))
    while not release.exists():
        time.sleep(0.01)
