"""Long espeak-ng recordings whose every pause and word position is known, for tests and benches.

A recording is built from a plan: sentences spoken whole, each followed by a pause of a chosen
length, and "run-on" stretches where single words follow each other with only a few
milliseconds between them (no pause a voice activity detector would see), so that a segmenter has
to cut running speech. The result says where each sentence and each run-on word lies, which is
what a test needs to check that no cut falls inside a word.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicetune import fsio
from voicetune.demo.corpus import HARVARD_SENTENCES, speak_to_wav

ESPEAK_RATE = 22050


@dataclass(frozen=True)
class Sentence:
    """Speak `text` whole, then stay silent for `pause_after` seconds."""

    text: str
    pause_after: float = 0.6


@dataclass(frozen=True)
class RunOn:
    """Speak `text` word by word with `word_gap` seconds between words, then pause."""

    text: str
    pause_after: float = 0.6
    word_gap: float = 0.03


@dataclass
class SpokenStretch:
    """Where a sentence or a run-on word lies in the recording, in seconds."""

    text: str
    start: float
    end: float
    is_word: bool


@dataclass
class Recording:
    samples: np.ndarray  # float32 mono at `sample_rate`
    sample_rate: int
    stretches: list[SpokenStretch] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.stretches)

    def no_cut_zones(self) -> list[tuple[float, float]]:
        """Intervals that a clip boundary must not fall in: every sentence and every run-on word."""
        return [(s.start, s.end) for s in self.stretches]

    def text_between(self, start: float, end: float) -> str:
        """What is said in [start, end): stretches whose middle lies inside."""
        return " ".join(s.text for s in self.stretches if start <= (s.start + s.end) / 2 < end)


def _trimmed_speech(text: str, voice: str, cache: Path) -> np.ndarray:
    """espeak-ng's rendering of `text` without its leading and trailing silence (cached)."""
    import soundfile as sf

    key = hashlib.sha256(f"{voice}|{text}".encode()).hexdigest()[:16]
    wav = cache / f"{key}.wav"
    if not wav.exists():
        with fsio.atomic_path(wav) as tmp:
            speak_to_wav(text, tmp, voice=voice)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == ESPEAK_RATE, rate
    loud = np.flatnonzero(np.abs(audio) > 2e-3)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


def build_recording(
    plan: list[Sentence | RunOn], voice: str = "en-us", lead_in: float = 0.5, cache_dir: Path | None = None
) -> Recording:
    """Speak `plan` into one 22.05 kHz mono recording and note where everything is."""
    cache = Path(cache_dir or Path(tempfile.gettempdir()) / "voicetune-espeak-cache")
    cache.mkdir(parents=True, exist_ok=True)
    parts: list[np.ndarray] = [np.zeros(int(lead_in * ESPEAK_RATE), np.float32)]
    position = len(parts[0])
    stretches: list[SpokenStretch] = []

    def add(audio: np.ndarray) -> tuple[float, float]:
        nonlocal position
        parts.append(audio)
        start = position / ESPEAK_RATE
        position += len(audio)
        return start, position / ESPEAK_RATE

    def silence(seconds: float) -> None:
        add(np.zeros(int(round(seconds * ESPEAK_RATE)), np.float32))

    for item in plan:
        if isinstance(item, Sentence):
            start, end = add(_trimmed_speech(item.text, voice, cache))
            stretches.append(SpokenStretch(item.text, start, end, is_word=False))
        else:
            words = item.text.split()
            for index, word in enumerate(words):
                start, end = add(_trimmed_speech(word, voice, cache))
                stretches.append(SpokenStretch(word, start, end, is_word=True))
                if index < len(words) - 1:
                    silence(item.word_gap)
        silence(item.pause_after)
    return Recording(np.concatenate(parts), ESPEAK_RATE, stretches)


def pause_free_sentences() -> list[str]:
    """Harvard sentences that espeak-ng speaks without a pause inside (it pauses at commas and
    before "and"), so that the only pauses in a recording are the ones the plan puts there."""
    return [s for s in HARVARD_SENTENCES if "," not in s and " and " not in s]


def talk_plan(n_sentences: int, pauses: list[float], first: int = 0) -> list[Sentence]:
    """`n_sentences` comma-free sentences, pausing by turns for each length in `pauses`."""
    sentences = pause_free_sentences()
    return [Sentence(sentences[(first + i) % len(sentences)], pauses[i % len(pauses)]) for i in range(n_sentences)]
