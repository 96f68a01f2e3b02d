"""`voicetune narrate`: a long text into one audio file, resumable, each chunk checked by ear."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import NFE_HELP, REF_TEXT_HELP, app


@app.command()
def narrate(
    text_file: Path = typer.Argument(..., help="UTF-8 text to read (a chapter, an article)"),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="a run (its best checkpoint), a checkpoint or RUN/ready"),
    out: Path = typer.Option(
        ..., "--out", help="wav file to write; OUT.parts/ keeps finished chunks, OUT.json the report"
    ),
    voice: str | None = typer.Option(
        None, "--voice", help="a voice of the run: default (its reference clip) or NAME (RUN/voices/NAME.wav)"
    ),
    ref: Path | None = typer.Option(None, "--ref", help="a clip of the voice to use instead"),
    ref_text: str | None = typer.Option(None, "--ref-text", help=REF_TEXT_HELP),
    check: bool = typer.Option(True, "--check/--no-check", help="transcribe each chunk and retake the ones that fail"),
    retakes: int = typer.Option(2, "--retakes", min=0, help="new takes of a chunk that fails the check"),
    seed: int = typer.Option(0, "--seed", help="chunk i is spoken with seed S+i: the same seed, the same audio"),
    nfe: int | None = typer.Option(None, "--nfe", help=NFE_HELP),
    weights: str | None = typer.Option(
        None, "--weights", help="ema | raw (default: the weights the checkpoint's score chose)"
    ),
    whisper_model: str = typer.Option(
        "small",
        envvar="VOICETUNE_WHISPER_MODEL",
        help="whisper model name (downloaded once) or local CTranslate2 folder, for --check",
    ),
) -> None:
    """Narrate TEXT_FILE in a trained voice; a rerun after a kill redoes only the missing chunks."""
    from rich.markup import escape

    from voicetune.console import console, progress_bar
    from voicetune.errors import UsageError
    from voicetune.synthesis.engine import DEFAULT_VOICE, checkpoint_target, shared_pool
    from voicetune.synthesis.inference import check_weights
    from voicetune.synthesis.narrate import narrate as run_narration

    if not text_file.is_file():
        raise UsageError(f"{text_file}: no such file; give the text to narrate (UTF-8)")
    try:
        text = text_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{text_file}: not UTF-8 text; convert it (e.g. `iconv -f latin1 -t utf-8`)") from None
    if voice and ref:
        raise UsageError("--voice and --ref: give one of them")
    if ref_text and not ref:
        raise UsageError("--ref-text without --ref: give the clip it transcribes with --ref")
    engine = shared_pool().get(checkpoint_target(checkpoint), nfe, check_weights(weights))
    speaker = engine.voice(ref, ref_text) if ref else engine.named_voice(voice or DEFAULT_VOICE)

    with progress_bar() as bar:
        task = bar.add_task("narrating", total=None, status="")

        def done(chunk, total) -> None:
            bar.update(task, total=total, advance=1, status=f"chunk {chunk.index + 1}")
            scores = ""
            if chunk.check is not None:
                wer = chunk.check["wer"]
                scores = f"  WER {wer:.2f}" if wer is not None else ""
                scores += f"  {chunk.check['seconds']:.1f} s"
                scores += f"  flags: {', '.join(chunk.check['flags'])}" if chunk.check["flags"] else "  ok"
            takes = f"  {chunk.takes} takes" if chunk.takes > 1 else ""
            takes += f"  unread: {escape(', '.join(chunk.unread))}" if chunk.unread else ""
            state = "  (done before)" if chunk.resumed else ""
            bar.console.print(
                f"chunk {chunk.index + 1}/{total}{scores}{takes}{state}  "
                f"{escape(chunk.text[:60])}{'...' if len(chunk.text) > 60 else ''}",
                highlight=False,
            )

        narration = run_narration(
            engine, text, speaker, out, check, retakes, seed, whisper_model if check else None, on_chunk=done
        )
    retaken = sum(1 for c in narration.chunks if c.takes > 1)
    console.print(
        f"wrote {narration.out} ({narration.seconds:.1f} s, {len(narration.chunks)} chunks, "
        f"{retaken} retaken); report: {narration.report_path}"
    )
    if narration.unread:
        console.print(
            f"[yellow]{len(narration.unread)} chunks hold numbers left in digits, read digit by digit or "
            f"skipped: chunks {', '.join(str(c.index + 1) for c in narration.unread)} "
            f"({escape(', '.join(d for c in narration.unread for d in c.unread))}); write them as words[/]"
        )
    if narration.failed:
        console.print(
            f"[yellow]{len(narration.failed)} chunks still fail the check after {retakes + 1} takes: "
            f"{', '.join(str(c.index + 1) for c in narration.failed)} (their best take is used; see the report)[/]"
        )
