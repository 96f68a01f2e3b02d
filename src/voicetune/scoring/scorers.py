"""`Scorers`: the three measures loaded once per process, and scores of batches of clips.

A measure whose model cannot load (no whisper model offline, a package missing) is left out: its
numbers are None, and one line says why, once. Scoring never stops training or a command.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicetune.scoring.measures import (
    SCORING_RATE,
    Intelligibility,
    Quality,
    SpeakerSimilarity,
    centroid,
    cosine,
    torch_threads,
)
from voicetune.scoring.text import ErrorRates, error_rates

log = logging.getLogger("voicetune.scoring")

Note = Callable[[str], None]


@dataclass
class ClipScore:
    """The measures of one clip; None where a measure was not taken."""

    wer: float | None = None
    cer: float | None = None
    similarity: float | None = None
    dnsmos: float | None = None
    transcript: str | None = None
    rates: ErrorRates | None = None
    heard: Any = None  # whisper's Transcript, words timed from the clip's start (`scoring.checks` reads it)


def to_scoring_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz (soxr, deterministic)."""
    import soxr

    audio = np.asarray(audio, np.float32).reshape(-1)
    if sample_rate != SCORING_RATE:
        audio = soxr.resample(audio, sample_rate, SCORING_RATE).astype(np.float32)
    return np.ascontiguousarray(audio)


def _default_note(message: str) -> None:
    from voicetune.console import error_console

    error_console.print(f"note: {message}", highlight=False, markup=False)


class Scorers:
    """Intelligibility, speaker similarity and quality, each loaded on first use."""

    def __init__(self, whisper_model: str | None, note: Note | None = None):
        self.whisper_model = whisper_model
        self.note = note or _default_note
        self._loaded: dict[str, object | None] = {}
        self._lock = threading.Lock()

    def _load(self, name: str, build: Callable[[], object], what: str, fix: str):
        with self._lock:
            if name not in self._loaded:
                try:
                    with torch_threads():  # loading whisper would change the caller's torch threads
                        self._loaded[name] = build()
                except Exception as err:
                    log.debug("cannot load %s", name, exc_info=True)
                    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                    self.note(f"{what} not measured: {reason[:300]}; {fix}")
                    self._loaded[name] = None
            return self._loaded[name]

    @property
    def intelligibility(self) -> Intelligibility | None:
        if not self.whisper_model:
            return self._load("intelligibility", _no_whisper_model, "WER/CER", "pass --whisper-model")
        model = self.whisper_model
        return self._load(
            "intelligibility",
            lambda: Intelligibility(model),
            "WER/CER",
            "pass --whisper-model NAME_OR_FOLDER (or set VOICETUNE_WHISPER_MODEL)",
        )

    @property
    def similarity(self) -> SpeakerSimilarity | None:
        return self._load(
            "similarity",
            SpeakerSimilarity,
            "speaker similarity",
            "install resemblyzer and webrtcvad-wheels (`make install`)",
        )

    @property
    def quality(self) -> Quality | None:
        return self._load("quality", Quality, "DNSMOS", "install speechmos and onnxruntime (`make install`)")

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray | None:
        """Speaker embeddings of 16 kHz clips, or None without the encoder."""
        encoder = self.similarity
        if encoder is None or not len(clips):
            return None
        with torch_threads():
            return encoder.embed(clips)

    def score(
        self,
        clips: Sequence[np.ndarray],
        texts: Sequence[str] | None = None,
        language: str | None = "en",
        speaker: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
    ) -> list[ClipScore]:
        """Score 16 kHz clips: error rates against `texts` (when given), cosine similarity of each
        clip to the `speaker` embedding (when given), DNSMOS. `embeddings` of the clips may be
        passed when already computed."""
        scores = [ClipScore() for _ in clips]
        if not clips:
            return scores
        with torch_threads():  # the caller keeps its torch thread count (see torch_threads)
            self._score(scores, clips, texts, language, speaker, embeddings)
        return scores

    def _score(
        self,
        scores: list[ClipScore],
        clips: Sequence[np.ndarray],
        texts: Sequence[str] | None,
        language: str | None,
        speaker: np.ndarray | None,
        embeddings: np.ndarray | None,
    ) -> None:
        if texts is not None:
            asr = self.intelligibility
            if asr is not None:
                for score, text, heard in zip(scores, texts, asr.transcripts(clips, language)):
                    rate = error_rates(text, heard.text, language)
                    score.rates, score.transcript, score.wer, score.cer = rate, heard.text, rate.wer, rate.cer
                    score.heard = heard
        if speaker is not None:
            if embeddings is None:
                embeddings = self.embed(clips)
            if embeddings is not None:
                for score, value in zip(scores, cosine(embeddings, speaker)):
                    score.similarity = float(value)
        quality = self.quality
        if quality is not None:
            for score, value in zip(scores, quality.mos(clips)):
                score.dnsmos = value


def _no_whisper_model():
    raise ValueError("no whisper model given")


_cache: dict[str, Scorers] = {}
_cache_lock = threading.Lock()


def get_scorers(whisper_model: str | None, note: Note | None = None) -> Scorers:
    """The process's `Scorers` for this whisper model: models are loaded once and kept."""
    with _cache_lock:
        key = whisper_model or ""
        if key not in _cache:
            _cache[key] = Scorers(whisper_model, note)
        elif note is not None:
            _cache[key].note = note
        return _cache[key]


__all__ = ["ClipScore", "Scorers", "centroid", "cosine", "get_scorers", "to_scoring_rate"]
