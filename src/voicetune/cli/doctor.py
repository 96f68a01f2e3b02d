"""`voicetune doctor`: what this machine has, and what is missing for each command."""

from __future__ import annotations

from voicetune.cli.root import app


@app.command()
def doctor() -> None:
    """Check the Python packages, ffmpeg, espeak-ng, GPU and free disk space."""
    from voicetune.doctor import print_report, run_checks

    print_report(run_checks())
