"""Transcript text normalization: unicode NFC, one line of single spaces, numbers spelled out.

`text` keeps what was said as the transcriber wrote it (cleaned); `normalized_text` is what a TTS
model reads, with numbers as words when asked (`--numbers-to-words`). Number formats follow the
language: `1,500.5` in English, `1.500,5` in Portuguese, Spanish and most other languages.

Spanish is read the way its speakers say it: decimals after "coma" as a number ("3,14": tres coma
catorce), ordinals written 1.º, 1º, 1er, 1ro, 2da, and "uno", "primero" and "tercero" shortened
before the word they count ("21 personas": veintiún personas, "1er piso": primer piso).
"""

from __future__ import annotations

import re
import unicodedata

# num2words' name for each language code whisper uses, where they differ. Portuguese defaults to
# Brazilian spelling (dezesseis, not dezasseis): most Portuguese speakers are Brazilian.
NUM2WORDS_LANGUAGE = {"pt": "pt_BR", "no": "no", "nb": "no", "nn": "no"}

PERCENT_WORD = {
    "en": "percent", "pt": "por cento", "es": "por ciento", "fr": "pour cent", "it": "per cento",
    "de": "Prozent", "nl": "procent",
}

# Languages that write the decimal point as a point and group thousands with commas.
POINT_DECIMAL_LANGUAGES = {"en", "ja", "ko", "he", "th", "zh"}

# Spanish ordinal marks: masculine, feminine, and the shortened masculine (1er: primer).
SPANISH_MASCULINE = ("º", ".º", "o", "ro", "do", "to", "vo", "no", "mo")
SPANISH_FEMININE = ("ª", ".ª", "a", "ra", "da", "ta", "va", "na", "ma")
ORDINAL_MARKS = {"st", "nd", "rd", "th", "º", "ª", ".º", ".ª", "er", *SPANISH_MASCULINE, *SPANISH_FEMININE}
# Words after which a Spanish "uno", "primero" or "tercero" keeps its full form: it counts no noun.
SPANISH_NOT_A_NOUN = {"de", "del", "y", "e", "o", "u", "en", "a", "al", "que", "por", "para", "con", "es", "son"}

_NUMBER = re.compile(
    r"(?<![\w:.,])(\d(?:[\d.,]*\d)?)"  # digits, possibly with separators inside (not the tail of 1.2.3)
    r"(%|\.?º|\.?ª|st|nd|rd|th|er|[rdtvnm]?[oa])?"  # percent or an ordinal mark (English or Spanish)
    r"(?![\w:])",  # times (10:30) are left alone, and flagged
    re.UNICODE,
)


def clean_text(text: str) -> str:
    """NFC, every run of white space (newlines included) as one space, no '|' (the CSV separator)."""
    text = unicodedata.normalize("NFC", text).replace("|", " ")
    return " ".join(text.split())


def number_language(language: str | None) -> str | None:
    """The num2words language for a whisper language code, or None where num2words has none."""
    if not language:
        return None
    from num2words import CONVERTER_CLASSES

    code = NUM2WORDS_LANGUAGE.get(language, language)
    return code if code in CONVERTER_CLASSES else None


def _parse_number(digits: str, language: str) -> int | float | None:
    """'1,500.5' (en) or '1.500,5' (pt) -> 1500.5; None when the separators make no sense."""
    thousands, decimal = (",", ".") if language in POINT_DECIMAL_LANGUAGES else (".", ",")
    if re.fullmatch(r"\d+", digits):
        return int(digits)
    grouped = rf"\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+"
    match = re.fullmatch(rf"({grouped}|\d+)(?:{re.escape(decimal)}(\d+))?", digits)
    if not match:
        return None
    whole = int(match.group(1).replace(thousands, ""))
    if match.group(2) is None:
        return whole
    return float(f"{whole}.{match.group(2)}")


def spell_out_numbers(text: str, language: str | None) -> tuple[str, bool]:
    """Numbers as words in `language`; returns (text, whether digits were left as they were)."""
    code = number_language(language)
    base = (language or "").split("_")[0]
    if code is None:
        return text, bool(re.search(r"\d", text))
    from num2words import num2words

    left_digits = False

    def replace(match: re.Match) -> str:
        nonlocal left_digits
        digits, mark = match.group(1), match.group(2) or ""
        value = _parse_number(digits, base)
        spanish_mark = mark in {*SPANISH_MASCULINE, *SPANISH_FEMININE, "er"} - {"º", "ª", ".º", ".ª"}
        if value is None or (spanish_mark and base != "es") or (mark in ("st", "nd", "rd", "th") and base != "en"):
            left_digits = True
            return match.group(0)
        counts_a_noun = base == "es" and _next_word_is_counted(match.string[match.end():])
        try:
            if mark in ORDINAL_MARKS and isinstance(value, int):
                words = num2words(value, lang=code, to="ordinal")
                if mark in SPANISH_FEMININE and words.endswith("o"):  # Portuguese/Spanish feminine ordinal
                    words = " ".join(w[:-1] + "a" if w.endswith("o") else w for w in words.split())
                elif base == "es" and (mark == "er" or counts_a_noun):
                    words = re.sub(r"\b(primer|tercer)o$", r"\1", words)
                return words
            if base == "es" and isinstance(value, float):
                words = _spanish_decimal(digits, code)
            else:
                words = num2words(value, lang=code)
            if counts_a_noun and not mark:
                words = re.sub(r"uno$", "un", words).replace("veintiun", "veintiún")
            if base == "en" and isinstance(value, int) and 1100 <= value <= 2099 and digits.isdigit() and not mark:
                words = num2words(value, lang=code, to="year")  # "1999" is said as a year
            if mark == "%":
                words += " " + PERCENT_WORD.get(base, "%")
            elif mark:
                words += mark
            return words
        except (NotImplementedError, OverflowError, ValueError, TypeError):
            left_digits = True
            return match.group(0)

    spelled = _NUMBER.sub(replace, text)
    return spelled, left_digits or bool(re.search(r"\d", spelled))


def _next_word_is_counted(rest: str) -> bool:
    """Whether the text after a Spanish number starts with the word it counts (a noun, or an
    adjective before one), not a preposition or the end of a phrase."""
    word = re.match(r"\s+([^\W\d_]+)", rest)
    return word is not None and word.group(1).lower() not in SPANISH_NOT_A_NOUN


def _spanish_decimal(digits: str, code: str) -> str:
    """'3,14' -> 'tres coma catorce', '2,05' -> 'dos coma cero cinco': the decimals as a number,
    after their leading zeros (how Spanish speakers read them)."""
    from num2words import num2words

    whole, decimals = digits.rsplit(",", 1)
    zeros = len(decimals) - len(decimals.lstrip("0"))
    words = [num2words(int(whole.replace(".", "")), lang=code), "coma", *["cero"] * zeros]
    if decimals.lstrip("0"):
        words.append(num2words(int(decimals), lang=code))
    return " ".join(words)


def normalize_transcript(text: str, language: str | None, numbers_to_words: bool) -> tuple[str, str, list[str]]:
    """(text, normalized_text, flags) for one clip's transcript."""
    cleaned = clean_text(text)
    flags: list[str] = []
    normalized = cleaned
    if numbers_to_words:
        normalized, left_digits = spell_out_numbers(cleaned, language)
        normalized = clean_text(normalized)
        if left_digits:
            flags.append("digits_left")
    return cleaned, normalized, flags
