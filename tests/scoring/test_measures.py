"""The three measures on real speech: similarity, WER/CER, DNSMOS; a scorer that cannot load."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import VOICE_A, VOICE_B, speak
from voicetune.demo.corpus import HARVARD_SENTENCES
from voicetune.scoring import Scorers, Summary, composite_score, error_rates, summarize, words_for_scoring

TEXTS = [" ".join(HARVARD_SENTENCES[i : i + 2]) for i in (0, 4, 8)]


def test_text_is_normalized_alike_on_both_sides():
    assert words_for_scoring("It took 2 tries, didn't it?") == ["it", "took", "two", "tries", "didn't", "it"]
    assert error_rates("It took 2 tries.", "it took two tries").wer == 0.0
    rates = error_rates("the birch canoe slid", "the perch canoe")
    assert (rates.word_edits, rates.words) == (2, 4)  # one substitution, one deletion
    assert rates.cer == pytest.approx(rates.char_edits / len("the birch canoe slid"))


def test_similarity_ranks_one_voice_above_two_voices(scorers, speech_dir):
    # Four different sentences: what the voices say cannot make two clips alike.
    a1 = speak(TEXTS[0], speech_dir, "sim_a1", VOICE_A)
    a2 = speak(TEXTS[1], speech_dir, "sim_a2", VOICE_A)
    b1 = speak(TEXTS[2], speech_dir, "sim_b1", VOICE_B)
    b2 = speak(HARVARD_SENTENCES[20], speech_dir, "sim_b2", VOICE_B)
    e = scorers.embed([a1, a2, b1, b2])
    same_a, same_b = float(e[0] @ e[1]), float(e[2] @ e[3])
    across = [float(e[i] @ e[j]) for i in (0, 1) for j in (2, 3)]
    print(f"\none voice: {same_a:.3f} {same_b:.3f}; two voices: {np.round(across, 3)}")
    assert min(same_a, same_b) > max(across)


def test_wer_is_low_on_clean_speech_and_high_on_reversed(scorers, speech_dir):
    clean = [speak(text, speech_dir, f"wer_{i}") for i, text in enumerate(TEXTS)]
    reversed_ = [clip[::-1].copy() for clip in clean]
    scores = scorers.score(clean + reversed_, TEXTS + TEXTS, "en")
    clean_summary, reversed_summary = summarize(scores[:3]), summarize(scores[3:])
    print(
        f"\nclean WER {clean_summary.wer:.3f} CER {clean_summary.cer:.3f}; "
        f"reversed WER {reversed_summary.wer:.3f} CER {reversed_summary.cer:.3f}"
    )
    # whisper-base hears espeak-ng at about 0.2-0.3 WER; reversed speech has no words in it.
    assert clean_summary.wer <= 0.45 and clean_summary.cer <= 0.25
    assert reversed_summary.wer >= 0.8 and reversed_summary.cer >= 0.5


def test_dnsmos_drops_when_noise_is_added(scorers, speech_dir):
    clean = speak(TEXTS[0], speech_dir, "mos_clean")
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) / 10 ** (5 / 20)  # 5 dB SNR
    clean_mos, noisy_mos = scorers.quality.mos([clean, np.clip(clean + noise, -1, 1)])
    print(f"\nDNSMOS clean {clean_mos:.2f}, noisy {noisy_mos:.2f}")
    assert clean_mos - noisy_mos >= 0.7


def test_a_scorer_that_cannot_load_is_a_note_not_a_crash(tmp_path, speech_dir):
    notes = []
    scorers = Scorers(str(tmp_path / "no-such-model"), note=notes.append)
    clip = speak(TEXTS[0], speech_dir, "note_clip")
    (score,) = scorers.score([clip], [TEXTS[0]], "en")
    assert score.wer is None and score.cer is None and score.dnsmos is not None
    scorers.score([clip], [TEXTS[0]], "en")
    assert len(notes) == 1 and notes[0].startswith("WER/CER not measured:") and "--whisper-model" in notes[0]


@pytest.mark.parametrize(
    "measured, expected",
    [
        (Summary(wer=0.1, similarity=0.9, dnsmos=3.0), 1.0),  # the real voice's own numbers
        (Summary(wer=1.0, similarity=0.5, dnsmos=1.0), 0.0),  # nothing of it
        (Summary(wer=0.55, similarity=0.7, dnsmos=2.0), 0.5),  # half way on each part
        (Summary(wer=0.0, similarity=0.95, dnsmos=4.0), 1.0),  # better than real counts as real
        (Summary(wer=0.55), 0.5),  # measures that were not taken are left out
    ],
)
def test_composite_score_is_relative_to_the_ceiling(measured, expected):
    ceiling = Summary(wer=0.1, similarity=0.9, dnsmos=3.0)
    assert composite_score(measured, ceiling) == pytest.approx(expected)
    assert composite_score(Summary(), ceiling) is None
