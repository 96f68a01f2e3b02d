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
        ("en", "Version 2.0.1 at 10:30:15"),  # no date, time or sum: left (and flagged digits_left)
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


# The classes of issue 28, language by language: a number after a noun that names (número 1) or
# before a noun it counts (in the noun's gender), n° with the degree sign, times, sums with a scale
# word, percentages, ordinals and decimal commas.


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Marque el número 1 si desea", "Marque el número uno si desea"),
        ("Marque 1 si desea, marque 1 ahora", "Marque uno si desea, marque uno ahora"),
        ("la página 1 tiene 1 foto", "la página uno tiene una foto"),
        ("Hay 1 perro, 1 casa y 1 opción", "Hay un perro, una casa y una opción"),
        ("21 casas, 200 personas, 1 sola vez", "veintiuna casas, doscientas personas, una sola vez"),
        ("21.000 personas y 1 día", "veintiún mil personas y un día"),
        ("la n° 7 y la n.° 1", "la número siete y la número uno"),
        ("A las 10:30, a la 1:05 y a las 21:00 h", "A las diez y media, a la una y cinco y a las veintiuna horas"),
        ("a las 10:30 horas", "a las diez treinta horas"),
        ("$2.5 million", "dos coma cinco millones de dólares"),
        (
            "$2,5 millones, $1 million y $5 mil",
            "dos coma cinco millones de dólares, un millón de dólares y cinco mil dólares",
        ),
        ("€3 billion", "tres mil millones de euros"),
        ("El 25 %, el 1% y el 2,5%", "El veinticinco por ciento, el uno por ciento y el dos coma cinco por ciento"),
        ("el 1.º, la 2ª y el 3.er piso", "el primero, la segunda y el tercer piso"),
        (
            "El 5 de marzo de 2024 pagué 1.250,50 €",
            "El cinco de marzo de dos mil veinticuatro pagué mil doscientos cincuenta euros con cincuenta céntimos",
        ),
        ("mide 1.250,50 metros", "mide mil doscientos cincuenta coma cincuenta metros"),
    ],
)
def test_spanish_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "es") == expected


@pytest.mark.parametrize("language", ["es", "fr", "it", "ru"])
def test_the_real_prompts_hold_no_written_form_and_come_through_unchanged(language):
    """The Asterisk prompts' texts (menus, "marque 1 para...") have numbers but no date, time,
    sum, unit or abbreviation: `expand_written_forms` leaves every one as it was."""
    from real_speech import read_index

    from voicetune.data.written import expand_written_forms

    texts = read_index(language)
    assert len(texts) > 400
    assert [name for name, text in texts.items() if expand_written_forms(text, language) != text] == []


