"""Word and character error rates of a transcription against the text that was meant.

Both sides are normalized the same way before they are compared: `data.text.clean_text` (NFC, one
line of single spaces), abbreviations, dates, money and numbers spelled out in the language
(`data.text.spell_out`, so "2" and "two", "$5" and "five dollars", "Dr." and "Doctor" match), lower case, punctuation removed. What remains is what a listener could tell
apart; what only a writer could (commas, capitals, "2" or "two") is not counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from voicetune.data.text import clean_text, spell_out

# Letters and digits of every script, and the apostrophe inside words ("it's"); the rest is a gap.
_NOT_WORD = re.compile(r"[^\w']+|_", re.UNICODE)


def words_for_scoring(text: str, language: str | None = "en") -> list[str]:
    """The words of `text` as error rates compare them."""
    text = clean_text(text)
    text, _ = spell_out(text, language or "en")
    text = unicodedata.normalize("NFKC", text).casefold().replace("-", " ")
    return [word.strip("'") for word in _NOT_WORD.sub(" ", text).split() if word.strip("'")]


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions, each costing 1)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_item in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class ErrorRates:
    """Edits and lengths of one comparison; rates are edits / reference length."""

    word_edits: int
    words: int
    char_edits: int
    chars: int

    @property
    def wer(self) -> float:
        return _rate(self.word_edits, self.words)

    @property
    def cer(self) -> float:
        return _rate(self.char_edits, self.chars)

    def __add__(self, other: ErrorRates) -> ErrorRates:
        return ErrorRates(
            self.word_edits + other.word_edits,
            self.words + other.words,
            self.char_edits + other.char_edits,
            self.chars + other.chars,
        )


def _rate(edits: int, length: int) -> float:
    if length == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / length


def error_rates(reference: str, hypothesis: str, language: str | None = "en") -> ErrorRates:
    """Word and character edits of `hypothesis` (what was heard) against `reference` (what was meant).

    Characters are compared over the normalized words joined by single spaces."""
    ref_words, hyp_words = words_for_scoring(reference, language), words_for_scoring(hypothesis, language)
    ref_chars, hyp_chars = " ".join(ref_words), " ".join(hyp_words)
    return ErrorRates(
        edit_distance(ref_words, hyp_words), len(ref_words), edit_distance(ref_chars, hyp_chars), len(ref_chars)
    )
