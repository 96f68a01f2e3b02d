"""`voicetune prepare`: recordings in, a clean, transcribed LJSpeech-layout dataset out."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import app
from voicetune.models.registry import CLIP_BOUNDS, DEFAULT_MODEL, family_of

# Each family's clip lengths, for --for's help: "FAMILY (MIN-MAX s), ...".
CLIP_LENGTHS = ", ".join(f"{family} ({low:g}-{high:g} s)" for family, (low, high) in CLIP_BOUNDS.items())


@app.command()
def prepare(
    inputs: list[Path] = typer.Argument(
        ..., metavar="INPUT...", help="audio/video files or folders (searched recursively)"
    ),
    out: Path = typer.Option(..., "--out", help="dataset folder to create, resume or extend"),
    language: str | None = typer.Option(None, help="language code (en, pt, ...); default: detected per file"),
    transcriber: str = typer.Option(
        "whisper", help="whisper | pocketsphinx (offline, English) | none (keep .txt/.lab/metadata.csv)"
    ),
    whisper_model: str = typer.Option(
        "small", envvar="VOICETUNE_WHISPER_MODEL", help="model name (downloaded once) or local CTranslate2 folder"
    ),
    for_model: str = typer.Option(
        family_of(DEFAULT_MODEL), "--for", help=f"the model the clips are for: {CLIP_LENGTHS} or a model name"
    ),
    min_seconds: float | None = typer.Option(None, help="shortest clip \\[default: from --for]"),
    max_seconds: float | None = typer.Option(None, help="longest clip \\[default: from --for]"),
    sample_rate: int = typer.Option(24000, help="sample rate of the clips (Hz)"),
    val_fraction: float = typer.Option(0.1, help="share of clips in metadata_val.csv"),
    workers: int | None = typer.Option(
        None, help="copies of whisper working side by side, one file each at a time; default: one per CPU core"
    ),
    loudness: float = typer.Option(-23.0, help="loudness target of every clip (LUFS)"),
    numbers_to_words: bool = typer.Option(
        False,
        "--numbers-to-words",
        help="in normalized_text, read abbreviations, dates, money, units and numbers as words (the clip's language)",
    ),
    beam_size: int = typer.Option(
        3, help="whisper beam size (3 was as accurate as 5 on recorded speech and 7% faster; 1 is fastest)"
    ),
    speaker: str | None = typer.Option(
        None,
        "--speaker",
        metavar="REF.wav|auto",
        help="keep only one voice: the voice of a reference recording, or auto: the voice that speaks most",
    ),
    score: bool = typer.Option(
        False, "--score", help="then score every clip (`voicetune dataset score`); flagged clips go in report.json"
    ),
) -> None:
    """Turn raw recordings into a clean, transcribed training set (LJSpeech layout)."""
    from voicetune.console import console, error_console
    from voicetune.data.prepare import PrepareOptions, prepare_dataset
    from voicetune.data.report import print_prepare_summary
    from voicetune.errors import VoicetuneError
    from voicetune.models.registry import clip_bounds

    shortest, longest = clip_bounds(for_model)
    options = PrepareOptions(
        sample_rate,
        shortest if min_seconds is None else min_seconds,
        longest if max_seconds is None else max_seconds,
        transcriber,
        whisper_model,
        language,
        numbers_to_words,
        loudness,
        val_fraction,
        workers,
        beam_size,
        speaker,
    )
    try:
        result = prepare_dataset(inputs, out, options)
    except KeyboardInterrupt:
        error_console.print(
            f"interrupted: the files finished so far are kept in {out}; run the same command again to prepare the rest"
        )
        raise typer.Exit(130) from None
    print_prepare_summary(result, console)
    if result.clips == 0:
        raise VoicetuneError(f"no clip kept in {out}: see the reasons above and in {out / 'report.json'}")
    if score:
        from voicetune.cli.dataset import print_dataset_score, score_with_progress
        from voicetune.data.report import REPORT
        from voicetune.scoring.dataset import add_to_prepare_report

        scored = score_with_progress(out, whisper_model, language)
        add_to_prepare_report(scored, out / REPORT)
        print_dataset_score(scored, console)
