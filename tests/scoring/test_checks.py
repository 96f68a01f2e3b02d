"""The hallucination check on real speech: espeak-ng takes that are right, that go on after their
text, that stop mid-word, and that say other words."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.conftest import speak
from voicetune.scoring import SCORING_RATE
from voicetune.scoring.checks import check_take, speaking_rate

TEXT = "The juice of lemons makes fine punch."
REFERENCE = "Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def rate(speech_dir) -> float:
    """The voice's characters per second, from another sentence it says (as narrate takes it
    from the reference clip)."""
    return speaking_rate(speak(REFERENCE, speech_dir, "check_ref"), REFERENCE)


@pytest.fixture(scope="module")
def take(speech_dir) -> np.ndarray:
    return speak(TEXT, speech_dir, "check_take")


def checked(scorers, audio, text, rate):
    transcript = scorers.intelligibility.transcripts([audio], "en")[0]
    return check_take(audio, text, transcript, "en", rate), transcript


def test_a_right_take_passes(scorers, take, rate):
    check, _ = checked(scorers, take, TEXT, rate)
    assert check.flags == [], check.to_json()


def mumble(seconds: float) -> np.ndarray:
    """What XTTS says after a sentence when it hallucinates: voiced sound at the pace of
    syllables (4 a second) with no words in it (noise in the voice's band)."""
    import scipy.signal

    n = int(seconds * SCORING_RATE)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / SCORING_RATE)
    noise = np.random.default_rng(0).standard_normal(n) * 0.15 * envelope
    b, a = scipy.signal.butter(4, [200 / 8000, 1500 / 8000], "band")
    return scipy.signal.lfilter(b, a, noise).astype(np.float32)


def test_babble_after_the_text_is_caught(scorers, take, rate):
    check, _ = checked(scorers, np.concatenate([take, mumble(2.0)]), TEXT, rate)
    assert "too_long" in check.flags and "speech_after_last_word" in check.flags, check.to_json()


def test_a_last_word_cut_off_is_caught(scorers, take, rate):
    _, transcript = checked(scorers, take, TEXT, rate)
    last = transcript.words[-1]
    cut = take[: int((last.start + 0.35 * (last.end - last.start)) * SCORING_RATE)]
    check, _ = checked(scorers, cut, TEXT, rate)
    assert "last_word_cut" in check.flags, check.to_json()


def test_other_words_are_caught_by_wer(scorers, rate, speech_dir):
    other = speak("Four hours of steady work faced us.", speech_dir, "check_other")
    check, _ = checked(scorers, other, TEXT, rate)
    assert "wer" in check.flags and check.wer > 0.5
