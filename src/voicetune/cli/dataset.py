"""`voicetune dataset check`: validate an LJSpeech-layout dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from voicetune.cli import app

dataset_app = typer.Typer(help="Inspect and validate dataset folders.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("check")
def check(
    dataset: Path = typer.Argument(..., help="folder with metadata.csv and wavs/"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    vocab: Optional[Path] = typer.Option(None, help="vocabulary file (one character per line, like F5's vocab.txt)"),
    sample_rate: Optional[int] = typer.Option(None, help="expected sample rate; default: the most common one"),
    min_seconds: float = typer.Option(1.0, help="shorter clips are warned about"),
    max_seconds: float = typer.Option(30.0, help="longer clips are warned about"),
) -> None:
    """Check a dataset: missing or extra wavs, empty text, rates, channels, duplicates, durations, vocabulary."""
    from voicetune.data.check import check_dataset, print_check_report, read_vocabulary

    vocabulary = read_vocabulary(vocab) if vocab else None
    report = check_dataset(dataset, vocabulary, sample_rate, min_seconds, max_seconds)
    print_check_report(report, as_json)
    raise typer.Exit(0 if report.ok else 1)


@dataset_app.command("edit")
def edit(
    dataset: Path = typer.Argument(..., help="a dataset folder made by `voicetune prepare`"),
    clip: str = typer.Argument(..., help="clip id (first column of metadata.csv)"),
    text: str = typer.Option(..., "--text", help="what the clip really says"),
) -> None:
    """Correct a clip's transcript: metadata.csv and the split files are rewritten, then checked."""
    from voicetune.data.edit import set_transcript

    _print_verdict(f"{clip}: transcript saved", set_transcript(dataset, clip, text))


@dataset_app.command("remove")
def remove(dataset: Path = typer.Argument(...), clip: str = typer.Argument(..., help="clip id")) -> None:
    """Take a clip out of the dataset (kept aside; `dataset restore` brings it back)."""
    from voicetune.data.edit import remove_clip

    _print_verdict(f"{clip}: removed", remove_clip(dataset, clip))


@dataset_app.command("restore")
def restore(dataset: Path = typer.Argument(...), clip: str = typer.Argument(..., help="clip id")) -> None:
    """Put a removed clip back, text and audio as they were."""
    from voicetune.data.edit import restore_clip

    _print_verdict(f"{clip}: restored", restore_clip(dataset, clip))


def _print_verdict(done: str, report: dict) -> None:
    check = report["check"]
    typer.echo(f"{done}; {report['totals']['clips']} clips; dataset check: "
               f"{'ok' if check['ok'] else 'ERRORS'} ({check['errors']} errors, {check['warnings']} warnings)")
    raise typer.Exit(0 if check["ok"] else 1)