def test_a_number_a_menu_asks_to_press_is_read_on_its_own():
    """ "Marque 1 si desea..." is "marque uno" (it counts nothing), not "marque un si desea"."""
    from real_speech import read_index

    options = spoken(read_index("es")["priv-callee-options"], "es")
    assert options.startswith("Marque uno si desea que esta persona se comunique con usted")
    assert spoken(read_index("it")["silence/1"], "it") == "(un secondo di silenzio)"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Digite o número 1 agora", "Digite o número um agora"),
        ("Marque 1 para falar, 2 agora", "Marque um para falar, dois agora"),
        ("1 livro, 1 casa, 2 casas e 2 livros", "um livro, uma casa, duas casas e dois livros"),
        ("200 pessoas, 32.000 pessoas, 1 vez", "duzentas pessoas, trinta e duas mil pessoas, uma vez"),
        ("1 opção e 1 guarda-chuva", "uma opção e um guarda-chuva"),
        ("a n° 7 e o n.º 1", "a número sete e o número um"),
        ("às 10h30, à 1h15, às 10:00 e às 10h", "às dez e meia, à uma e quinze, às dez horas e às dez horas"),
        ("$2.5 million", "dois vírgula cinco milhões de dólares"),
        ("R$ 1,5 milhão e € 3 billion", "um vírgula cinco milhão de reais e três bilhões de euros"),
        ("25%, 1% e 2,5 %", "vinte e cinco por cento, um por cento e dois vírgula cinco por cento"),
        ("1.º lugar, 1.ª vez, 2ª feira", "primeiro lugar, primeira vez, segunda feira"),
        ("1.250,50 metros", "mil duzentos e cinquenta vírgula cinquenta metros"),
        ("Paguei R$ 1.250,50", "Paguei mil duzentos e cinquenta reais e cinquenta centavos"),
    ],
)
def test_portuguese_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "pt") == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Appuyez sur 1 pour, le numéro 1 est libre", "Appuyez sur un pour, le numéro un est libre"),
        ("1 maison, 21 maisons, 1 photo, 1 homme", "une maison, vingt et une maisons, une photo, un homme"),
        ("au n° 7 à 10h30, à 1h05, à 10:00", "au numéro sept à dix heures trente, à une heure cinq, à dix heures"),
        ("$2.5 million et 3 milliards €", "deux virgule cinq millions de dollars et trois milliards d'euros"),
        ("1,5 million €", "un virgule cinq million d'euros"),
        ("25 %, 1 %, le 1er et la 1re", "vingt-cinq pour cent, un pour cent, le premier et la première"),
        ("1 250,50 mètres", "mille deux cent cinquante virgule cinquante mètres"),
    ],
)
def test_french_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "fr") == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Premere 1 per, il numero 1 è libero", "Premere uno per, il numero uno è libero"),
        ("1 secondo, 1 casa, 1 studente, 1 idea", "un secondo, una casa, uno studente, un'idea"),
        (
            "al n° 7 alle 10:30, all'1:15, alle 10:00",
            "al numero sette alle dieci e mezza, all'una e quindici, alle dieci",
        ),
        ("$2.5 million e € 1 milione", "due virgola cinque milioni di dollari e un milione di euro"),
        ("25%, 1%, il 1º e la 2ª", "venticinque per cento, uno per cento, il primo e la seconda"),
        ("1.250,50 metri", "milleduecentocinquanta virgola cinquanta metri"),
    ],
)
def test_italian_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "it") == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Drücken Sie 1 für, Seite 1 hat 1 Bild", "Drücken Sie eins für, Seite eins hat ein Bild"),
        ("1 Haus, 1 Katze, 1 Stunde, 1 Name", "ein Haus, eine Katze, eine Stunde, ein Name"),
        ("in 1 Woche, mit 1 Hund, um 1 Uhr", "in einer Woche, mit einem Hund, um ein Uhr"),
        ("um 10:30 Uhr, um 1:05 und 10.30 Uhr", "um zehn Uhr dreißig, um ein Uhr fünf und zehn Uhr dreißig"),
        (
            "$2.5 million, 1 Million $ und 3 Milliarden €",
            "zwei Komma fünf Millionen Dollar, eine Million Dollar und drei Milliarden Euro",
        ),
        ("25 %, 1 % und 2,5 %", "fünfundzwanzig Prozent, ein Prozent und zwei Komma fünf Prozent"),
        ("der 2. Weltkrieg, am 3. Tag, zum 1. Mal", "der zweite Weltkrieg, am dritten Tag, zum ersten Mal"),
        ("Ich habe 3. Dann", "Ich habe drei. Dann"),
        ("1.250,50 Meter", "eintausendzweihundertfünfzig Komma fünf null Meter"),
    ],
)
def test_german_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "de") == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Нажмите 1 для связи, номер 1 свободен", "Нажмите один для связи, номер один свободен"),
        ("1 книга, 2 книги, 1 окно, 21 ночь", "одна книга, две книги, одно окно, двадцать одна ночь"),
        ("1 день, 2 дня, 2 мужчины", "один день, два дня, два мужчины"),
        ("в 10:30, в 1:05, в 21:00", "в десять тридцать, в час ноль пять, в двадцать один ноль-ноль"),
        ("$2.5 million и 3 млрд ₽", "две целых пять десятых миллиона долларов и три миллиарда рублей"),
        ("25%, 1% и 2,5%", "двадцать пять процентов, один процент и две целых пять десятых процента"),
        ("1-й этаж, 2-я попытка", "первый этаж, вторая попытка"),
    ],
)
def test_russian_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "ru") == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("at 10:30, 10:05 and 10:00 a.m.", "at ten thirty, ten oh five and ten A M."),
        ("at 10:00, not 10:30:15", "at ten o'clock, not 10:30:15"),
        (
            "$2.5 million, €3 billion and $5 thousand",
            "two point five million dollars, three billion euros and five thousand dollars",
        ),
        ("25%, the 1st and No. 1", "twenty-five percent, the first and number one"),
        ("1,250.50 meters", "one thousand, two hundred and fifty point five zero meters"),
    ],
)
def test_english_is_read_as_its_speakers_say_it(text, expected):
    assert spoken(text, "en") == expected
