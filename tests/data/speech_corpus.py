"""Real speech for the data tests: espeak-ng recordings with known pauses and word positions,
written in the formats people bring (mp3, flac, 8 kHz and 48 kHz wav, stereo, opus, mp4 video),
plus the bad files they bring too (corrupt, silent, too short, not audio)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voicetune.demo.recordings import Recording, RunOn, Sentence, build_recording, pause_free_sentences, talk_plan
from voicetune.scoring.text import edit_distance, words_for_scoring


@dataclass
class CorpusFile:
    path: Path
    recording: Recording | None  # None for the bad files


def _sentences(first: int, count: int) -> str:
    sentences = pause_free_sentences()
    return " ".join(sentences[(first + i) % len(sentences)] for i in range(count))


def run_on(first: int, count: int, pause_after: float = 1.0, word_gap: float = 0.04) -> RunOn:
    """Sentences spoken as one stretch of words with no pause a detector would hear."""
    text = re.sub(r"[.']", "", _sentences(first, count))
    return RunOn(text, pause_after, word_gap)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _write(recording: Recording, path: Path, rate: int, channels: int = 1, subtype: str = "PCM_16") -> None:
    audio = (
        soxr.resample(recording.samples, recording.sample_rate, rate)
        if rate != recording.sample_rate
        else recording.samples
    )
    if channels == 2:  # a quieter right channel: mixing must average, not pick one side
        audio = np.stack([audio, 0.5 * audio], axis=1)
    sf.write(path, audio, rate, subtype=subtype)


def _encode(recording: Recording, path: Path, *codec_args: str, video: bool = False) -> None:
    """Encode through ffmpeg from a temporary 22.05 kHz wav."""
    source = path.with_suffix(".src.wav")
    sf.write(source, recording.samples, recording.sample_rate, subtype="PCM_16")
    inputs = ["-i", str(source)]
    if video:  # a small moving test picture, so that the file is a real video with an audio track
        inputs = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={recording.duration:.2f}", *inputs]
        codec_args = ("-c:v", "mpeg4", "-shortest", *codec_args)
    _ffmpeg(*inputs, *codec_args, str(path))
    source.unlink()


def build_corpus(folder: Path, cache: Path) -> dict[str, CorpusFile]:
    """Write the test corpus into `folder` (a sub-folder included) and say what each file holds."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "phone").mkdir(exist_ok=True)
    files: dict[str, CorpusFile] = {}

    def build(plan):
        return build_recording(plan, cache_dir=cache)

    talk = build(talk_plan(14, [0.35, 0.8, 1.6, 0.5, 2.5, 0.3, 1.0]))
    _encode(talk, folder / "talk.mp3", "-ac", "2", "-ar", "44100", "-b:a", "128k")
    files["talk.mp3"] = CorpusFile(folder / "talk.mp3", talk)

    long_run = build([*talk_plan(2, [0.6], first=14), run_on(16, 9), *talk_plan(3, [0.5, 1.2], first=25)])
    _write(long_run, folder / "run_on.flac", 48000)
    files["run_on.flac"] = CorpusFile(folder / "run_on.flac", long_run)

    phone = build(talk_plan(9, [0.4, 1.2, 0.7], first=5))
    _write(phone, folder / "phone" / "call.wav", 8000)
    files["phone/call.wav"] = CorpusFile(folder / "phone" / "call.wav", phone)

    studio = build(talk_plan(8, [0.5, 0.9, 1.4], first=20))
    _write(studio, folder / "studio.wav", 48000, channels=2, subtype="PCM_24")
    files["studio.wav"] = CorpusFile(folder / "studio.wav", studio)

    video = build(talk_plan(6, [0.6, 1.1], first=10))
    _encode(video, folder / "interview.mp4", "-c:a", "aac", "-b:a", "96k", "-ar", "44100", video=True)
    files["interview.mp4"] = CorpusFile(folder / "interview.mp4", video)

    note = build(talk_plan(5, [0.8, 0.45], first=2))
    _encode(note, folder / "note.opus", "-c:a", "libopus", "-b:a", "48k")
    files["note.opus"] = CorpusFile(folder / "note.opus", note)

    short = build([Sentence(pause_free_sentences()[3], 0.3)])
    _write(short, folder / "short.wav", 22050)
    files["short.wav"] = CorpusFile(folder / "short.wav", None)

    sf.write(folder / "silence.wav", np.zeros(8 * 16000, np.float32), 16000)
    files["silence.wav"] = CorpusFile(folder / "silence.wav", None)
    rng = np.random.default_rng(7)
    (folder / "corrupt.mp3").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["corrupt.mp3"] = CorpusFile(folder / "corrupt.mp3", None)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a picture")
    files["cover.jpg"] = CorpusFile(folder / "cover.jpg", None)
    (folder / "talk.txt").write_text("notes about the talk, not a transcript of another file\n")
    return files


def words_for_wer(text: str) -> list[str]:
    """Lower case, numbers as words, no punctuation: what word error rate compares."""
    return words_for_scoring(text, "en")


word_edits = edit_distance  # Levenshtein distance over words


def require_tools() -> None:
    for tool in ("espeak-ng", "ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is needed by the data tests: run `make install`")
