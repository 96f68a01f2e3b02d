"""Written forms read aloud before numbers are spelled out: abbreviations, dates, sums of money and
units, in English, Spanish, Portuguese, French, Italian, German and Russian (`data.written`), as
`prepare --numbers-to-words`, the synthesis engine and scoring see them."""

from __future__ import annotations

import pytest

from voicetune.data.text import normalize_transcript
from voicetune.scoring.text import error_rates


def spoken(text: str, language: str) -> str:
    return normalize_transcript(text, language, numbers_to_words=True)[1]


@pytest.mark.parametrize(
    "language,text,expected",
    [
        ("en", "Dr. Smith met Mrs. Jones.", "Doctor Smith met Missus Jones."),
        (
            "en",
            "I live in St. Louis, on Main St. Then I moved.",
            "I live in Saint Louis, on Main Street. Then I moved.",
        ),
        ("en", "Eggs, milk, etc. Then bread, e.g. rye.", "Eggs, milk, et cetera. Then bread, for example rye."),
        ("en", "See No. 7 on p. 12 at 10 a.m.", "See number seven on page twelve at ten A M."),
        (
            "es",
            "La Sra. Pérez y el Dr. Gil, p. ej. en la pág. 5, etc.",
            "La señora Pérez y el doctor Gil, por ejemplo en la página cinco, etcétera.",
        ),
        (
            "pt",
            "O Sr. Silva e a Dra. Lima, p. ex. no nº 5.",
            "O senhor Silva e a doutora Lima, por exemplo no número cinco.",
        ),
        (
            "fr",
            "M. Dupont et Mme Curie, c.-à-d. au n° 3, etc.",
            "Monsieur Dupont et madame Curie, c'est-à-dire au numéro trois, et cetera.",
        ),
        (
            "it",
            "Il Dott. Rossi e la Sig.ra Bianchi, ad es. al n. 4, ecc.",
            "Il dottor Rossi e la signora Bianchi, ad esempio al numero quattro, eccetera.",
        ),
        (
            "de",
            "Dr. Müller kommt z. B. aus Nr. 5, d.h. von hier usw.",
            "Doktor Müller kommt zum Beispiel aus Nummer fünf, das heißt von hier und so weiter.",
        ),
        ("ru", "Г-н Иванов, т. е. дом № 5, и т. д.", "Господин Иванов, то есть дом номер пять, и так далее."),
    ],
)
def test_common_abbreviations_are_read_as_words(language, text, expected):
    assert spoken(text, language) == expected


@pytest.mark.parametrize(
    "language,text,expected",
    [
        ("en", "on 2024-03-05", "on March fifth, twenty twenty-four"),
        (
            "en",
            "on 12/25/2024 and 25/12/2024",
            "on December twenty-fifth, twenty twenty-four and December twenty-fifth, twenty twenty-four",
        ),
        ("en", "March 5, 1999 and the 5th of March", "March fifth, nineteen ninety-nine and the fifth of March"),
        ("en", "born 5 March 2001", "born the fifth of March two thousand and one"),
        ("es", "el 05/03/2024 y el 1 de mayo", "el cinco de marzo de dos mil veinticuatro y el primero de mayo"),
        ("pt", "em 01/05/2024", "em primeiro de maio de dois mil e vinte e quatro"),
        (
            "fr",
            "le 1 mars 2024 et le 14/07/1789",
            "le premier mars deux mille vingt-quatre et le quatorze juillet mille sept cent quatre-vingt-neuf",
        ),
        ("it", "il 1 maggio e il 25.12.2024", "il primo maggio e il venticinque dicembre duemilaventiquattro"),
        (
            "de",
            "Am 5. März 1999 und der 3. Oktober",
            "Am fünften März neunzehnhundertneunundneunzig und der dritte Oktober",
        ),
        ("ru", "5 марта 2024 года", "пятое марта две тысячи двадцать четвёртого года"),
        (
            "ru",
            "до 5 марта, к 8 марта, в 2024 году, с 1999 г.",
            "до пятого марта, к восьмому марта, в две тысячи двадцать четвёртом году, с тысяча девятьсот девяносто девятого года",
        ),
    ],
)
def test_dates_are_read_as_speakers_of_the_language_say_them(language, text, expected):
    assert spoken(text, language) == expected


