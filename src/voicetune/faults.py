"""Fault injection points for tests that need a real kill, a pause or a failure at a precise instant.

They do nothing unless their environment variable names the point, so production runs pay one
dictionary lookup. They exist so that tests drive timing from events, never from sleeps.
"""

from __future__ import annotations

import os
import threading
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


_fault_hits: dict[str, int] = {}


def fail_point(name: str, until: threading.Event | None = None) -> None:
    """VOICETUNE_FAULTS=<DIR>: a test arms this point by writing DIR/<name> with `raise K` or
    `stall K`. At the K-th hit after it was armed, the file is removed (a fault fires once),
    DIR/<name>.reached is written, and then `raise` raises RuntimeError here, while `stall` waits
    until `until` is set (the work's own cancel event: a time limit, a client that left)."""
    armed = _armed(name)
    if armed is None:
        _fault_hits.pop(name, None)
        return
    path, action, count = armed
    hits = _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if hits < int(count or 1):
        return
    _fault_hits.pop(name, None)
    _fire(path)
    if action == "stall":
        if until is not None:
            until.wait()
        return
    raise RuntimeError(f"injected failure at {name} (hit {hits})")


def fault_seconds(name: str, default: float) -> float:
    """VOICETUNE_FAULTS=<DIR>: a test arms this point by writing DIR/<name> with `seconds S`; its
    next hit (once, as a fail point fires, DIR/<name>.reached written) gives S instead of `default`.
    A request's time limit made short: the test holds the request at a stall and gets its time
    limit's answer in a second, not in the minute a busy machine needs for an ordinary request."""
    armed = _armed(name)
    if armed is None:
        return default
    path, _, seconds = armed
    _fire(path)
    return float(seconds)


def _armed(name: str) -> tuple[Path, str, str] | None:
    """(the file, its action, its argument) when a test armed the point `name`, else None."""
    folder = os.environ.get("VOICETUNE_FAULTS")
    if not folder:
        return None
    armed = Path(folder) / name
    try:
        action, _, argument = armed.read_text().strip().partition(" ")
    except OSError:  # not armed
        return None
    return armed, action, argument


def _fire(armed: Path) -> None:
    """The point fires once: its file removed, NAME.reached written (what the test waits for)."""
    armed.unlink()
    armed.with_name(f"{armed.name}.reached").write_text(str(os.getpid()))
