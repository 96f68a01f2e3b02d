"""`voicetune dataset check | score`: validate a dataset folder; score its clips and flag outliers."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from voicetune.cli.root import app

dataset_app = typer.Typer(help="Inspect and validate dataset folders.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("check")
def check(
    dataset: Path = typer.Argument(..., help="folder with metadata.csv and wavs/"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    vocab: Path | None = typer.Option(None, help="vocabulary file (one character per line, as a model's vocab.txt)"),
    sample_rate: int | None = typer.Option(None, help="expected sample rate; default: the most common one"),
    min_seconds: float = typer.Option(1.0, help="shorter clips are warned about"),
    max_seconds: float = typer.Option(30.0, help="longer clips are warned about"),
) -> None:
    """Check a dataset: missing or extra wavs, empty text, rates, channels, duplicates, durations, vocabulary."""
    from voicetune.data.check import check_dataset, print_check_report, read_vocabulary

    vocabulary = read_vocabulary(vocab) if vocab else None
    report = check_dataset(dataset, vocabulary, sample_rate, min_seconds, max_seconds)
    print_check_report(report, as_json)
    raise typer.Exit(0 if report.ok else 1)


@dataset_app.command("score")
def score(
    dataset: Path = typer.Argument(..., help="folder with metadata.csv and wavs/"),
    whisper_model: str = typer.Option(
        "small", envvar="VOICETUNE_WHISPER_MODEL", help="model name (downloaded once) or local CTranslate2 folder"
    ),
    language: str | None = typer.Option(
        None, help="language of the clips; default: the one prepare recorded, else detected"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print a JSON list of clips {id, wer, dnsmos, similarity, flags}, worst first"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="also write the full report (thresholds, transcriptions) as JSON here"
    ),
) -> None:
    """Score every clip: transcript mismatch (WER), noise (DNSMOS), another speaker (similarity); flag outliers."""
    from voicetune.console import console
    from voicetune.scoring.dataset import write_score_report

    result = score_with_progress(dataset, whisper_model, language, show=not as_json)
    if out is not None:
        write_score_report(result, out)
    if as_json:
        typer.echo(json.dumps([clip.to_json() for clip in result.clips], indent=1, ensure_ascii=False))
        return
    print_dataset_score(result, console)
    if out is not None:
        console.print(f"report: {out}")


def score_with_progress(dataset: Path, whisper_model: str, language: str | None, show: bool = True):
    """`score_dataset` under a progress bar (clips done, ETA)."""
    from voicetune.console import progress_bar
    from voicetune.scoring.dataset import score_dataset

    with progress_bar(transient=True, disable=not show) as bar:
        task = bar.add_task("scoring clips", total=None, status="")
        return score_dataset(
            dataset, whisper_model, language, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )


def print_dataset_score(result, console) -> None:
    """The flagged clips, worst first, with their reasons and the thresholds."""
    from rich.markup import escape
    from rich.table import Table

    t = result.thresholds
    bounds = [
        f"WER > {t.wer:.2f}" if t.wer is not None else "WER not measured",
        f"DNSMOS < {t.dnsmos:.2f}" if t.dnsmos is not None else "DNSMOS not measured",
        f"similarity < {t.similarity:.3f}" if t.similarity is not None else "similarity not measured",
    ]
    console.print(
        f"[bold]{escape(str(result.dataset))}[/]: {len(result.flagged)} of {len(result.clips)} clips flagged "
        f"({', '.join(bounds)})"
    )
    if not result.flagged:
        return
    table = Table(show_edge=False)
    for column in ("clip", "WER", "DNSMOS", "similarity", "reasons"):
        table.add_column(column, justify="left" if column in ("clip", "reasons") else "right")

    def cell(value, digits):
        return "" if value is None else f"{value:.{digits}f}"

    for clip in result.flagged:
        table.add_row(
            escape(clip.id), cell(clip.wer, 2), cell(clip.dnsmos, 2), cell(clip.similarity, 3), ", ".join(clip.flags)
        )
    console.print(table)


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
    typer.echo(
        f"{done}; {report['totals']['clips']} clips; dataset check: "
        f"{'ok' if check['ok'] else 'ERRORS'} ({check['errors']} errors, {check['warnings']} warnings)"
    )
    raise typer.Exit(0 if check["ok"] else 1)