@pytest.mark.parametrize(
    "language,text,expected",
    [
        (
            "en",
            "It costs $5.50, £1 or €2.01.",
            "It costs five dollars and fifty cents, one pound or two euros and one cent.",
        ),
        ("en", "$0.99 and $5 million", "ninety-nine cents and five million dollars"),
        ("en", "1,250 USD", "one thousand, two hundred and fifty dollars"),
        (
            "es",
            "Cuesta 5,50 € o £1, £21, £200 y $1.000.000",
            "Cuesta cinco euros con cincuenta céntimos o una libra, veintiuna libras, doscientas libras y un millón de dólares",
        ),
        ("pt", "R$ 1,50 e £2", "um real e cinquenta centavos e duas libras"),
        ("fr", "1 500,50 € et 21 £", "mille cinq cents euros et cinquante centimes et vingt et une livres"),
        ("it", "1.000 € e £1", "mille euro e una sterlina"),
        ("de", "5,50 € und £1", "fünf Euro und fünfzig Cent und ein Pfund"),
        (
            "ru",
            "1 ₽, 22 ₽, 21 коп. и 5 млн руб.",
            "один рубль, двадцать два рубля, двадцать одна копейка и пять миллионов рублей",
        ),
    ],
)
def test_sums_of_money_are_read_with_their_currency_in_its_gender_and_number(language, text, expected):
    assert spoken(text, language) == expected


@pytest.mark.parametrize(
    "language,text,expected",
    [
        ("en", "1 km in 5 min at 20 °C", "one kilometer in five minutes at twenty degrees Celsius"),
        ("es", "21 km en 1 h a 40 km/h", "veintiún kilómetros en una hora a cuarenta kilómetros por hora"),
        ("fr", "2 h et 1,5 km", "deux heures et un virgule cinq kilomètre"),
        ("de", "1 kg und 2 h", "ein Kilogramm und zwei Stunden"),
        ("ru", "2 км, 1 мин, 5 кг, 3 тыс. шагов", "два километра, одна минута, пять килограммов, три тысячи шагов"),
    ],
)
def test_units_after_a_number_agree_with_it(language, text, expected):
    assert spoken(text, language) == expected


@pytest.mark.parametrize(
    "language,text",
    [
        ("en", "You may 5 times, but Mr smith and the Dr. who."),  # "may" the verb; no capital after
        ("en", "He said no. 5 people came."),  # "no." ends a sentence: not "number"
        ("en", "Version 2.0.1 at 10:30"),  # left for spell_out_numbers (and its digits_left flag)
        ("es", "Tengo gatos y perros"),
        ("de", "Er kommt, z. B."),  # an abbreviation at the end: its words, no period of its own
        ("xx", "Dr. Who paid $5 on 2024-03-05"),  # a language this module does not know: as written
    ],
)
def test_text_that_is_not_a_written_form_is_left_as_it_was(language, text):
    from voicetune.data.text import spell_out_numbers
    from voicetune.data.written import expand_written_forms

    expected = {"de": "Er kommt, zum Beispiel"}.get(language, text)
    assert expand_written_forms(text, language) == expected
    assert spell_out_numbers(expected, language)[0] == normalize_transcript(text, language, True)[1]


def test_scoring_hears_a_written_form_and_its_words_as_the_same():
    """Whisper writes "$5" and "Dr."; the text to say had "five dollars" and "Doctor"."""
    rates = error_rates("Doctor Smith paid five dollars on March fifth.", "Dr. Smith paid $5 on March 5.", "en")
    assert (rates.word_edits, rates.char_edits) == (0, 0)
    rates = error_rates("La señora Pérez pagó cinco euros.", "La Sra. Pérez pagó 5 €.", "es")
    assert (rates.word_edits, rates.char_edits) == (0, 0)
