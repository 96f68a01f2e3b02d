"""`voicetune fetch`: download the audio of URLs (yt-dlp's Python API) into a folder prepare reads.

Audio only where the site offers it separately ("bestaudio"), otherwise the whole file, whose audio
track prepare reads; the original container is kept unless `--audio-format` asks ffmpeg to
extract to m4a, mp3, opus, flac or wav. A download archive in the folder makes a rerun skip what
is already there, and yt-dlp resumes a half-downloaded file (`.part`, which prepare ignores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from voicetune.errors import UsageError

AUDIO_FORMATS = ("original", "m4a", "mp3", "opus", "flac", "wav")
ARCHIVE = ".fetch-archive.txt"
LOG = ".fetch.jsonl"


@dataclass
class FetchedItem:
    url: str
    status: str  # downloaded | already_fetched | failed
    files: list[str] = field(default_factory=list)
    title: str | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass
class FetchResult:
    out_dir: Path
    items: list[FetchedItem]

    @property
    def ok(self) -> bool:
        return all(item.status != "failed" for item in self.items)


class _QuietLogger:
    """yt-dlp's messages go to our log; errors are kept to report them per URL."""

    def __init__(self):
        self.errors: list[str] = []

    def debug(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        import logging

        logging.getLogger("voicetune.fetch").warning(message)

    def error(self, message: str) -> None:
        self.errors.append(message)


def _clean_error(message: str) -> str:
    message = message.strip()
    return message[len("ERROR: ") :] if message.startswith("ERROR: ") else message


def fetch_audio(urls: list[str], out_dir: Path, audio_format: str = "original") -> FetchResult:
    """Download the audio of every URL into `out_dir`; a failed URL does not stop the others."""
    import yt_dlp

    if audio_format not in AUDIO_FORMATS:
        raise UsageError(f"--audio-format {audio_format}: use one of {', '.join(AUDIO_FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    logger = _QuietLogger()
    options = {
        "format": "bestaudio/best",
        "outtmpl": {"default": str(out / "%(title).80B [%(id)s].%(ext)s")},
        "windowsfilenames": True,
        "download_archive": str(out / ARCHIVE),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": logger,
        "retries": 3,
        "socket_timeout": 30,
        "postprocessors": []
        if audio_format == "original"
        else [{"key": "FFmpegExtractAudio", "preferredcodec": audio_format}],
    }
    items = []
    with yt_dlp.YoutubeDL(options) as downloader:
        for url in urls:
            logger.errors.clear()
            try:
                info = downloader.extract_info(url, download=True)
            except yt_dlp.utils.DownloadError as err:
                items.append(FetchedItem(url, "failed", error=_clean_error(str(err))))
                continue
            except Exception as err:  # noqa: BLE001 - a yt-dlp bug or a network failure it did not wrap
                items.append(FetchedItem(url, "failed", error=f"{type(err).__name__}: {err}"))
                continue
            items.append(_item_from_info(url, info, logger.errors))
    with open(out / LOG, "a", encoding="utf-8") as log:
        for item in items:
            log.write(json.dumps(item.__dict__, ensure_ascii=False) + "\n")
    return FetchResult(out, items)


def _item_from_info(url: str, info: dict | None, errors: list[str]) -> FetchedItem:
    if info is None:
        return FetchedItem(url, "failed", error=_clean_error(errors[-1]) if errors else "nothing to download")
    entries = info.get("entries")
    infos = [e for e in entries if e] if entries is not None else [info]
    paths = [d["filepath"] for i in infos for d in (i.get("requested_downloads") or []) if d.get("filepath")]
    seconds = sum(float(i.get("duration") or 0) for i in infos) or None
    status = "downloaded" if paths else "already_fetched"
    return FetchedItem(url, status, paths, info.get("title"), seconds)


def print_fetch_summary(result: FetchResult) -> None:
    from rich.markup import escape

    from voicetune.console import console, error_console

    for item in result.items:
        if item.status == "failed":
            error_console.print(f"[red]failed[/] {escape(item.url)}: {escape(item.error or '')}", highlight=False)
        elif item.status == "already_fetched":
            console.print(f"already fetched: {item.url}", highlight=False, markup=False)
        else:
            length = f" ({item.seconds:.0f} s)" if item.seconds else ""
            for path in item.files:
                console.print(f"fetched {item.url}{length} -> {path}", highlight=False, markup=False)
    done = sum(1 for item in result.items if item.status != "failed")
    console.print(
        f"{done} of {len(result.items)} URLs in {result.out_dir}; next: voicetune prepare {result.out_dir} --out DATASET",
        highlight=False,
        markup=False,
    )
