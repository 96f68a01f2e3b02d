"""Transcript normalization: NFC, white space, numbers as words (English, Portuguese, Spanish)."""

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
    ("Tengo 16 gatos", "es", "Tengo dieciséis gatos"),
    ("Cuesta 1.500,5 pesos", "es", "Cuesta mil quinientos coma cinco pesos"),
    ("Pi vale 3,14 y no 2,05", "es", "Pi vale tres coma catorce y no dos coma cero cinco"),
    ("El 25% el 1º día y la 2ª vez", "es", "El veinticinco por ciento el primer día y la segunda vez"),
    ("el 1.º de mayo, el 3er piso, la 21.ª edición", "es", "el primero de mayo, el tercer piso, la vigésima primera edición"),
    ("el 1ro de enero y la 2da vez", "es", "el primero de enero y la segunda vez"),
    ("Son 21 personas, hay 1 perro y el 21 de marzo", "es", "Son veintiún personas, hay un perro y el veintiuno de marzo"),
    ("Nació en 1999 y vive con 10.000 vecinos", "es", "Nació en mil novecientos noventa y nueve y vive con diez mil vecinos"),
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
