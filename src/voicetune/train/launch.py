"""`voicetune train --processes N`: run N training processes on this machine (DDP through accelerate).

A small launcher instead of torchrun, whose own argparse takes `--run` for an abbreviation of
its `--run-path` and refuses the command line. Each child gets the usual torch.distributed
environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which accelerate reads.
SIGTERM and SIGINT are passed on to every child, so they stop together at the same update and
rank 0 writes the final checkpoint. If one child fails, the others are stopped too (SIGTERM, and
SIGKILL after three minutes): they would otherwise wait in a collective until their watchdog ends them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

# After a forwarded SIGTERM/SIGINT (or a child's failure), children still alive this long are
# killed: a backstop only, each child's watchdog ends a rank stuck in a collective after
# `stop_grace_seconds` (60 s by default) with its stacks in train.log.
BACKSTOP_SECONDS = 180.0
PROCESSES_ENV = "VOICETUNE_PROCESSES"  # tells a child the --processes it was launched with


def in_child() -> bool:
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def launch(processes: int, argv: list[str]) -> int:
    """Start `python -m voicetune <argv>` `processes` times; return the exit code to use: the code of
    the first child that failed (the cause; the others were stopped because of it), else 0."""
    port = _free_port()
    children: list[subprocess.Popen] = []
    for rank in range(processes):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(processes),
            LOCAL_WORLD_SIZE=str(processes),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            **{PROCESSES_ENV: str(processes)},
            # Threads per process: share the cores instead of oversubscribing them.
            OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes))),
        )
        children.append(subprocess.Popen([sys.executable, "-m", "voicetune", *argv], env=env))
    deadline: list[float] = []  # when children still alive are killed

    def forward(signum, _frame):
        if not deadline:
            deadline.append(time.monotonic() + BACKSTOP_SECONDS)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    first_failure = None
    try:
        while any(c.poll() is None for c in children):
            failed = [c.returncode for c in children if c.returncode not in (None, 0)]
            if first_failure is None and failed:
                first_failure = failed[0]
                forward(signal.SIGTERM, None)
            if deadline and time.monotonic() > deadline[0]:
                for child in children:
                    if child.poll() is None:
                        child.kill()
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    codes = [c.returncode for c in children]
    if first_failure is None:
        first_failure = next((code for code in codes if code != 0), 0)
    # A negative code means killed by a signal: report it the shell's way (128 + n).
    return 128 - first_failure if first_failure < 0 else first_failure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
