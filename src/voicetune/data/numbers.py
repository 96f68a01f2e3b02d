"""Reading a written number: which num2words language a whisper code is, digits parsed with the
language's separators, a cardinal in the gender of the noun it counts, and the Russian noun form
that agrees with a number.

`data.text` (numbers spelled out) and `data.written` (dates, sums of money, abbreviations) both
read numbers through here.
"""

from __future__ import annotations

import re

# num2words' name for each language code whisper uses, where they differ. Portuguese defaults to
# Brazilian spelling (dezesseis, not dezasseis): most Portuguese speakers are Brazilian.
NUM2WORDS_LANGUAGE = {"pt": "pt_BR", "no": "no", "nb": "no", "nn": "no"}

# Languages that write the decimal point as a point and group thousands with commas.
POINT_DECIMAL_LANGUAGES = {"en", "ja", "ko", "he", "th", "zh"}


def base_language(language: str | None) -> str:
    """'pt_BR' -> 'pt', 'zh-cn' -> 'zh', None -> ''."""
    return re.split(r"[_-]", language or "")[0].lower()


def number_language(language: str | None) -> str | None:
    """The num2words language for a whisper language code, or None where num2words has none."""
    if not language:
        return None
    from num2words import CONVERTER_CLASSES

    code = NUM2WORDS_LANGUAGE.get(language, language)
    return code if code in CONVERTER_CLASSES else None


def parse_number(digits: str, language: str) -> int | float | None:
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


def number_words(value: int | float, language: str) -> str:
    """num2words' cardinal, as a speaker says it: Spanish "un"/"veintiún" before "mil" and the
    millions (num2words writes "veintiuno mil"), Portuguese without the comma num2words puts after
    "mil" ("mil duzentos e cinquenta")."""
    from num2words import num2words

    base = base_language(language)
    words = num2words(value, lang=number_language(language) or "en")
    if base == "es":
        words = re.sub(r"uno(?= (?:mil|millones|billones)\b)", "un", words).replace("veintiun ", "veintiún ")
    elif base == "pt":
        words = words.replace(", ", " ")
    return words


def cardinal(value: int, language: str, gender: str = "m") -> str:
    """A whole number in words as it stands before a noun of `gender` ('m', 'f', or Russian 'n'):
    'un dólar', 'una libra', 'duas libras', 'vingt et une livres', 'ein Euro', 'одна копейка'."""
    from num2words import num2words

    base = base_language(language)
    feminine = gender == "f"
    if base == "ru":
        return num2words(value, lang=number_language(language) or "ru", gender=gender)
    words = number_words(value, language)
    if base in ("es", "it"):
        if feminine and base == "es":
            words = re.sub(r"ientos\b", "ientas", re.sub(r"uno$", "una", words))  # veintiuna, doscientas
        elif feminine:
            words = re.sub(r"^uno$", "una", words)  # una sterlina, ventuno sterline
        else:
            words = re.sub(r"uno$", "un", words).replace("veintiun", "veintiún")
    elif base == "pt" and feminine:
        words = re.sub(r"\bum\b(?= mil\b|$)", "uma", re.sub(r"\bdois\b(?= mil\b|$)", "duas", words))  # duas mil
        words = re.sub(r"entos\b", "entas", words)
    elif base == "fr" and feminine:
        words = re.sub(r"\bun$", "une", words)
    elif base == "de":
        words = re.sub(r"eins$", "eine" if feminine else "ein", words)
    return words


def russian_form(value: int | float, one: str, few: str, many: str) -> str:
    """The Russian noun form that agrees with `value`: 1 процент, 2 процента, 5 процентов; a
    fraction governs the genitive singular (2,5 процента)."""
    if isinstance(value, float):
        return few
    if value % 10 == 1 and value % 100 != 11:
        return one
    if 2 <= value % 10 <= 4 and not 12 <= value % 100 <= 14:
        return few
    return many
