"""Transcript normalization: NFC, white space, numbers as words (English and Portuguese)."""

from __future__ import annotations

import unicodedata

import pytest

from voicetune.data.text import clean_text, normalize_transcript, spell_out_numbers


def test_clean_text_is_nfc_on_one_line_without_the_csv_separator():
    decomposed = unicodedata.normalize("NFD", "  Olá,\n  coração |  ok ")
    assert clean_text(decomposed) == unicodedata.normalize("NFC", "Olá, coração ok")


@pytest.mark.parametrize("text,language,expected", [
    ("I have 3 cats.", "en", "I have three cats."),
    ("It cost 1,500.5 dollars", "en", "It cost one thousand, five hundred point five dollars"),
    ("Born in 1999, 50% done, 2nd place", "en", "Born in nineteen ninety-nine, fifty percent done, second place"),
    ("Tenho 16 gatos", "pt", "Tenho dezesseis gatos"),
    ("Custa 1.500,5 reais", "pt", "Custa mil e quinhentos vírgula cinco reais"),
    ("25% no 1º dia e na 2ª vez", "pt", "vinte e cinco por cento no primeiro dia e na segunda vez"),
])
def test_numbers_become_words(text, language, expected):
    spelled, left_digits = spell_out_numbers(text, language)
    assert spelled == expected
    assert not left_digits


def test_what_cannot_be_spelled_is_kept_and_flagged():
    assert spell_out_numbers("at 10:30 on v1.2.3", "en") == ("at 10:30 on v1.2.3", True)
    assert spell_out_numbers("42", "xx") == ("42", True)


def test_normalize_transcript_fills_normalized_text_only_when_asked():
    assert normalize_transcript(" I ate 2 eggs ", "en", False) == ("I ate 2 eggs", "I ate 2 eggs", [])
    assert normalize_transcript(" I ate 2 eggs ", "en", True) == ("I ate 2 eggs", "I ate two eggs", [])
