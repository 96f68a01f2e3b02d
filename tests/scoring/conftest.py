"""Fixtures of the scoring tests: real espeak-ng speech in two clearly different voices, and the
scorers (loaded once per session, as a process would)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.harness import whisper_model_path

# Two voices the GE2E encoder tells apart: a low male and a high female espeak-ng voice.
# (espeak-ng's male variants sound alike to it: cosine 0.85-0.92, as high as one voice's clips.)
VOICE_A = ("en-us", 30)
VOICE_B = ("en-us+f2", 75)


def speak(text: str, folder: Path, name: str, voice: tuple[str, int] = VOICE_A) -> np.ndarray:
    """`text` spoken by espeak-ng, as float32 mono at 16 kHz."""
    import soundfile as sf

    from voicetune.demo.corpus import speak_to_wav
    from voicetune.scoring import to_scoring_rate

    path = speak_to_wav(text, folder / f"{name}.wav", voice=voice[0], pitch=voice[1])
    audio, rate = sf.read(path, dtype="float32")
    return to_scoring_rate(audio, rate)


@pytest.fixture(scope="session")
def scorers():
    from voicetune.scoring import get_scorers

    path = whisper_model_path()
    if not (path / "model.bin").is_file():
        pytest.fail(f"the whisper-base model is not at {path}: put it there or set VOICETUNE_WHISPER_MODEL")
    return get_scorers(str(path))


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scoring_speech")


@pytest.fixture(scope="session")
def f5_corpus(tmp_path_factory) -> Path:
    """14 espeak-ng clips at 22.05 kHz in LJSpeech layout; the last 2 held out (metadata_val.csv)."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    corpus = write_ljspeech_corpus(tmp_path_factory.mktemp("f5_corpus"), n_items=14, sample_rate=22050)
    rows = (corpus / "metadata.csv").read_text().splitlines()
    (corpus / "metadata_train.csv").write_text("\n".join(rows[:-2]) + "\n")
    (corpus / "metadata_val.csv").write_text("\n".join(rows[-2:]) + "\n")
    return corpus


def f5_train_args(corpus: Path, run: Path, max_updates: int, save_every: int, *extra: str) -> list:
    """f5-tiny with small frame batches (an update in about a second on 2 cores)."""
    return [
        "train",
        "--data",
        corpus,
        "--run",
        run,
        "--model",
        "f5-tiny",
        "--max-updates",
        str(max_updates),
        "--save-every",
        str(save_every),
        "--last-every",
        str(save_every),
        "--batch-frames",
        "700",
        "--workers",
        "1",
        "--set",
        "max_sample_prompts=0",
        *extra,
    ]


def scoring_env(**extra: str) -> dict[str, str]:
    """Milestone scoring on (the harness turns it off elsewhere), with the shared whisper model."""
    import os

    return {**os.environ, "VOICETUNE_EVALUATE": "true", "VOICETUNE_WHISPER_MODEL": str(whisper_model_path()), **extra}
