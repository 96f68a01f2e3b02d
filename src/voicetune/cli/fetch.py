"""`voicetune fetch`: download the audio of web pages or media URLs into a folder prepare reads."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import app


@app.command()
def fetch(
    urls: list[str] = typer.Argument(..., metavar="URL...", help="pages or direct media URLs (anything yt-dlp reads)"),
    out: Path = typer.Option(..., "--out", help="folder for the audio files"),
    audio_format: str = typer.Option("original", help="original (keep the container) or m4a, mp3, opus, flac, wav"),
) -> None:
    """Download audio only (yt-dlp), ready for `voicetune prepare`."""
    from voicetune.data.fetch import fetch_audio, print_fetch_summary

    result = fetch_audio(urls, out, audio_format)
    print_fetch_summary(result)
    raise typer.Exit(0 if result.ok else 1)
