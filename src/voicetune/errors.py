"""Errors a user can act on.

Every error voicetune raises for bad input or a broken environment is a `VoicetuneError`: its
message names the file or flag at fault and the fix, in one or two lines. The CLI prints the
message without a traceback and exits with `exit_code`; the traceback goes to the log.
"""

from __future__ import annotations

from pathlib import Path


class VoicetuneError(Exception):
    """A failure the user can fix; printed as one or two lines, exit code 1."""

    exit_code = 1
    log_path: Path | None = None  # the log file that holds the traceback, when there is one


class UsageError(VoicetuneError):
    """Bad usage or bad input (a flag, a config value, a missing file): exit code 2."""

    exit_code = 2


class CheckpointError(VoicetuneError):
    """A checkpoint that cannot be used (invalid, incompatible, missing)."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint whose files do not match its manifest (it is quarantined, never trusted)."""


class IncompatibleCheckpointError(UsageError, CheckpointError):
    """A valid checkpoint of another model or architecture than asked for: bad input, exit code 2."""


class RunLockedError(VoicetuneError):
    """Another live process holds the run's LOCK."""


class StoppedBySignal(Exception):
    """Training stopped cleanly after SIGTERM (exit 143) or SIGINT (exit 130)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        # 128 + signal number, the shell convention schedulers understand.
        self.exit_code = 128 + signum
