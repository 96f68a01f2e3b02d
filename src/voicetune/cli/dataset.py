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
