"""Console output shared by every command: rich consoles, the progress bar, log files."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Off a terminal (logs, CI, subprocesses, `| less`) rich would assume 80 columns and cut tables:
# `ckpt list` of a scored run is about 140 wide. A table is never wider than its contents.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
console = Console(stderr=False, highlight=False, soft_wrap=True, width=_WIDTH)
error_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)


def progress_bar(transient: bool = False, disable: bool = False, own_eta: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA; plain lines when output is not a terminal.

    `own_eta`: the caller computes the ETA (task field `eta`), e.g. training, whose milestones
    would make rich's rate-based estimate swing."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TextColumn("{task.fields[eta]}") if own_eta else TimeRemainingColumn(),
        console=error_console,
        transient=transient,
        disable=disable,
        refresh_per_second=4,
    )


def advance(bar: Progress, task, done: int, total: int, status: str) -> None:
    """Move a task of `progress_bar` to `done` of `total`. Off a terminal (a log, `2> file`, a
    pipe) rich draws nothing until the end, so each step is also a plain line on stderr with an
    ETA at the rate so far: a long `eval --json` had said nothing for minutes."""
    bar.update(task, completed=done, total=total, status=status)
    if error_console.is_terminal or bar.disable or done >= total:
        return
    elapsed = bar.tasks[task].elapsed or 0.0
    eta = f"; ETA {_clock(elapsed / done * (total - done))}" if done else ""
    error_console.print(f"{bar.tasks[task].description}: {done} of {total} done, {status} next{eta}")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def attach_log_file(path: Path, level: int = logging.DEBUG) -> logging.Handler:
    """Send the `voicetune` logger (tracebacks included) to a file, appending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    logger = logging.getLogger("voicetune")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


class _OneLine(logging.Formatter):
    """LEVEL: message, and an exception as its type and text (no traceback on the terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            line += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        return line


def attach_console_log(level: int = logging.WARNING) -> logging.Handler:
    """Show the `voicetune` logger's warnings and errors on stderr, one line each: a server's
    stderr is its log (a request that failed or was cut after its first audio, a model reloaded)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.setLevel(level)
    handler.addFilter(lambda record: not getattr(record, "said", False))  # `say` printed it
    logging.getLogger("voicetune").addHandler(handler)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("voicetune").removeHandler(handler)
    handler.close()


def say(message: str, level: int = logging.INFO, logger: str = "voicetune") -> None:
    """Log a line and, on the main process (RANK 0), show it on the console; warnings in yellow."""
    logging.getLogger(logger).log(level, message, extra={"said": True})  # on the console already
    if int(os.environ.get("RANK", "0")) == 0:
        if level >= logging.WARNING:
            console.print(f"[yellow]{escape(message)}[/]")
        else:
            console.print(message, markup=False)


_said: set[str] = set()


def say_once(message: str, level: int = logging.INFO, logger: str = "voicetune") -> None:
    """`say`, but a message already said by this process is not said again (a vocoder fallback
    noticed by every model a command loads is news the first time only)."""
    if message in _said:
        logging.getLogger(logger).debug(message)
        return
    _said.add(message)
    say(message, level, logger)


# Third-party loggers whose warnings mean nothing to a voicetune user (bitsandbytes' hint about
# its optional CPU gemm_4bit_forward kernel on every command of a model that imports it, on CPUs with
# AVX512-BF16).
QUIET_LOGGERS = ("bitsandbytes",)


def quiet_third_party() -> None:
    """Silence the warnings of QUIET_LOGGERS (errors still show) and send Python warnings
    (matplotlib's, torch's...) to the log files instead of the terminal, where they would read as
    the command's own output; called once by the CLI."""
    import warnings

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.showwarning = log_warning


def log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` that writes to the `voicetune.warnings` logger (the log files)."""
    logging.getLogger("voicetune.warnings").warning("%s:%s: %s: %s", filename, lineno, category.__name__, message)


def is_interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
