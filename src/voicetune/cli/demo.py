"""`voicetune demo`: train a tiny voice, kill it with SIGKILL, resume it, show what was kept."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import app
from voicetune.demo import DEMO_KILL_AT_STEP, DEMO_MAX_UPDATES
from voicetune.models.registry import DEFAULT_MODEL


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), "--out", help="folder for the demo corpus and run"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="model to train"),
    max_updates: int = typer.Option(
        DEMO_MAX_UPDATES, "--max-updates", min=20, help="a milestone halfway and at the end"
    ),
    kill_at_step: int = typer.Option(
        DEMO_KILL_AT_STEP, "--kill-at-step", min=1, help="SIGKILL the training at this step"
    ),
) -> None:
    """Train a tiny model on espeak-ng speech, kill -9 it mid-run, resume, and show the result."""
    from voicetune.demo import DemoPlan, run_demo
    from voicetune.errors import UsageError

    if kill_at_step >= max_updates:
        raise UsageError(f"--kill-at-step {kill_at_step}: must be below --max-updates {max_updates}")
    run_demo(
        DemoPlan(
            out=out,
            model=model,
            max_updates=max_updates,
            save_every=max(1, max_updates // 2),
            kill_at_step=kill_at_step,
        )
    )
