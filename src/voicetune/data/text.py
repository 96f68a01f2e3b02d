"""Transcript text normalization: unicode NFC, one line of single spaces, numbers spelled out.

`text` keeps what was said as the transcriber wrote it (cleaned); `normalized_text` is what a TTS
model reads, with numbers as words when asked (`--numbers-to-words`), after the abbreviations,
dates, sums of money and units that `data.written` reads aloud. Number formats follow the
language: `1,500.5` in English, `1.500,5` in Portuguese, Spanish and most other languages.

Spanish is read the way its speakers say it: decimals after "coma" as a number ("3,14": tres coma
catorce; Portuguese likewise after "vírgula"), ordinals written 1.º, 1º, 1er, 3.er, 1ro, 2da, a
number in the gender of the noun it counts ("21 casas": veintiuna casas, `data.written.before_noun`,
in every language of `data.written`), and "primero" and "tercero" shortened before the word they
count ("1er piso": primer piso). English and German decimals are read digit by digit.

French, Italian and Russian likewise: decimals read as a number after "virgule"/"virgola" ("3,14":
trois virgule quatorze; Russian keeps num2words' "три целых четырнадцать сотых"); thousands
grouped with spaces in French and Russian ("1 500", also with a no-break space); "25 %" with its
space; ordinals 1er, 1re, 2e, 2ème, 2nd (French), 1º, 1°, 1ª (Italian, feminine in -a), 1-й, 2-я,
3-е, 5-го (Russian: gender and genitive from the ending); and the Russian word for percent agreeing
with its number (1 процент, 2 процента, 5 процентов, 2,5 процента).
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

from voicetune.data.numbers import base_language, cardinal, number_language, number_words, parse_number, russian_form
from voicetune.data.written import before_noun, counted_gender, expand_written_forms

PERCENT_WORD = {
    "en": "percent",
    "pt": "por cento",
    "es": "por ciento",
    "fr": "pour cent",
    "it": "per cento",
    "de": "Prozent",
    "nl": "procent",
}

# Languages that group thousands with a space ("1 500", or a no-break or narrow no-break space).
SPACE_GROUPING_LANGUAGES = {"fr", "ru", "uk", "pl", "cs", "sk", "sv", "fi", "no", "nb", "nn"}
_SPACE_GROUPED = re.compile(r"(?<![\d.,])(\d{1,3})((?:[ \u00a0\u202f]\d{3})+)(?![\d])")
# Decimals read as a number after the comma's word (and "zero" per leading zero of the decimals).
DECIMAL_WORDS = {
    "es": ("coma", "cero"),
    "pt": ("vírgula", "zero"),  # 1.250,50: mil duzentos e cinquenta vírgula cinquenta (num2words: cinco)
    "fr": ("virgule", "zéro"),
    "it": ("virgola", "zero"),
}
# Decimals read digit by digit after the point's word, each zero said (num2words drops a last zero).
DECIMAL_POINT_WORD = {"en": "point", "de": "Komma"}
# Ordinal marks of French (feminine: 1re, 1ère; 2nd, 2nde: second, seconde) and Italian (° as º).
FRENCH_ORDINAL = {
    "er": "m",
    "re": "f",
    "ère": "f",
    "e": "m",
    "è": "m",
    "ème": "m",
    "eme": "m",
    "nd": "second",
    "nde": "seconde",
}
ITALIAN_ORDINAL = {"º": "m", "°": "m", "o": "m", "ª": "f", "a": "f"}
# Russian ordinal endings after a hyphen: (gender, case) for num2words.
RUSSIAN_ORDINAL = {
    "й": ("m", "n"),
    "ый": ("m", "n"),
    "ий": ("m", "n"),
    "ой": ("m", "n"),
    "я": ("f", "n"),
    "ая": ("f", "n"),
    "е": ("n", "n"),
    "ое": ("n", "n"),
    "го": ("m", "g"),
    "ого": ("m", "g"),
}

# Spanish ordinal marks: masculine, feminine, and the shortened masculine (1er: primer).
SPANISH_MASCULINE = ("º", ".º", "o", "ro", "do", "to", "vo", "no", "mo")
SPANISH_FEMININE = ("ª", ".ª", "a", "ra", "da", "ta", "va", "na", "ma")
ORDINAL_MARKS = {"st", "nd", "rd", "th", "º", "ª", ".º", ".ª", "er", *SPANISH_MASCULINE, *SPANISH_FEMININE}

_NUMBER = re.compile(
    r"(?<![\w:.,])(\d(?:[\d.,]*\d)?)"  # digits, possibly with separators inside (not the tail of 1.2.3)
    r"([ \u00a0\u202f]?%|\.?º|\.?ª|°|st|nd|rd|th|\.?er|ère|ème|eme|nde|re|è|e|[rdtvnm]?[oa]"  # percent or an ordinal mark
    r"|-(?:ого|го|ый|ий|ой|ая|ое|й|я|е))?"  # (English, Spanish, French, Italian; Russian after a hyphen)
    r"(?![\w:])",  # times (10:30) are left alone, and flagged
    re.UNICODE,
)


def clean_text(text: str) -> str:
    """NFC, every run of white space (newlines included) as one space, no '|' (the CSV separator)."""
    text = unicodedata.normalize("NFC", text).replace("|", " ")
    return " ".join(text.split())


def unread_digits(text: str) -> list[str]:
    """The numbers a text made ready to be said still holds in digits ("v1.2.3", "10:30:15"): what
    a voice would read digit by digit, or not at all. `prepare` flags a clip that has any
    (`digits_left`)."""
    return re.findall(r"\d(?:[\d.,:]*\d)?", text)


def spell_out_numbers(text: str, language: str | None) -> tuple[str, bool]:
    """Numbers as words in `language`; returns (text, whether digits were left as they were)."""
    code = number_language(language)
    base = base_language(language)
    if code is None:
        return text, bool(unread_digits(text))
    if base in SPACE_GROUPING_LANGUAGES:
        text = _SPACE_GROUPED.sub(lambda m: m.group(1) + re.sub(r"[ \u00a0\u202f]", ".", m.group(2)), text)

    def replace(match: re.Match) -> str:
        digits, mark = match.group(1), match.group(2) or ""
        value = parse_number(digits, base)
        before, after = match.string[: match.start()], match.string[match.end() :]
        words = None if value is None else _number_words(value, digits, mark, base, code, before, after)
        return match.group(0) if words is None else words

    spelled = _NUMBER.sub(replace, text)
    if base == "it":  # una before a vowel is elided: un'idea
        spelled = re.sub(r"\bun' (?=[^\W\d_])", "un'", spelled)
    return spelled, bool(unread_digits(spelled))


def _number_words(
    value: int | float, digits: str, mark: str, base: str, code: str, before: str, rest: str
) -> str | None:
    """One number (and its mark) in words, or None where the mark does not belong to the language."""
    percent = mark.strip(" \u00a0\u202f") == "%"
    ordinal = _ordinal_words(value, mark, base, code, before, rest) if mark and not percent else None
    if ordinal is not None or (mark and not percent):
        return ordinal
    try:
        if base in DECIMAL_WORDS and isinstance(value, float):
            words = _decimal_words(digits, code, *DECIMAL_WORDS[base])
        elif base in DECIMAL_POINT_WORD and isinstance(value, float):  # 1.250,50: ... Komma fünf null
            decimals = digits.rsplit("," if base == "de" else ".", 1)[1]
            digit_words = " ".join(num2words(int(d), lang=code) for d in decimals)
            words = f"{number_words(int(value), code)} {DECIMAL_POINT_WORD[base]} {digit_words}"
        elif isinstance(value, int) and (percent and base == "de"):
            words = cardinal(value, code)  # ein Prozent
        else:
            counted = before_noun(value, before, rest, code) if isinstance(value, int) and not percent else None
            words = counted or number_words(value, code)
    except (NotImplementedError, OverflowError, ValueError, TypeError):
        return None
    if base == "en" and isinstance(value, int) and 1100 <= value <= 2099 and digits.isdigit() and not mark:
        words = num2words(value, lang=code, to="year")  # "1999" is said as a year
    if percent:
        words += " " + (_russian_percent(value) if base == "ru" else PERCENT_WORD.get(base, "%"))
    return words


def _ordinal_words(value: int | float, mark: str, base: str, code: str, before: str, rest: str) -> str | None:
    """An ordinal in words by the marks of its language, or None."""
    if not isinstance(value, int) or (mark == ".er" and base != "es"):  # Spanish 1.er, 3.er
        return None
    mark = mark.lstrip(".") if mark == ".er" else mark
    try:
        if base == "fr" and mark in FRENCH_ORDINAL:
            kind = FRENCH_ORDINAL[mark]
            if kind in ("second", "seconde"):
                return kind if value == 2 else None
            words = num2words(value, lang=code, to="ordinal")
            return "première" if value == 1 and kind == "f" else words
        if base == "it" and mark.lstrip(".") in ITALIAN_ORDINAL:
            words = num2words(value, lang=code, to="ordinal")
            return re.sub(r"o$", "a", words) if ITALIAN_ORDINAL[mark.lstrip(".")] == "f" else words
        if base == "ru" and mark.startswith("-") and mark[1:] in RUSSIAN_ORDINAL:
            gender, case = RUSSIAN_ORDINAL[mark[1:]]
            return num2words(value, lang=code, to="ordinal", gender=gender, case=case)
        spanish_mark = mark in {*SPANISH_MASCULINE, *SPANISH_FEMININE, "er"} - {"º", "ª", ".º", ".ª"}
        if (
            mark not in ORDINAL_MARKS
            or (spanish_mark and base != "es")
            or (mark in ("st", "nd", "rd", "th") and base != "en")
        ):
            return None
        words = num2words(value, lang=code, to="ordinal")
    except (NotImplementedError, OverflowError, ValueError, TypeError):
        return None
    if mark in SPANISH_FEMININE and words.endswith("o"):  # Portuguese/Spanish feminine ordinal
        words = " ".join(w[:-1] + "a" if w.endswith("o") else w for w in words.split())
    elif base == "es" and (mark == "er" or counted_gender(before, rest, 1, base) is not None):
        words = re.sub(r"\b(primer|tercer)o$", r"\1", words)
    return words


def _russian_percent(value: int | float) -> str:
    """процент, процента or процентов: the form that agrees with the number before it."""
    return russian_form(value, "процент", "процента", "процентов")


def _decimal_words(digits: str, code: str, comma: str, zero: str) -> str:
    """'3,14' -> 'tres coma catorce', '2,05' -> 'dos coma cero cinco': the decimals as a number,
    after their leading zeros (how Spanish, French and Italian speakers read them)."""
    whole, decimals = digits.rsplit(",", 1)
    zeros = len(decimals) - len(decimals.lstrip("0"))
    words = [number_words(int(whole.replace(".", "")), code), comma, *[zero] * zeros]
    if decimals.lstrip("0"):
        words.append(number_words(int(decimals), code))
    return " ".join(words)


def spell_out(text: str, language: str | None) -> tuple[str, bool]:
    """What a speaker of `language` says for `text`: abbreviations, dates, sums of money and units
    (`data.written`), then numbers, as words; returns (text, whether digits were left)."""
    return spell_out_numbers(expand_written_forms(text, language), language)


def normalize_transcript(text: str, language: str | None, numbers_to_words: bool) -> tuple[str, str, list[str]]:
    """(text, normalized_text, flags) for one clip's transcript."""
    cleaned = clean_text(text)
    flags: list[str] = []
    normalized = cleaned
    if numbers_to_words:
        normalized = clean_text(spell_out(cleaned, language)[0])
        if unread_digits(normalized):
            flags.append("digits_left")
    return cleaned, normalized, flags
