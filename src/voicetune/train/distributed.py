"""Several processes: the accelerator (one process, or one rank of a DDP job), the collectives the
training loop uses between ranks, the agreement of the ranks' weights, and the watchdog.

Rules every helper here keeps (DESIGN.md, style 12):
- every rank calls each collective at the same point of the loop: none runs inside a loop whose
  length differs between ranks;
- a decision (stop, early stop) is made once and broadcast, or reduced so that every rank reads
  the same value;
- no wait is forever. The process group's collectives time out (at least torch's 30 minutes,
  or `--collective-timeout` when longer), and during training the `Watchdog` ends a rank that
  made no progress for `--collective-timeout` (10 minutes by default): it writes the stack of
  every thread of that rank to RUN/train.log, says which phase it was in, and exits 1. After
  SIGTERM or Ctrl-C it ends a rank stuck in a collective within `stop_grace_seconds` (exit
  143 / 130). Either way the last committed checkpoint stands, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import datetime
import faulthandler
import fcntl
import hashlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from voicetune.config import TrainConfig, format_duration, parse_duration
from voicetune.errors import UsageError, VoicetuneError
from voicetune.train.signals import StopSignals

log = logging.getLogger("voicetune.train")

# Set-up waits (rank 0 downloads weights or fills the data cache while the others wait) can be
# long on a first start: the process group's own timeout never goes below torch's default.
SETUP_TIMEOUT_SECONDS = 30 * 60
# Phases in which a stop request does not shorten the wait: rank 0 commits the final checkpoint
# while the others wait for it; cutting that short would lose the checkpoint the stop asked for.
PATIENT_PHASES = frozenset({"final checkpoint"})
HANG_EXIT_CODE = 1

# The collective this process waits in, for the watchdog's and the errors' messages. Left set when
# the collective fails: what is said afterwards (by either thread) names where it failed.
_waiting_in: str | None = None


@contextlib.contextmanager
def waiting_in(collective: str):
    """Mark the wait of one collective (e.g. "all_reduce of the validation losses")."""
    global _waiting_in
    _waiting_in = collective
    yield
    _waiting_in = None  # not on an error: it stays named until the next phase


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    precision = config.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    if precision != "no" and not torch.cuda.is_available():
        raise UsageError(f"--mixed-precision {precision} needs a GPU; use --mixed-precision no (or auto) on CPU")
    timeout = max(parse_duration(config.collective_timeout), SETUP_TIMEOUT_SECONDS)
    # cpu=True on a machine without GPU is what lets accelerate see a multi-process CPU launch.
    return Accelerator(
        mixed_precision=precision,
        cpu=not torch.cuda.is_available(),
        step_scheduler_with_optimizer=False,
        rng_types=[],
        kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=timeout))],
    )


def broadcast_object(accelerator, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if accelerator.num_processes == 1:
        return obj
    holder = [obj]
    with waiting_in("broadcast_object_list from rank 0"):
        torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def mean_across_ranks(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    with waiting_in("all_reduce of a mean"):
        return float(accelerator.reduce(t, reduction="mean").item())


def agreed_stop_signal(accelerator, signals: StopSignals) -> int | None:
    """Any rank's stop request stops every rank at the same update."""
    local = signals.signum or 0
    if accelerator.num_processes == 1:
        return local or None
    t = torch.tensor([local], dtype=torch.int64, device=accelerator.device)
    with waiting_in("all_reduce of the stop requests"):
        agreed = int(accelerator.reduce(t, reduction="sum").item())
    if not agreed:
        return None
    return local or (signal.SIGTERM if agreed % int(signal.SIGTERM) == 0 else signal.SIGINT)


# ---- the ranks' weights agree ------------------------------------------------------------------


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the trained tensors (names, dtypes, shapes and bytes, in name order): equal on
    every rank exactly when their weights are bit for bit the same."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.to("cpu").contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def check_ranks_agree(digests: list[str], step: int) -> dict[str, str]:
    """{rankN: digest} for the manifest; an error when the ranks' weights differ (every rank has
    every digest, so every rank raises alike: no rank is left waiting)."""
    by_rank = {f"rank{r}": d for r, d in enumerate(digests)}
    if len(set(digests)) > 1:
        groups = ", ".join(f"{rank} {d[:12]}" for rank, d in by_rank.items())
        raise VoicetuneError(
            f"the ranks' weights differ at step {step} ({groups}): this checkpoint is not saved and the last committed "
            "one stands. Ranks must apply identical updates; rerun the same command to resume, and report this with "
            "RUN/train.log"
        )
    return by_rank


# ---- the watchdog -----------------------------------------------------------------------------


