"""Did a take say its text, all of it and nothing more? The check of synthesized speech by ear.

Text-to-speech models fail in three ways a listener notices and a loss does not: wrong or missing
words, a tail of babble after the last word (an autoregressive model's hallucinated endings), and an ending cut off
mid-word. Given a take (16 kHz), its text, and whisper's transcript with timed words:

    wer                      the transcript's word error rate against the text is above `max_wer`
    too_long / too_short     its speech lasts far longer / shorter than the voice's speaking rate
                             predicts for the text (characters per second of the reference clip)
    speech_after_last_word   sound that whisper heard no word in continues after the last word
    last_word_cut            the text's last word is not the last one heard, and the audio stops
                             while that word is still sounding

Used by `voicetune narrate` (a take that fails is retaken with another seed) and `voicetune eval`
(each clip's `flags`). Model-agnostic: it reads audio and text only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voicetune.scoring.measures import SCORING_RATE
from voicetune.scoring.text import error_rates, words_for_scoring

MAX_WER = 0.3
LONG_FACTOR, SHORT_FACTOR = 1.7, 0.5  # speech this many times the predicted duration is wrong
SLACK_SECONDS = 0.6  # short texts: a pause or a breath is not a hallucination
TAIL_SECONDS = 0.5  # sound past the last heard word that counts as speech nobody asked for
CUT_SECONDS = 0.12  # the last word ends this close to the end of the audio: it may be cut
FRAME_SECONDS = 0.02


@dataclass
class TakeCheck:
    """What the check found in one take; `flags` empty means it passed."""

    wer: float | None
    seconds: float  # the voiced part: first to last frame with sound
    expected_seconds: float | None
    transcript: str
    flags: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.flags

    def to_json(self) -> dict:
        return {
            "wer": None if self.wer is None else round(self.wer, 4),
            "seconds": round(self.seconds, 3),
            "expected_seconds": None if self.expected_seconds is None else round(self.expected_seconds, 3),
            "transcript": self.transcript,
            "flags": list(self.flags),
        }


def spoken_characters(text: str) -> int:
    """Letters and digits: what takes time to say (punctuation and spaces are pauses, not counted)."""
    return sum(c.isalnum() for c in text)


def voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Whether each 20 ms frame of 16 kHz audio holds sound: RMS above a tenth of the loud frames'
    level (the 95th percentile) and above -60 dBFS."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    size = int(FRAME_SECONDS * SCORING_RATE)
    count = len(audio) // size
    if count == 0:
        return np.zeros(0, bool)
    rms = np.sqrt(np.mean(audio[: count * size].reshape(count, size) ** 2, axis=1))
    return rms > max(0.1 * float(np.percentile(rms, 95)), 1e-3)


def voiced_span(audio: np.ndarray) -> tuple[float, float]:
    """(start, end) in seconds of the sound in 16 kHz audio; (0, 0) for silence."""
    voiced = np.flatnonzero(voiced_frames(audio))
    if not len(voiced):
        return 0.0, 0.0
    return voiced[0] * FRAME_SECONDS, (voiced[-1] + 1) * FRAME_SECONDS


def speaking_rate(audio: np.ndarray, text: str) -> float | None:
    """Characters per second of speech in a reference clip (16 kHz) of `text`."""
    start, end = voiced_span(audio)
    return spoken_characters(text) / (end - start) if end > start and spoken_characters(text) else None


def check_take(
    audio: np.ndarray,
    text: str,
    transcript,
    language: str | None = "en",
    chars_per_second: float | None = None,
    max_wer: float = MAX_WER,
) -> TakeCheck:
    """Check a 16 kHz take of `text` against whisper's `transcript` of it (words timed from the
    take's start; `Intelligibility.transcripts`). See the module docstring for the flags."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    heard = transcript.text if transcript is not None else ""
    wer = error_rates(text, heard, language).wer if transcript is not None else None
    start, end = voiced_span(audio)
    expected = spoken_characters(text) / chars_per_second if chars_per_second else None
    check = TakeCheck(wer, end - start, expected, heard)
    if wer is not None and wer > max_wer:
        check.flags.append("wer")
    if expected is not None:
        if check.seconds > expected * LONG_FACTOR + SLACK_SECONDS:
            check.flags.append("too_long")
        elif check.seconds < expected * SHORT_FACTOR - SLACK_SECONDS / 2:
            check.flags.append("too_short")
    words = list(getattr(transcript, "words", None) or [])
    if words:
        voiced = voiced_frames(audio)
        after = int(np.ceil(words[-1].end / FRAME_SECONDS))
        if voiced[after:].sum() * FRAME_SECONDS > TAIL_SECONDS:
            check.flags.append("speech_after_last_word")
        meant, said = words_for_scoring(text, language), words_for_scoring(heard, language)
        sounding_at_end = len(voiced) > 0 and voiced[-1]
        if (
            meant
            and (not said or said[-1] != meant[-1])
            and (len(audio) / SCORING_RATE - words[-1].end < CUT_SECONDS or sounding_at_end)
        ):
            check.flags.append("last_word_cut")
    return check
