"""The `voicetune` command: thin Typer commands over library functions.

`main()` is the console entry point. It turns a `VoicetuneError` into its one- or two-line message
and exit code (2 for bad usage or input, 1 for other failures), and any other exception into a
one-line message with the traceback written to the log, never to the terminal.
"""

from __future__ import annotations

import logging
import sys

# Sub-apps and commands register themselves on import; keep these imports light (no torch at
# module level) so that `voicetune --help` stays fast.
from voicetune.cli import ckpt as _ckpt  # noqa: F401
from voicetune.cli import dataset as _dataset  # noqa: F401
from voicetune.cli import demo as _demo  # noqa: F401
from voicetune.cli import doctor as _doctor  # noqa: F401
from voicetune.cli import eval as _eval  # noqa: F401
from voicetune.cli import fetch as _fetch  # noqa: F401
from voicetune.cli import narrate as _narrate  # noqa: F401
from voicetune.cli import plan as _plan  # noqa: F401
from voicetune.cli import prepare as _prepare  # noqa: F401
from voicetune.cli import serve as _serve  # noqa: F401
from voicetune.cli import studio as _studio  # noqa: F401
from voicetune.cli import synthesize as _synthesize  # noqa: F401
from voicetune.cli import train as _train  # noqa: F401
from voicetune.cli.root import app
from voicetune.errors import StoppedBySignal, VoicetuneError

log = logging.getLogger("voicetune")
log.addHandler(logging.NullHandler())  # tracebacks go to log files, never to the terminal


def _user_log_path():
    import os
    from pathlib import Path

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voicetune" / "voicetune.log"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the contract's exit codes."""
    from rich.markup import escape

    from voicetune.console import attach_log_file, console, error_console, quiet_third_party

    quiet_third_party()
    log_path = _user_log_path()
    try:
        attach_log_file(log_path)
    except OSError:
        log_path = None
    try:
        # standalone mode: click prints usage errors itself and exits 2.
        app(args=argv, prog_name="voicetune")
    except StoppedBySignal as stop:
        console.print(str(stop), markup=False, highlight=False, soft_wrap=True)  # a command to paste: unbroken
        sys.exit(stop.exit_code)
    except VoicetuneError as err:
        log.debug("error", exc_info=True)
        error_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        error_console.print("aborted")
        sys.exit(130)
    except Exception as err:  # a real bug: one line here, the traceback in the log
        log.exception("unexpected error")
        if _debug():
            raise
        error_console.print(
            f"[bold red]error:[/] {type(err).__name__}: {err}\n"
            f"  (the traceback is in {getattr(err, 'log_path', None) or log_path}; VOICETUNE_DEBUG=1 shows it here)",
            highlight=False,
        )
        sys.exit(1)


def _debug() -> bool:
    import os

    return os.environ.get("VOICETUNE_DEBUG") == "1"
