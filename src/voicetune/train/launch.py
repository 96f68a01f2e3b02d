"""`voicetune train --processes N`: run N training processes on this machine (DDP through accelerate).

A small launcher instead of torchrun, whose own argparse takes `--run` for an abbreviation of
its `--run-path` and refuses the command line. Each child gets the usual torch.distributed
environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which accelerate reads.
SIGTERM and SIGINT are passed on to every child, so they stop together at the same update and
rank 0 writes the final checkpoint. If one child dies, the others are stopped too: they would
otherwise wait forever in a collective.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

GRACE_SECONDS = 60.0


def in_child() -> bool:
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def launch(processes: int, argv: list[str]) -> int:
    """Start `python -m voicetune <argv>` `processes` times; return the exit code to use."""
    port = _free_port()
    children: list[subprocess.Popen] = []
    for rank in range(processes):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(processes),
                   LOCAL_WORLD_SIZE=str(processes), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   # Threads per process: share the cores instead of oversubscribing them.
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes))))
        children.append(subprocess.Popen([sys.executable, "-m", "voicetune", *argv], env=env))

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed_at = None
        while any(c.poll() is None for c in children):
            codes = [c.returncode for c in children if c.returncode is not None]
            if failed_at is None and any(code != 0 for code in codes):
                failed_at = time.monotonic()
                forward(signal.SIGTERM, None)
            if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
                for child in children:
                    if child.poll() is None:
                        child.kill()
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    codes = [c.returncode for c in children]
    # A negative code means killed by a signal: report it the shell's way (128 + n).
    codes = [128 - code if code < 0 else code for code in codes]
    return next((code for code in codes if code != 0), 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