class Watchdog:
    """Ends a rank that made no progress for `timeout` seconds, or for `grace` seconds after a stop
    signal, with the stacks of all its threads in the run's train.log.

    The training loop names each phase as it enters it (`phase("validation", step)`); entering a
    phase is progress. A thread checks once a second; it also reads the signal numbers the C-level
    handler writes to a wakeup pipe, so it sees a SIGTERM even while the main thread is blocked in
    a collective, where Python signal handlers cannot run.

    A disabled watchdog (one process: no collective can hang) does nothing.
    """

    def __init__(self, timeout: float, grace: float, log_path: Path, rank: int, world: int, enabled: bool = True):
        self.timeout, self.grace, self.log_path = timeout, grace, Path(log_path)
        self.rank, self.world, self.enabled = rank, world, enabled
        self._phase, self._since = "start", time.monotonic()
        self._step: int | None = None
        self._stop_seen: float | None = None
        self._stop_signum: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._pipe: tuple[int, int] | None = None
        self._previous_wakeup = -1

    @classmethod
    def for_run(cls, config: TrainConfig, accelerator, log_path: Path) -> Watchdog:
        return cls(
            parse_duration(config.collective_timeout),
            config.stop_grace_seconds,
            log_path,
            accelerator.process_index,
            accelerator.num_processes,
            enabled=accelerator.num_processes > 1,
        )

    def start(self) -> Watchdog:
        if not self.enabled or self._thread is not None:
            return self
        if threading.current_thread() is threading.main_thread():
            read, write = os.pipe()
            os.set_blocking(write, False)
            self._pipe = (read, write)
            self._previous_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="voicetune-watchdog", daemon=True)
        self._thread.start()
        return self

    def phase(self, name: str, step: int | None = None) -> None:
        """Progress: this rank enters `name` (at update `step`)."""
        global _waiting_in
        with self._lock:
            self._phase, self._step, self._since = name, step, time.monotonic()
            _waiting_in = None

    def where(self) -> str:
        """ "phase 'validation' at step 2, in all_reduce of the validation losses"."""
        collective = _waiting_in
        return (
            f"phase '{self._phase}'"
            + (f" at step {self._step}" if self._step is not None else "")
            + (f", in {collective}" if collective else "")
        )

    def close(self) -> None:
        if self._thread is None:
            return
        self._closed.set()
        if self._pipe is not None:
            os.write(self._pipe[1], b"\0")  # wakes the thread's select at once
        self._thread.join()
        self._thread = None
        if self._pipe is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None

    # ---- the thread --------------------------------------------------------------------------

    def _watch(self) -> None:
        stop_numbers = {int(signal.SIGTERM), int(signal.SIGINT)}
        while not self._closed.is_set():
            if self._pipe is not None:
                ready, _, _ = select.select([self._pipe[0]], [], [], 1.0)
                numbers = os.read(self._pipe[0], 512) if ready else b""
            else:
                self._closed.wait(1.0)
                numbers = b""
            if self._closed.is_set():
                return
            now = time.monotonic()
            for number in numbers:
                if number in stop_numbers and self._stop_seen is None:
                    self._stop_seen, self._stop_signum = now, number
            with self._lock:
                phase, since = self._phase, self._since
            if (
                self._stop_seen is not None
                and phase not in PATIENT_PHASES
                and now - max(since, self._stop_seen) > self.grace
            ):
                name = "SIGTERM" if self._stop_signum == signal.SIGTERM else "Ctrl-C"
                self._end(
                    f"{name} came {now - self._stop_seen:.0f} s ago, but this rank made no progress for "
                    f"{now - since:.0f} s in {self.where()} (stuck in a collective?); stop_grace_seconds is "
                    f"{self.grace:g}",
                    128 + int(self._stop_signum or signal.SIGTERM),
                )
            elif now - since > self.timeout:
                self._end(
                    f"no progress for {now - since:.0f} s in {self.where()}, past --collective-timeout "
                    f"{format_duration(self.timeout)}: a rank is stuck, or waits for one that is",
                    HANG_EXIT_CODE,
                )

    def _end(self, reason: str, code: int) -> None:
        self.dump(reason)
        message = (
            f"\nrank {self.rank} of {self.world}: {reason}. The stacks of every thread are in {self.log_path}. "
            f"Exit {code}; the last committed checkpoint stands: rerun the same command to resume\n"
        )
        try:
            os.write(sys.stderr.fileno(), message.encode())
        except OSError:
            pass
        for handler in logging.getLogger("voicetune").handlers:
            handler.flush()
        os._exit(code)  # the main thread is blocked: nothing else could end this process

    def collective_failed(self, err: BaseException) -> VoicetuneError:
        """The error of a rank whose collective failed (a peer ended or timed out), its stacks logged."""
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        self.dump(f"a collective failed in {self.where()}: {first}")
        error = VoicetuneError(
            f"rank {self.rank} of {self.world}: a collective failed in {self.where()} ({first[:200]}): another rank "
            f"ended or hung (see its lines above). The stacks of every thread are in {self.log_path}; the last committed "
            "checkpoint stands: rerun the same command to resume"
        )
        error.exit_code = HANG_EXIT_CODE
        return error

    def dump(self, reason: str) -> None:
        """Write `reason` and the stack of every thread of this process to the run's train.log
        (every rank writes to the same file, one rank at a time under a lock)."""
        if not self.enabled:
            return
        log.error("rank %d: %s; the stacks of every thread follow in %s", self.rank, reason, self.log_path)
        header = (
            f"\n==== rank {self.rank} of {self.world} (pid {os.getpid()} on {socket.gethostname()}) "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {reason}\n"
        )
        try:
            with open(self.log_path, "a", encoding="utf-8") as out:
                fcntl.lockf(out, fcntl.LOCK_EX)
                try:
                    out.write(header)
                    out.flush()
                    faulthandler.dump_traceback(file=out, all_threads=True)
                    out.write(f"==== end of rank {self.rank}'s stacks\n")
                    out.flush()
                finally:
                    fcntl.lockf(out, fcntl.LOCK_UN)
        except OSError as err:  # the stacks still go to this rank's stderr
            log.error("could not write the stacks to %s: %s", self.log_path, err)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def collective_failure(err: BaseException) -> bool:
    """Whether `err` is a collective that failed (a peer gone, a timeout), not a bug of this rank."""
    if isinstance(err, getattr(torch.distributed, "DistError", ())):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection closed by peer", "Connection reset", "Timed out")
    )
