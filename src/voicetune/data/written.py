"""Written forms read aloud: abbreviations, dates, sums of money and units, in the text's language.

`expand_written_forms` runs before numbers are spelled out (`data.text.spell_out`), wherever a text
is made ready for a model or compared with what was heard: `prepare --numbers-to-words`, the
synthesis engine (so `serve`, `narrate` and `synthesize` read "$5" as the training text did) and the
error rates of scoring (so "Dr. Smith" heard matches "Doctor Smith" written). It writes what a
speaker of the language says:

- abbreviations: titles before a name ("Dr. Smith": Doctor Smith, "Sra. Pérez": señora Pérez, "Mme
  Curie": madame Curie), words before a number ("No. 5": number 5, "pág. 3": página 3, "№ 7":
  номер 7) and the rest ("e.g.", "p. ej.", "z. B.", "т. е."); one that ends a sentence ("etc.")
  keeps the sentence's period;
- dates: ISO (2024-03-05), day/month/year with slashes or dots (month/day in English, unless the
  first number cannot be a month), and a day before or after a month's name ("March 5": March
  fifth, "1 mars": premier mars, "5. März": fünfte März, "am 5. März": am fünften März, "5 марта
  2024 года": пятое марта две тысячи двадцать четвёртого года);
- money: a currency sign or code before or after the amount ($, US$, R$, €, £, ¥, ₽, USD, EUR, GBP,
  BRL, RUB, JPY, руб.), cents after the units and a scale word kept ("$5 million": five million
  dollars, "1 500,50 €": mille cinq cents euros et cinquante centimes), the number in the gender of
  the currency (una libra, duas libras, одна копейка). "$" is read as US dollars in every language;
- units after a number (km, m, cm, mm, kg, g, l, km/h, °C, h, min; Russian км, м, см, кг, г, л, ч,
  мин, тыс., млн, млрд), singular or plural as the number asks.

English, Spanish, Portuguese, French, Italian, German and Russian; a text in another language is
left as written (its numbers are still spelled out where num2words knows the language).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

from voicetune.data.numbers import base_language, cardinal, number_language, parse_number, russian_form

LANGUAGES = ("en", "es", "pt", "fr", "it", "de", "ru")

# A number as written: digits with separators inside, or thousands grouped by (no-break) spaces.
NUMBER = r"(?:\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:,\d+)?|\d(?:[\d.,]*\d)?)"


@dataclass(frozen=True)
class Noun:
    """A noun a number counts: its forms (singular, plural; Russian: 1, 2-4, 5+) and gender."""

    forms: tuple[str, ...]
    feminine: bool = False

    def agreeing(self, value: int | float, language: str) -> str:
        if language == "ru":
            return russian_form(value, *self.forms)
        singular = value < 2 if language == "fr" else value == 1
        return self.forms[0] if singular else self.forms[-1]


def noun(text: str) -> Noun:
    """'f:libra|libras' -> a feminine noun with those forms."""
    feminine = text.startswith("f:")
    return Noun(tuple(text.removeprefix("f:").split("|")), feminine)


def _word_before(text: str, start: int, lower: bool = True) -> str:
    """The last word before `start` (lower case unless asked), or ''."""
    words = re.findall(r"[^\W\d_]+", text[:start])
    word = words[-1] if words else ""
    return word.lower() if lower else word


# ---- abbreviations ----------------------------------------------------------------------------

# (written, spoken, where): "name" before a capitalized word, "after_name" after one, "number"
# before a digit, "end" anywhere (keeping a sentence's period where it ends one), "any" anywhere.
# Entries are tried in order.
ABBREVIATIONS: dict[str, list[tuple[str, str, str]]] = {
    "en": [
        *[(w, s, "name") for w, s in (("Mr.", "Mister"), ("Mrs.", "Missus"), ("Ms.", "Miz"), ("Dr.", "Doctor"))],
        *[(w, s, "name") for w, s in (("Prof.", "Professor"), ("Mt.", "Mount"), ("Ft.", "Fort"))],
        *[(w, s, "name") for w, s in (("Capt.", "Captain"), ("Gen.", "General"), ("Gov.", "Governor"))],
        *[(w, s, "name") for w, s in (("Sen.", "Senator"), ("Rev.", "Reverend"), ("Lt.", "Lieutenant"))],
        ("St.", "Street", "after_name"),  # "Main St.", after a name; else "St. Louis": Saint
        ("St.", "Saint", "name"),
        *[(w, s, "end") for w, s in (("Ave.", "Avenue"), ("Rd.", "Road"), ("Blvd.", "Boulevard"))],
        *[
            (w, s, "end")
            for w, s in (("Jr.", "Junior"), ("Sr.", "Senior"), ("etc.", "et cetera"), ("Inc.", "Incorporated"))
        ],
        *[(w, s, "end") for w, s in (("Ltd.", "Limited"), ("a.m.", "A M"), ("p.m.", "P M"))],
        *[(w, s, "any") for w, s in (("e.g.", "for example"), ("i.e.", "that is"), ("vs.", "versus"))],
        *[(w, s, "any") for w, s in (("approx.", "approximately"), ("Dept.", "Department"))],
        *[(w, s, "number") for w, s in (("No.", "number"), ("Nos.", "numbers"), ("#", "number"))],
        *[(w, s, "number") for w, s in (("pp.", "pages"), ("p.", "page"), ("vol.", "volume"), ("Vol.", "volume"))],
        *[
            (w, s, "number")
            for w, s in (("ch.", "chapter"), ("Ch.", "chapter"), ("Fig.", "figure"), ("fig.", "figure"))
        ],
        *[
            (w, s, "number")
            for w, s in (
                ("Jan.", "January"),
                ("Feb.", "February"),
                ("Mar.", "March"),
                ("Apr.", "April"),
                ("Jun.", "June"),
                ("Jul.", "July"),
                ("Aug.", "August"),
                ("Sept.", "September"),
                ("Sep.", "September"),
                ("Oct.", "October"),
                ("Nov.", "November"),
                ("Dec.", "December"),
            )
        ],
    ],
    "es": [
        *[
            (w, s, "name")
            for w, s in (("Sr.", "señor"), ("Sra.", "señora"), ("Srta.", "señorita"), ("Sres.", "señores"))
        ],
        *[
            (w, s, "name")
            for w, s in (("Dr.", "doctor"), ("Dra.", "doctora"), ("Lic.", "licenciado"), ("Ing.", "ingeniero"))
        ],
        *[
            (w, s, "name")
            for w, s in (("Prof.", "profesor"), ("Profa.", "profesora"), ("Dña.", "doña"), ("Sto.", "santo"))
        ],
        *[(w, s, "name") for w, s in (("Sta.", "santa"), ("Av.", "avenida"), ("Avda.", "avenida"))],
        *[
            (w, s, "end")
            for w, s in (("etc.", "etcétera"), ("EE. UU.", "Estados Unidos"), ("a. C.", "antes de Cristo"))
        ],
        *[(w, s, "end") for w, s in (("d. C.", "después de Cristo"), ("Ud.", "usted"), ("Uds.", "ustedes"))],
        *[(w, s, "any") for w, s in (("p. ej.", "por ejemplo"), ("aprox.", "aproximadamente"), ("tel.", "teléfono"))],
        *[(w, s, "any") for w, s in (("Vd.", "usted"), ("Vds.", "ustedes"))],
        *[(w, s, "number") for w, s in (("núm.", "número"), ("n.º", "número"), ("nº", "número"), ("pág.", "página"))],
        *[(w, s, "number") for w, s in (("págs.", "páginas"), ("cap.", "capítulo"), ("art.", "artículo"))],
    ],
    "pt": [
        *[
            (w, s, "name")
            for w, s in (("Sr.", "senhor"), ("Sra.", "senhora"), ("Srta.", "senhorita"), ("Dr.", "doutor"))
        ],
        *[(w, s, "name") for w, s in (("Dra.", "doutora"), ("Prof.", "professor"), ("Profa.", "professora"))],
        *[(w, s, "name") for w, s in (("Sto.", "santo"), ("Sta.", "santa"), ("Av.", "avenida"))],
        *[(w, s, "any") for w, s in (("V. Exa.", "Vossa Excelência"), ("V. Sa.", "Vossa Senhoria"))],
        *[(w, s, "end") for w, s in (("etc.", "et cetera"), ("a.C.", "antes de Cristo"), ("d.C.", "depois de Cristo"))],
        *[(w, s, "any") for w, s in (("p. ex.", "por exemplo"), ("aprox.", "aproximadamente"), ("tel.", "telefone"))],
        *[(w, s, "number") for w, s in (("n.º", "número"), ("nº", "número"), ("n°", "número"), ("pág.", "página"))],
        *[(w, s, "number") for w, s in (("cap.", "capítulo"), ("art.", "artigo"))],
    ],
    "fr": [
        *[
            (w, s, "name")
            for w, s in (("M.", "monsieur"), ("MM.", "messieurs"), ("Mme", "madame"), ("Mmes", "mesdames"))
        ],
        *[(w, s, "name") for w, s in (("Mlle", "mademoiselle"), ("Mlles", "mesdemoiselles"), ("Dr", "docteur"))],
        *[(w, s, "name") for w, s in (("Dr.", "docteur"), ("Pr", "professeur"), ("St", "saint"), ("Ste", "sainte"))],
        *[(w, s, "end") for w, s in (("etc.", "et cetera"), ("av. J.-C.", "avant Jésus-Christ"))],
        *[(w, s, "end") for w, s in (("apr. J.-C.", "après Jésus-Christ"),)],
        *[(w, s, "any") for w, s in (("p. ex.", "par exemple"), ("c.-à-d.", "c'est-à-dire"), ("env.", "environ"))],
        *[(w, s, "number") for w, s in (("n°", "numéro"), ("nº", "numéro"), ("p.", "page"), ("chap.", "chapitre"))],
        *[(w, s, "number") for w, s in (("art.", "article"),)],
    ],
    "it": [
        *[(w, s, "name") for w, s in (("Sig.ra", "signora"), ("Sig.na", "signorina"), ("Sigg.", "signori"))],
        *[(w, s, "name") for w, s in (("Sig.", "signor"), ("Dott.ssa", "dottoressa"), ("Dott.", "dottor"))],
        *[(w, s, "name") for w, s in (("Prof.ssa", "professoressa"), ("Prof.", "professor"), ("Ing.", "ingegner"))],
        *[(w, s, "name") for w, s in (("Avv.", "avvocato"),)],
        *[(w, s, "end") for w, s in (("ecc.", "eccetera"), ("a.C.", "avanti Cristo"), ("d.C.", "dopo Cristo"))],
        *[(w, s, "any") for w, s in (("ad es.", "ad esempio"), ("per es.", "per esempio"), ("tel.", "telefono"))],
        *[(w, s, "number") for w, s in (("n.", "numero"), ("nº", "numero"), ("pag.", "pagina"), ("pagg.", "pagine"))],
        *[(w, s, "number") for w, s in (("cap.", "capitolo"), ("art.", "articolo"), ("ca.", "circa"))],
    ],
    "de": [
        *[(w, s, "name") for w, s in (("Hr.", "Herr"), ("Hrn.", "Herrn"), ("Fr.", "Frau"), ("Dr.", "Doktor"))],
        *[(w, s, "name") for w, s in (("Prof.", "Professor"), ("St.", "Sankt"))],
        *[(w, s, "end") for w, s in (("usw.", "und so weiter"), ("etc.", "et cetera"), ("Str.", "Straße"))],
        *[(w, s, "end") for w, s in (("v. Chr.", "vor Christus"), ("n. Chr.", "nach Christus"))],
        *[(w, s, "any") for w, s in (("z. B.", "zum Beispiel"), ("d. h.", "das heißt"), ("bzw.", "beziehungsweise"))],
        *[(w, s, "any") for w, s in (("u. a.", "unter anderem"), ("evtl.", "eventuell"), ("ggf.", "gegebenenfalls"))],
        *[(w, s, "any") for w, s in (("ca.", "circa"), ("inkl.", "inklusive"), ("vgl.", "vergleiche"))],
        *[(w, s, "number") for w, s in (("Nr.", "Nummer"), ("S.", "Seite"), ("Kap.", "Kapitel"), ("Abs.", "Absatz"))],
    ],
    "ru": [
        *[(w, s, "name") for w, s in (("г-н", "господин"), ("г-жа", "госпожа"), ("ул.", "улица"), ("им.", "имени"))],
        *[
            (w, s, "end")
            for w, s in (("и т. д.", "и так далее"), ("и т. п.", "и тому подобное"), ("и др.", "и другие"))
        ],
        *[(w, s, "end") for w, s in (("до н. э.", "до нашей эры"), ("н. э.", "нашей эры"))],
        *[(w, s, "any") for w, s in (("т. е.", "то есть"), ("т. к.", "так как"), ("т. н.", "так называемый"))],
        *[(w, s, "number") for w, s in (("№", "номер"), ("стр.", "страница"))],
    ],
}


def _abbreviation_pattern(written: str, where: str) -> re.Pattern:
    """The written form, its inner spaces optional ("z. B." also matches "z.B."), alone as a word."""
    body = r"\s?".join(re.escape(part) for part in written.split(" "))
    if written[0].islower():  # "т. е." also as "Т. е." (where a sentence starts with it)
        body = f"[{written[0]}{written[0].upper()}]" + body[len(re.escape(written[0])) :]
    tail = "" if written.endswith(".") or not written[-1].isalnum() else r"(?!\w)"
    ahead = {"name": r"(?=\s*[^\W\d_])", "number": r"(?=\s*\d)"}.get(where, "")
    head = r"(?<![\w.])" if written[0].isalnum() else ""
    return re.compile(head + body + tail + ahead)


def _expand_abbreviations(text: str, base: str) -> str:
    for written, spoken, where in ABBREVIATIONS.get(base, ()):
        pattern = _abbreviation_pattern(written, where)

        def replace(match: re.Match, spoken: str = spoken, where: str = where) -> str:
            rest = match.string[match.end() :]
            if where == "name" and not rest.lstrip()[:1].isupper():
                return match.group(0)
            if where == "after_name" and not _word_before(match.string, match.start(), lower=False)[:1].isupper():
                return match.group(0)
            sentence_ends = re.match(r"\s+[^\W\d_]", rest) and rest.lstrip()[:1].isupper()
            if where in ("end", "after_name") and match.group(0).endswith(".") and (not rest.strip() or sentence_ends):
                return spoken + "."
            if match.group(0)[0].isupper() and re.search(r"(^|[.!?]\s+)$", match.string[: match.start()]):
                spoken = spoken[:1].upper() + spoken[1:]  # a sentence's first word keeps its capital
            return spoken + (" " if rest[:1].isalnum() else "")  # "№5": номер 5

        text = pattern.sub(replace, text)
    return text


# ---- dates ------------------------------------------------------------------------------------

MONTHS = {
    "en": "January February March April May June July August September October November December",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "ru": "января февраля марта апреля мая июня июля августа сентября октября ноября декабря",
}
# German: the ordinal of a date after these words is in the dative ("am fünften März").
GERMAN_DATIVE = {"am", "vom", "zum", "im", "dem", "den", "ab", "seit", "bis"}
# Russian: the case of a date's ordinal after these words (else nominative: "пятое марта").
RUSSIAN_DATE_CASE = {
    **dict.fromkeys(("до", "с", "со", "от", "после", "около", "из", "для", "без"), "g"),
    **dict.fromkeys(("к", "по"), "d"),
    **dict.fromkeys(("о", "об"), "p"),
}


def _month_names(base: str) -> list[str]:
    return MONTHS[base].split()


def _year_words(year: int, base: str, code: str) -> str:
    if base == "en" or (base == "de" and 1100 <= year <= 1999):
        return num2words(year, lang=code, to="year")
    return num2words(year, lang=code)


def _date_words(day: int, month: int, year: int | None, base: str, code: str, before: str) -> str:
    """One date as said in `base`; `before` is the word before it (German and Russian cases)."""
    name = _month_names(base)[month - 1]
    if base == "en":
        words = f"{name} {num2words(day, lang=code, to='ordinal')}"
        return words + (f", {_year_words(year, base, code)}" if year else "")
    if base == "ru":
        case = RUSSIAN_DATE_CASE.get(before, "n")
        words = f"{num2words(day, lang=code, to='ordinal', gender='n', case=case)} {name}"
        return words + (f" {num2words(year, lang=code, to='ordinal', case='g')} года" if year else "")
    if base == "de":
        ordinal = num2words(day, lang=code, to="ordinal")
        words = f"{ordinal}n {name}" if before in GERMAN_DATIVE else f"{ordinal} {name}"
        return words + (f" {_year_words(year, base, code)}" if year else "")
    first = {"es": "primero", "pt": "primeiro", "fr": "premier", "it": "primo"}[base]
    day_words = first if day == 1 else num2words(day, lang=code)
    of = " de " if base in ("es", "pt") else " "
    return day_words + of + name + (f"{of}{_year_words(year, base, code)}" if year else "")


def _expand_dates(text: str, base: str, code: str) -> str:
    def valid(day: int, month: int) -> bool:
        return 1 <= month <= 12 and 1 <= day <= 31

    def numeric(match: re.Match, order: str) -> str:
        parts = dict(zip(order, (int(g) for g in match.groups()[:3]), strict=True))
        day, month, year = parts["d"], parts["m"], parts["y"]
        if order == "mdy" and not valid(day, month) and valid(month, day):  # 25/12/2024 in English
            day, month = month, day
        if not valid(day, month):
            return match.group(0)
        return _date_words(day, month, year, base, code, _word_before(match.string, match.start()))

    year_tail = r"(?:\s*(?:года|г\.))?" if base == "ru" else ""
    text = re.sub(
        rf"(?<![\w.,/-])(\d{{4}})-(\d{{1,2}})-(\d{{1,2}})(?![\w/-]){year_tail}", lambda m: numeric(m, "ymd"), text
    )
    slashed = "mdy" if base == "en" else "dmy"
    text = re.sub(
        rf"(?<![\w./])(\d{{1,2}})/(\d{{1,2}})/(\d{{4}})(?![\w/]){year_tail}", lambda m: numeric(m, slashed), text
    )
    text = re.sub(
        rf"(?<![\w.,])(\d{{1,2}})\.(\d{{1,2}})\.(\d{{4}})(?!\w|\.\d){year_tail}", lambda m: numeric(m, "dmy"), text
    )
    months = "|".join(_month_names(base))

    def named(match: re.Match) -> str:
        groups = match.groupdict()
        month = next(i for i, name in enumerate(_month_names(base), 1) if name.lower() == groups["month"].lower())
        day = int(groups["day"])
        year = int(groups["year"]) if groups.get("year") else None
        if not valid(day, month):
            return match.group(0)
        before = _word_before(match.string, match.start())
        if base == "en" and groups.get("of") is not None:  # "5 March", "5th of March"
            ordinal = num2words(day, lang=code, to="ordinal")
            return ("" if before == "the" else "the ") + f"{ordinal} of {_month_names(base)[month - 1]}"
        return _date_words(day, month, year, base, code, before)

    day = r"(?P<day>\d{1,2})"
    month = rf"(?P<month>{months})" if base == "en" else rf"(?P<month>(?i:{months}))"  # not "you may 5"
    if base == "en":
        text = re.sub(rf"(?<![\w.,]){month}\s+{day}(?:st|nd|rd|th)?(?!\w)", named, text)
        text = re.sub(rf"(?<![\w.,]){day}(?:st|nd|rd|th)?\s+(?P<of>(?:of\s+)?){month}(?!\w)", named, text)
    elif base in ("es", "pt"):
        text = re.sub(rf"(?<![\w.,]){day}\s+de\s+{month}(?!\w)", named, text)
    elif base in ("fr", "it"):
        text = re.sub(rf"(?<![\w.,]){day}(?:er|°|º)?\s+{month}(?!\w)", named, text)
    elif base == "de":
        text = re.sub(rf"(?<![\w.,]){day}\.\s*{month}(?:\s+(?P<year>\d{{4}}))?(?!\w)", named, text)
    elif base == "ru":
        years = r"(?:\s+(?P<year>\d{4})(?:\s*(?:года|г\.))?)?"
        text = re.sub(rf"(?<![\w.,]){day}\s+{month}{years}(?!\w)", named, text)
        text = re.sub(r"(?<![\w.,])(\d{4})\s*(году|года|год|г\.)(?!\w)", lambda m: _russian_year(m, code), text)
    return text


def _russian_year(match: re.Match, code: str) -> str:
    """'в 2024 году', 'в 2024 г.': в две тысячи двадцать четвёртом году; '2024 год': ...
    четвёртый год; else (с 2024 года, 2024 г.) the genitive: ... четвёртого года."""
    year, word = int(match.group(1)), match.group(2)
    if word == "году" or (word == "г." and _word_before(match.string, match.start()) == "в"):
        return num2words(year, lang=code, to="ordinal", case="p") + " году"
    if word == "год":
        return num2words(year, lang=code, to="ordinal") + " год"
    return num2words(year, lang=code, to="ordinal", case="g") + " года"


# ---- money and units --------------------------------------------------------------------------

# currency -> (unit, hundredth); joiner between them.
CURRENCIES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "USD": ("dollar|dollars", "cent|cents"),
        "EUR": ("euro|euros", "cent|cents"),
        "GBP": ("pound|pounds", "penny|pence"),
        "JPY": ("yen|yen", "sen|sen"),
        "BRL": ("real|reais", "centavo|centavos"),
        "RUB": ("ruble|rubles", "kopeck|kopecks"),
    },
    "es": {
        "USD": ("dólar|dólares", "centavo|centavos"),
        "EUR": ("euro|euros", "céntimo|céntimos"),
        "GBP": ("f:libra|libras", "penique|peniques"),
        "JPY": ("yen|yenes", "sen|sen"),
        "BRL": ("real|reales", "centavo|centavos"),
        "RUB": ("rublo|rublos", "kopek|kopeks"),
    },
    "pt": {
        "USD": ("dólar|dólares", "centavo|centavos"),
        "EUR": ("euro|euros", "centavo|centavos"),
        "GBP": ("f:libra|libras", "pêni|pence"),
        "JPY": ("iene|ienes", "sen|sen"),
        "BRL": ("real|reais", "centavo|centavos"),
        "RUB": ("rublo|rublos", "copeque|copeques"),
    },
    "fr": {
        "USD": ("dollar|dollars", "cent|cents"),
        "EUR": ("euro|euros", "centime|centimes"),
        "GBP": ("f:livre|livres", "penny|pence"),
        "JPY": ("yen|yens", "sen|sen"),
        "BRL": ("réal|réaux", "centavo|centavos"),
        "RUB": ("rouble|roubles", "kopeck|kopecks"),
    },
    "it": {
        "USD": ("dollaro|dollari", "centesimo|centesimi"),
        "EUR": ("euro|euro", "centesimo|centesimi"),
        "GBP": ("f:sterlina|sterline", "penny|pence"),
        "JPY": ("yen|yen", "sen|sen"),
        "BRL": ("real|real", "centavo|centavos"),
        "RUB": ("rublo|rubli", "copeco|copechi"),
    },
    "de": {
        "USD": ("Dollar|Dollar", "Cent|Cent"),
        "EUR": ("Euro|Euro", "Cent|Cent"),
        "GBP": ("Pfund|Pfund", "Penny|Pence"),
        "JPY": ("Yen|Yen", "Sen|Sen"),
        "BRL": ("Real|Reais", "Centavo|Centavos"),
        "RUB": ("Rubel|Rubel", "f:Kopeke|Kopeken"),
    },
    "ru": {
        "USD": ("доллар|доллара|долларов", "цент|цента|центов"),
        "EUR": ("евро|евро|евро", "цент|цента|центов"),
        "GBP": ("фунт|фунта|фунтов", "пенс|пенса|пенсов"),
        "JPY": ("f:иена|иены|иен", "сен|сена|сен"),
        "BRL": ("реал|реала|реалов", "сентаво|сентаво|сентаво"),
        "RUB": ("рубль|рубля|рублей", "f:копейка|копейки|копеек"),
    },
}
MONEY_JOINER = {"en": " and ", "es": " con ", "pt": " e ", "fr": " et ", "it": " e ", "de": " und ", "ru": " "}
SIGNS = {"US$": "USD", "R$": "BRL", "$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₽": "RUB"}
CODES = {
    "USD": "USD",
    "EUR": "EUR",
    "GBP": "GBP",
    "BRL": "BRL",
    "RUB": "RUB",
    "JPY": "JPY",
    "руб.": "RUB",
    "руб": "RUB",
}
# Scale words that may stand between an amount and its currency ("$5 million", "5 млн руб.").
SCALES = {
    "en": "thousand|million|billion|trillion",
    "es": "mil millones|mil|millón|millones",
    "pt": "mil|milhão|milhões|bilhão|bilhões",
    "fr": "mille|millions?|milliards?",
    "it": "mila|mille|milion[ei]|miliard[oi]",
    "de": "Tausend|Millionen|Million|Milliarden|Milliarde",
    "ru": "тыс\\.|млн|млрд",
}
# After a million, Romance languages put "de"/"di" before the currency: un millón de dólares.
OF_AFTER_MILLIONS = {"es": "de ", "pt": "de ", "fr": "de ", "it": "di "}
_MILLIONS = re.compile(r"(millón|millones|milhão|milhões|bilhão|bilhões|millions?|milliards?|milion[ei]|miliard[oi])$")

UNITS: dict[str, dict[str, str]] = {
    "en": {
        "km/h": "kilometer per hour|kilometers per hour",
        "mph": "mile per hour|miles per hour",
        "km": "kilometer|kilometers",
        "cm": "centimeter|centimeters",
        "mm": "millimeter|millimeters",
        "kg": "kilogram|kilograms",
        "min": "minute|minutes",
        "°C": "degree Celsius|degrees Celsius",
        "°F": "degree Fahrenheit|degrees Fahrenheit",
        "m": "meter|meters",
        "g": "gram|grams",
        "l": "liter|liters",
        "h": "hour|hours",
    },
    "es": {
        "km/h": "kilómetro por hora|kilómetros por hora",
        "km": "kilómetro|kilómetros",
        "cm": "centímetro|centímetros",
        "mm": "milímetro|milímetros",
        "kg": "kilogramo|kilogramos",
        "min": "minuto|minutos",
        "°C": "grado Celsius|grados Celsius",
        "m": "metro|metros",
        "g": "gramo|gramos",
        "l": "litro|litros",
        "h": "f:hora|horas",
    },
    "pt": {
        "km/h": "quilômetro por hora|quilômetros por hora",
        "km": "quilômetro|quilômetros",
        "cm": "centímetro|centímetros",
        "mm": "milímetro|milímetros",
        "kg": "quilograma|quilogramas",
        "min": "minuto|minutos",
        "°C": "grau Celsius|graus Celsius",
        "m": "metro|metros",
        "g": "grama|gramas",
        "l": "litro|litros",
        "h": "f:hora|horas",
    },
    "fr": {
        "km/h": "kilomètre à l'heure|kilomètres à l'heure",
        "km": "kilomètre|kilomètres",
        "cm": "centimètre|centimètres",
        "mm": "millimètre|millimètres",
        "kg": "kilogramme|kilogrammes",
        "min": "f:minute|minutes",
        "°C": "degré Celsius|degrés Celsius",
        "m": "mètre|mètres",
        "g": "gramme|grammes",
        "l": "litre|litres",
        "h": "f:heure|heures",
    },
    "it": {
        "km/h": "chilometro orario|chilometri orari",
        "km": "chilometro|chilometri",
        "cm": "centimetro|centimetri",
        "mm": "millimetro|millimetri",
        "kg": "chilogrammo|chilogrammi",
        "min": "minuto|minuti",
        "°C": "grado Celsius|gradi Celsius",
        "m": "metro|metri",
        "g": "grammo|grammi",
        "l": "litro|litri",
        "h": "f:ora|ore",
    },
    "de": {
        "km/h": "Kilometer pro Stunde|Kilometer pro Stunde",
        "km": "Kilometer|Kilometer",
        "cm": "Zentimeter|Zentimeter",
        "mm": "Millimeter|Millimeter",
        "kg": "Kilogramm|Kilogramm",
        "min": "f:Minute|Minuten",
        "°C": "Grad Celsius|Grad Celsius",
        "m": "Meter|Meter",
        "g": "Gramm|Gramm",
        "l": "Liter|Liter",
        "h": "f:Stunde|Stunden",
    },
    "ru": {
        "км/ч": "километр в час|километра в час|километров в час",
        "км": "километр|километра|километров",
        "см": "сантиметр|сантиметра|сантиметров",
        "мм": "миллиметр|миллиметра|миллиметров",
        "кг": "килограмм|килограмма|килограммов",
        "мин": "f:минута|минуты|минут",
        "°C": "градус Цельсия|градуса Цельсия|градусов Цельсия",
        "тыс.": "f:тысяча|тысячи|тысяч",
        "коп.": "f:копейка|копейки|копеек",
        "млн": "миллион|миллиона|миллионов",
        "млрд": "миллиард|миллиарда|миллиардов",
        "м": "метр|метра|метров",
        "г": "грамм|грамма|граммов",
        "л": "литр|литра|литров",
        "ч": "час|часа|часов",
    },
}


def _amount(digits: str, base: str) -> int | float | None:
    return parse_number(re.sub(r"[ \u00a0\u202f]", "." if base != "en" else ",", digits), base)


def _counted(value: int | float, digits: str, counted: Noun, base: str, language: str) -> str:
    """'<number> <noun>' with the noun agreeing; a whole number in words in the noun's gender,
    a fraction left in digits for `spell_out_numbers` (which reads decimals the language's way)."""
    if isinstance(value, int):
        return f"{cardinal(value, language, counted.feminine)} {counted.agreeing(value, base)}"
    return f"{digits} {counted.agreeing(value, base)}"


def _money_words(digits: str, currency: str, scale: str | None, base: str, language: str) -> str | None:
    value = _amount(digits, base)
    if value is None:
        return None
    unit_text, hundredth_text = CURRENCIES[base][currency]
    unit, hundredth = noun(unit_text), noun(hundredth_text)
    if scale:  # "$5 million": five million dollars; "5 млн руб.": пять миллионов рублей
        if base == "ru":
            return f"{_counted(value, digits, noun(UNITS['ru'][scale]), base, language)} {unit.forms[-1]}"
        return f"{digits} {scale} {OF_AFTER_MILLIONS.get(base, '')}{unit.forms[-1]}"
    decimals = re.split(r"[.,]", digits)[-1] if isinstance(value, float) else ""
    if len(decimals) > 2:  # not cents: the amount as a decimal number
        return f"{digits} {unit.forms[-1]}"
    whole, cents = int(value), int(decimals.ljust(2, "0")) if decimals else 0
    parts = []
    if whole or not cents:
        words = cardinal(whole, language, unit.feminine)
        of_millions = OF_AFTER_MILLIONS.get(base, "") if _MILLIONS.search(words) else ""
        parts.append(f"{words} {of_millions + unit.forms[-1] if of_millions else unit.agreeing(whole, base)}")
    if cents:
        parts.append(_counted(cents, str(cents), hundredth, base, language))
    return MONEY_JOINER[base].join(parts)


def _expand_money(text: str, base: str, language: str) -> str:
    signs = "|".join(re.escape(sign) for sign in SIGNS)
    codes = "|".join(re.escape(code) for code in (*CODES, *SIGNS))
    scale = rf"(?:\s+(?P<scale>{SCALES[base]}))?"

    def replace(match: re.Match) -> str:
        found = match.groupdict()
        currency = SIGNS.get(found.get("sign") or "") or {**SIGNS, **CODES}[found["code"]]
        words = _money_words(found["amount"], currency, found.get("scale"), base, language)
        return match.group(0) if words is None else words

    text = re.sub(rf"(?<![\w$])(?P<sign>{signs})\s?(?P<amount>{NUMBER}){scale}(?![\w])", replace, text)
    return re.sub(rf"(?<![\w.,])(?P<amount>{NUMBER}){scale}\s?(?P<code>{codes})(?![\w])", replace, text)


def _expand_units(text: str, base: str, language: str) -> str:
    units = UNITS[base]
    symbols = "|".join(re.escape(symbol) for symbol in units)  # longest first: the tables are ordered

    def replace(match: re.Match) -> str:
        digits, symbol = match.group("amount"), match.group("unit")
        value = _amount(digits, base)
        if value is None:
            return match.group(0)
        return _counted(value, digits, noun(units[symbol]), base, language)

    ending = r"(?![\w/])" if base != "ru" else r"(?![\w/])(?!\.\s*[а-яё])"
    return re.sub(rf"(?<![\w.,])(?P<amount>{NUMBER})\s?(?P<unit>{symbols}){ending}", replace, text)


# ---- all of them ------------------------------------------------------------------------------


def expand_written_forms(text: str, language: str | None) -> str:
    """Abbreviations, dates, sums of money and units in `text` as words in `language`; numbers
    that remain are left for `data.text.spell_out_numbers`."""
    base = base_language(language)
    code = number_language(language)
    if base not in LANGUAGES or code is None:
        return text
    text = _expand_abbreviations(text, base)
    text = _expand_dates(text, base, code)
    text = _expand_money(text, base, language or base)
    return _expand_units(text, base, language or base)
