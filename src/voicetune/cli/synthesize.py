"""`voicetune synthesize`: speak text with a trained voice."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import NFE_HELP, REF_TEXT_HELP, app


@app.command()
def synthesize(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a run folder (its best checkpoint) or a checkpoint"),
    text: str = typer.Option(..., "--text", help="what to say; long text is split into sentences"),
    ref: Path | None = typer.Option(
        None, "--ref", help="a few seconds of the voice to clone (wav, flac, mp3...); default: the run's default voice"
    ),
    out: Path = typer.Option(..., "--out", help="wav file to write"),
    ref_text: str | None = typer.Option(None, "--ref-text", help=REF_TEXT_HELP),
    seed: int = typer.Option(0, "--seed", help="chunk i is spoken with seed S+i: the same seed, the same audio"),
    speed: float = typer.Option(1.0, "--speed", min=0.25, max=4.0, help="speaking rate (1.0: as trained)"),
    language: str | None = typer.Option(
        None, "--language", help="language to speak, for models that speak several (default: the run's)"
    ),
    weights: str | None = typer.Option(
        None, "--weights", help="ema | raw (default: the weights the checkpoint's score chose)"
    ),
    nfe: int | None = typer.Option(None, "--nfe", help=NFE_HELP),
) -> None:
    """Synthesize TEXT in the voice of REF (or the run's default voice) with a trained checkpoint."""
    from voicetune.synthesis.engine import synthesize_to_file

    def said(voice) -> None:
        if ref is None:
            typer.echo(f"voice: the run's default, {voice.source}")

    path = synthesize_to_file(checkpoint, text, ref, out, ref_text, seed, speed, language, nfe, weights, said)
    typer.echo(f"wrote {path}")
