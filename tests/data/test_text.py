"""Transcript normalization: NFC, white space, numbers as words (English, Portuguese, Spanish,
French, Italian, Russian)."""

from __future__ import annotations

import unicodedata

import pytest

from voicetune.data.text import clean_text, normalize_transcript, spell_out_numbers, unread_digits


def test_clean_text_is_nfc_on_one_line_without_the_csv_separator():
    decomposed = unicodedata.normalize("NFD", "  Olá,\n  coração |  ok ")
    assert clean_text(decomposed) == unicodedata.normalize("NFC", "Olá, coração ok")


@pytest.mark.parametrize(
    "text,language,expected",
    [
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
        (
            "el 1.º de mayo, el 3er piso, la 21.ª edición",
            "es",
            "el primero de mayo, el tercer piso, la vigésima primera edición",
        ),
        ("el 1ro de enero y la 2da vez", "es", "el primero de enero y la segunda vez"),
        (
            "Son 21 personas, hay 1 perro y el 21 de marzo",
            "es",
            "Son veintiuna personas, hay un perro y el veintiuno de marzo",
        ),
        (
            "Nació en 1999 y vive con 10.000 vecinos",
            "es",
            "Nació en mil novecientos noventa y nueve y vive con diez mil vecinos",
        ),
        (
            "J'ai 21 chats et 1 500,5 euros, soit 25 % de plus",
            "fr",
            "J'ai vingt et un chats et mille cinq cents virgule cinq euros, soit vingt-cinq pour cent de plus",
        ),
        (
            "Pi vaut 3,14 et non 2,05 ; 1\u202f000\u00a0000 d'habitants",
            "fr",
            "Pi vaut trois virgule quatorze et non deux virgule zéro cinq ; un million d'habitants",
        ),
        (
            "le 1er mai, la 1re fois, le 2e jour, la 2nde guerre, le 3ème étage",
            "fr",
            "le premier mai, la première fois, le deuxième jour, la seconde guerre, le troisième étage",
        ),
        ("Il 1° maggio, la 2ª volta, il 3º piano", "it", "Il primo maggio, la seconda volta, il terzo piano"),
        (
            "Costa 1.500 euro, pi vale 3,14 e lo sconto è del 25%",
            "it",
            "Costa millecinquecento euro, pi vale tre virgola quattordici e lo sconto è del venticinque per cento",
        ),
        ("У меня 16 котов и 2 500 рублей", "ru", "У меня шестнадцать котов и две тысячи пятьсот рублей"),
        (
            "1-й этаж, 2-я попытка, 3-е место, до 5-го числа",
            "ru",
            "первый этаж, вторая попытка, третье место, до пятого числа",
        ),
        (
            "21% и 3% и 12% и 2,5%",
            "ru",
            "двадцать один процент и три процента и двенадцать процентов и две целых пять десятых процента",
        ),
    ],
)
def test_numbers_become_words(text, language, expected):
    spelled, left_digits = spell_out_numbers(text, language)
    assert spelled == expected
    assert not left_digits


def test_what_cannot_be_spelled_is_kept_and_flagged():
    assert spell_out_numbers("at 10:30 on v1.2.3", "en") == ("at 10:30 on v1.2.3", True)
    assert spell_out_numbers("42", "xx") == ("42", True)


def test_unread_digits_are_the_numbers_a_normalized_text_still_holds():
    """What `prepare` flags as digits_left, and what a voice would not read as words."""
    assert unread_digits("at 10:30:15 on v1.2.3, H.323 and 7") == ["10:30:15", "1.2.3", "323", "7"]
    assert unread_digits(normalize_transcript("A las 10:30 pagué 5 €", "es", True)[1]) == []
    assert normalize_transcript("at 10:30:15", "en", True)[2] == ["digits_left"]


def test_normalize_transcript_fills_normalized_text_only_when_asked():
    assert normalize_transcript(" I ate 2 eggs ", "en", False) == ("I ate 2 eggs", "I ate 2 eggs", [])
    assert normalize_transcript(" I ate 2 eggs ", "en", True) == ("I ate 2 eggs", "I ate two eggs", [])


@pytest.mark.parametrize(
    "language,left",
    [
        # 3D, and 28.8 written the English way in a French text; 28Kilobit, H.323: not numbers said as such.
        ("fr", {"confbridge-binaural-off", "confbridge-binaural-on", "demo-instruct"}),
        ("it", {"demo-instruct", "spy-h323"}),
    ],
)
def test_the_real_prompts_index_texts_have_their_numbers_spelled(language, left):
    """Every text of the Asterisk index with digits (the menus: "appuyez sur 1", "premere 0") has
    them as words, but for the few that are no number a speaker says as such."""
    from real_speech import read_index

    with_digits = {name: text for name, text in read_index(language).items() if any(c.isdigit() for c in text)}
    assert len(with_digits) > 50
    assert {name for name, text in with_digits.items() if spell_out_numbers(text, language)[1]} == left
    assert spell_out_numbers(read_index("fr")["dictate/forhelp"], "fr")[0] == "pour l'aide, appuyez sur zéro."
    assert spell_out_numbers(read_index("it")["dictate/forhelp"], "it")[0] == "premere zero per l'aiuto"
