"""Fixtures of the studio tests: three espeak-ng recordings, as a person would upload them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicetune.demo.corpus import HARVARD_SENTENCES

RECORDINGS = {  # file -> sentences spoken in it, with pauses between them
    "morning.wav": HARVARD_SENTENCES[0:3],
    "kitchen.wav": HARVARD_SENTENCES[3:6],
    "garden.wav": HARVARD_SENTENCES[6:9],
}


def speak_recording(path: Path, sentences: list[str], pause_seconds: float = 0.8) -> Path:
    """Sentences spoken by espeak-ng into one 22.05 kHz wav, a pause after each."""
    import soundfile as sf

    from voicetune.data.files import write_wav_pcm16
    from voicetune.demo.corpus import speak_to_wav

    parts = []
    for number, sentence in enumerate(sentences):
        piece = speak_to_wav(sentence, path.with_name(f".{path.stem}_{number}.wav"))
        audio, rate = sf.read(piece, dtype="float32")
        piece.unlink()
        parts += [np.zeros(int(0.3 * rate), np.float32), audio, np.zeros(int(pause_seconds * rate), np.float32)]
    write_wav_pcm16(path, np.concatenate(parts), rate)
    return path


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> list[Path]:
    """The three recordings, each with the .txt transcript `prepare --transcriber none` reads."""
    folder = tmp_path_factory.mktemp("recordings")
    paths = []
    for name, sentences in RECORDINGS.items():
        path = speak_recording(folder / name, list(sentences))
        path.with_suffix(".txt").write_text(" ".join(sentences) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
