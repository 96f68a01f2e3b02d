"""`voicetune ckpt list | verify | prune`: inspect and maintain a run's checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from voicetune.cli.root import app
from voicetune.models.registry import export_formats

ckpt_app = typer.Typer(help="List, verify, prune and export checkpoints.", no_args_is_help=True)
app.add_typer(ckpt_app, name="ckpt")


@ckpt_app.command("list")
def list_(
    run: Path,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    all_: bool = typer.Option(False, "--all", help="also the checkpoints of abandoned timelines (RUN/abandoned/)"),
) -> None:
    """The checkpoints of RUN (from manifests; `verify` hashes them)."""
    from voicetune.checkpoints.maintenance import list_checkpoints
    from voicetune.cli.tables import print_checkpoint_table

    rows, quarantined = list_checkpoints(run, include_abandoned=all_)
    if as_json:
        typer.echo(json.dumps({"checkpoints": [r.to_json() for r in rows], "quarantined": quarantined}, indent=1))
    else:
        print_checkpoint_table(rows, f"checkpoints of {run}", quarantined)


@ckpt_app.command()
def verify(target: Path, as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Hash-check a checkpoint or every checkpoint of a run: exit 0 all valid, 1 any invalid."""
    from voicetune.checkpoints.maintenance import verify_target
    from voicetune.cli.tables import print_checkpoint_table

    rows = verify_target(target)
    bad = [r for r in rows if r.problem]
    if as_json:
        typer.echo(json.dumps({"valid": not bad, "checkpoints": [r.to_json() for r in rows]}, indent=1))
    else:
        print_checkpoint_table(rows, f"verified {target}")
        for r in bad:
            typer.echo(f"INVALID {r.name}: {r.problem}", err=True)
    raise typer.Exit(1 if bad else 0)


@ckpt_app.command()
def prune(
    run: Path,
    keep_last: int | None = typer.Option(
        None, "--keep-last", help="newest milestones kept (default: the run's keep_last)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="only say what would be removed"),
    abandoned: bool = typer.Option(False, "--abandoned", help="also delete the abandoned timelines (RUN/abandoned/)"),
) -> None:
    """Apply retention now (never removes the best or the newest full-state checkpoint)."""
    from voicetune.checkpoints.maintenance import prune_run

    removed = prune_run(run, keep_last, dry_run, abandoned)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb}: {', '.join(removed)}" if removed else "nothing to remove")


@ckpt_app.command()
def export(
    target: Path,
    fmt: str = typer.Option(..., "--format", help=" | ".join(export_formats())),
    out: Path = typer.Option(..., "--out", help="folder to write"),
    weights: str | None = typer.Option(
        None, "--weights", help="ema | raw (default: the weights the checkpoint's score chose)"
    ),
) -> None:
    """Export a checkpoint (or a run's best) in an upstream format, the weights its score chose, LoRA merged."""
    from voicetune.synthesis.inference import export_trained

    files = export_trained(target, fmt, out, weights)
    typer.echo("wrote " + ", ".join(str(p) for p in files))
