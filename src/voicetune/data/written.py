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
  a scale word may be English, and the amount written the English way, in every language ("$2.5
  million" in a Spanish text: 2,5 millones de dólares);
- times (10:30, 10h30, 10.30 Uhr: diez y media, dez e meia, dix heures trente, zehn Uhr dreißig);
- German ordinals after an article ("der 2. Weltkrieg": der zweite Weltkrieg);
- units after a number (km, m, cm, mm, kg, g, l, km/h, °C, h, min; Russian км, м, см, кг, г, л, ч,
  мин, тыс., млн, млрд), singular or plural as the number asks.

English, Spanish, Portuguese, French, Italian, German and Russian; a text in another language is
left as written (its numbers are still spelled out where num2words knows the language).

`before_noun` reads a number before the noun it counts in that noun's gender (una casa, duas
casas, eine Katze, одна книга) for `data.text.spell_out_numbers`, and as counted alone where it
names ("número 1": número uno) or counts no noun ("marque 1 si desea").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

from voicetune.data.numbers import (
    base_language,
    cardinal,
    number_language,
    number_words,
    parse_number,
    russian_form,
)

LANGUAGES = ("en", "es", "pt", "fr", "it", "de", "ru")

# A number as written: digits with separators inside, or thousands grouped by (no-break) spaces.
NUMBER = r"(?:\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:,\d+)?|\d(?:[\d.,]*\d)?)"


@dataclass(frozen=True)
class Noun:
    """A noun a number counts: its forms (singular, plural; Russian: 1, 2-4, 5+) and gender."""

    forms: tuple[str, ...]
    feminine: bool = False

    @property
    def gender(self) -> str:
        return "f" if self.feminine else "m"

    def agreeing(self, value: int | float, language: str) -> str:
        if language == "ru":
            return russian_form(value, *self.forms)
        singular = value < 2 if language in ("fr", "pt") else value == 1  # 1,5 million, 1,5 milhão
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
        *[(w, s, "number") for w, s in (("n.°", "número"), ("n°", "número"))],  # the degree sign for º
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
        *[(w, s, "number") for w, s in (("n.°", "número"),)],
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
        *[(w, s, "number") for w, s in (("n°", "numero"),)],
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
# Scale words that may stand between an amount and its currency ("$5 million", "5 млн руб."): each
# language's (one, several) of a thousand, a million, 10^9 and 10^12. The English words are read in
# every language ("$2.5 million" in a Spanish text: 2,5 millones de dólares), except where the
# language spells one of them itself with another value (French "billion", German "Billion": 10^12).
SCALE_NAMES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {scale: (scale, scale) for scale in ("thousand", "million", "billion", "trillion")},
    "es": {
        "thousand": ("mil", "mil"),
        "million": ("millón", "millones"),
        "billion": ("mil millones", "mil millones"),
        "trillion": ("billón", "billones"),
    },
    "pt": {
        "thousand": ("mil", "mil"),
        "million": ("milhão", "milhões"),
        "billion": ("bilhão", "bilhões"),
        "trillion": ("trilhão", "trilhões"),
    },
    "fr": {
        "thousand": ("mille", "mille"),
        "million": ("million", "millions"),
        "billion": ("milliard", "milliards"),
        "trillion": ("billion", "billions"),
    },
    "it": {
        "thousand": ("mille", "mila"),
        "million": ("milione", "milioni"),
        "billion": ("miliardo", "miliardi"),
        "trillion": ("bilione", "bilioni"),
    },
    "de": {
        "thousand": ("Tausend", "Tausend"),
        "million": ("Million", "Millionen"),
        "billion": ("Milliarde", "Milliarden"),
        "trillion": ("Billion", "Billionen"),
    },
    # Russian: the keys of UNITS["ru"], whose forms agree with the number (пять миллионов)
    "ru": {"thousand": ("тыс.",) * 2, "million": ("млн",) * 2, "billion": ("млрд",) * 2, "trillion": ("трлн",) * 2},
}


def _scales(base: str) -> dict[str, str]:
    """Written scale word -> 'thousand', 'million', 'billion' or 'trillion'."""
    own = {word: scale for scale, forms in SCALE_NAMES[base].items() for word in forms}
    return {**{scale: scale for scale in SCALE_NAMES["en"]}, **own}


# After a million, Romance languages put "de"/"di" before the currency: un millón de dólares.
OF_AFTER_MILLIONS = {"es": "de ", "pt": "de ", "fr": "de ", "it": "di "}


def _of(base: str, name: str) -> str:
    """'de ' before a currency after a million, French "d'" before a vowel (millions d'euros)."""
    of = OF_AFTER_MILLIONS.get(base, "")
    return "d'" if of and base == "fr" and name[:1] in "aeiouéh" else of


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
        "трлн": "триллион|триллиона|триллионов",
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
        words, name = cardinal(value, language, counted.gender), counted.agreeing(value, base)
        if base == "it" and words == "una" and name[:1] in "aeiouàèéìòù":  # un'ora
            return f"un'{name}"
        return f"{words} {name}"
    return f"{digits} {counted.agreeing(value, base)}"


def _scaled_money(digits: str, currency: str, written_scale: str, base: str, language: str) -> str | None:
    """'$2.5 million': two point five million dollars; in Spanish 2,5 millones de dólares (the amount
    may be written the English way); '5 млн руб.': пять миллионов рублей; '$5 thousand' as $5000."""
    value = _amount(digits, base)
    if value is None and base != "en":
        value = parse_number(digits, "en")
    if value is None:
        return None
    scale = _scales(base)[written_scale]
    if scale == "thousand" and base != "ru" and float(value * 1000).is_integer():
        return _money_words(str(int(value * 1000)), currency, None, base, language)
    unit = noun(CURRENCIES[base][currency][0])
    if isinstance(value, float):  # the decimal written as the language writes it, for spell_out_numbers
        comma = "." if base == "en" else ","
        digits = f"{int(value)}{comma}{re.split(r'[.,]', digits)[-1]}"
    else:
        digits = str(value)
    if base == "ru":
        return f"{_counted(value, digits, noun(UNITS['ru'][SCALE_NAMES['ru'][scale][0]]), base, language)} {unit.forms[-1]}"
    name = Noun(SCALE_NAMES[base][scale]).agreeing(value, base)
    of = _of(base, unit.forms[-1]) if scale != "thousand" else ""
    return f"{digits} {name} {of}{unit.forms[-1]}"


def _money_words(digits: str, currency: str, scale: str | None, base: str, language: str) -> str | None:
    if scale:
        return _scaled_money(digits, currency, scale, base, language)
    value = _amount(digits, base)
    if value is None:
        return None
    unit_text, hundredth_text = CURRENCIES[base][currency]
    unit, hundredth = noun(unit_text), noun(hundredth_text)
    decimals = re.split(r"[.,]", digits)[-1] if isinstance(value, float) else ""
    if len(decimals) > 2:  # not cents: the amount as a decimal number
        return f"{digits} {unit.forms[-1]}"
    whole, cents = int(value), int(decimals.ljust(2, "0")) if decimals else 0
    parts = []
    if whole or not cents:
        words = cardinal(whole, language, unit.gender)
        of_millions = _of(base, unit.forms[-1]) if _MILLIONS.search(words) else ""
        parts.append(f"{words} {of_millions + unit.forms[-1] if of_millions else unit.agreeing(whole, base)}")
    if cents:
        parts.append(_counted(cents, str(cents), hundredth, base, language))
    return MONEY_JOINER[base].join(parts)


def _expand_money(text: str, base: str, language: str) -> str:
    signs = "|".join(re.escape(sign) for sign in SIGNS)
    codes = "|".join(re.escape(code) for code in (*CODES, *SIGNS))
    scales = "|".join(re.escape(word) for word in sorted(_scales(base), key=len, reverse=True))
    scale = rf"(?:\s+(?P<scale>{scales}))?"

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


# ---- a number and the noun it counts ---------------------------------------------------------

# Nouns after which a number names rather than counts: "número 1" is número uno (not un), "página
# 1" página uno, "Seite 1" Seite eins, whatever word follows ("número 1 si desea").
LABEL_NOUNS = {
    "es": "número números página capítulo artículo opción extensión tecla piso planta línea habitación "
    "puerta sala versión nivel paso tomo volumen parte sección anexo tabla figura canal código grupo "
    "fase etapa día semana año modelo",
    "pt": "número números página capítulo artigo opção extensão ramal tecla andar linha sala quarto versão "
    "nível passo volume parte seção anexo tabela figura canal código grupo fase etapa dia semana ano modelo",
    "fr": "numéro page chapitre article option touche ligne salle chambre version niveau étape volume "
    "partie section annexe tableau figure canal code groupe phase jour semaine année modèle porte poste",
    "it": "numero pagina capitolo articolo opzione tasto linea sala camera versione livello passo volume "
    "parte sezione allegato tabella figura canale codice gruppo fase giorno settimana anno modello interno",
    "de": "nummer seite kapitel artikel option taste linie zimmer version stufe schritt band teil "
    "abschnitt anhang tabelle abbildung kanal gruppe phase tag woche jahr modell platz gleis",
    "ru": "номер страница глава статья вариант кнопка линия комната версия уровень шаг том часть раздел "
    "приложение таблица рисунок канал код группа этап день неделя год модель пункт",
}
# Words a number stands before without counting them: prepositions, conjunctions, adverbs
# ("marque 1 si desea", "marque 1 ahora", "premere 1 per", "нажмите 1 для").
NOT_COUNTED = {
    "es": "de del y e o u ni en a al que por para con sin sobre entre hasta desde hacia según contra si "
    "no ahora ya más menos como cuando donde mientras pero es son está están era fue hay tiene también "
    "solo sólo aquí allí hoy luego después antes la las lo los el un una se le su sus cada otra otro",
    "pt": "de do da dos das e ou em no na nos nas a o as os ao à às que por para pra com sem sobre entre "
    "até desde se não agora já mais menos como quando onde mas é são está estão era foi há tem também só "
    "aqui lá hoje depois antes cada outra outro sua seu um uma",
    "fr": "de du des et ou en à au aux que qui pour par avec sans sur sous entre dans si ne pas plus moins "
    "comme quand où mais est sont était ici maintenant puis le la les un une ce cette chaque",
    "it": "di del della dei delle e ed o od in a al alla ai alle per con su da tra fra che se non ora "
    "adesso più meno come quando dove ma è sono era qui là oggi poi la le il lo gli un una ogni",
    "de": "sie ich er wir ihr",
    "ru": "для и или а в во на с со по до из от за к о об что чтобы если но как не",
}
# Nouns whose gender their ending does not tell (singular, and plural where it is not -s/-es).
GENDERS = {
    "es": {
        "m": "día problema programa sistema tema idioma clima planeta mapa poema dilema esquema sofá tranvía",
        "f": "vez veces mano foto radio moto noche llave calle gente parte clase nube tarde fuente frase "
        "imagen imágenes mujer flor leche carne sal luz luces voz voces cruz paz ley leyes red pared "
        "piel serie especie muerte suerte mente torre base nave opción",
    },
    "pt": {
        "m": "dia problema programa sistema tema idioma clima planeta mapa poema esquema sofá",
        "f": "vez vezes mão mãos foto moto noite chave gente parte classe nuvem tarde fonte frase imagem "
        "mulher flor leite carne luz voz cruz paz lei rede parede pele série espécie morte sorte mente "
        "torre base nave cor dor ordem",
    },
    "fr": {
        "m": "",
        "f": "fois heure minute seconde semaine journée année personne chose femme fille page porte ligne "
        "lettre touche ville rue maison voiture place langue voix nuit main mère fin part idée table photo "
        "chambre salle école église fleur image eau mer forme vie mort classe histoire option question",
    },
    "it": {"m": "problema sistema programma tema clima cinema pianeta poeta", "f": "mano foto radio moto"},
    "de": {
        "m": "name junge käse kunde affe hase löwe gedanke buchstabe glaube wille friede uhr",
        "f": "frau stadt zeit nacht hand tür welt art kraft wand maus bank zahl wahl milch angst arbeit "
        "fahrt nummer mutter tochter schwester regel tafel insel kartoffel",
    },
    "ru": {
        "m": "мужчина мужчины папа папы дядя дяди дедушка дедушки",
        "f": "ночь дверь тетрадь площадь часть вещь мысль жизнь смерть память новость очередь церковь "
        "соль боль роль цель мышь лошадь кровать",
    },
}
FEMININE_ENDINGS = {
    "es": ("a", "as", "ción", "ciones", "sión", "siones", "dad", "dades", "tad", "tades", "tud", "umbre"),
    "pt": ("a", "as", "ção", "ções", "são", "sões", "dade", "dades", "agem", "agens"),
    "fr": ("tion", "tions", "sion", "sions", "té", "tés", "ette", "ettes", "ance", "ances", "ence", "ences"),
    "it": ("a", "zione", "sione", "tà", "tù"),
    "de": ("ung", "heit", "keit", "schaft", "ion", "tät", "ei", "ik", "ie", "enz", "anz", "e"),
}


def _words(table: dict[str, str], base: str) -> set[str]:
    return set(table.get(base, "").split())


def counted_gender(before: str, after: str, value: int, base: str) -> str | None:
    """The gender ('m', 'f', Russian also 'n') of the noun a whole number counts, from the word after
    it ("1 casa": f); None where it counts none: it names ("número 1", "página 1") or the word after
    it is no noun ("marque 1 si desea", "2 agora": a plural number before no plural)."""
    named = re.search(r"([^\W\d_]+)[ \u00a0]+$", before)
    found = re.match(r"[ \u00a0]+([^\W\d_]+(?:-[^\W\d_]+)*)", after)
    if (named and named.group(1).lower() in _words(LABEL_NOUNS, base)) or not found:
        return None
    word = found.group(1)
    lower = word.lower()
    if lower in _words(NOT_COUNTED, base) or "-" in word:  # a compound's gender is its own: um guarda-chuva
        return None
    genders = {w: gender for gender in ("m", "f") for w in GENDERS.get(base, {}).get(gender, "").split()}
    if base == "de":  # German nouns are written with a capital
        if not word[0].isupper():
            return None
        return genders.get(lower) or ("f" if lower.endswith(FEMININE_ENDINGS["de"]) else "m")
    if base == "ru":
        return _russian_gender(lower, value, genders)
    if base not in FEMININE_ENDINGS or (value != 1 and not lower.endswith({"it": ("i", "e")}.get(base, ("s", "x")))):
        return None
    singular = [lower, *([lower[:-1]] if lower.endswith("s") else []), *([lower[:-2]] if lower.endswith("es") else [])]
    known = next((genders[form] for form in singular if form in genders), None)
    return known or ("f" if lower.endswith(FEMININE_ENDINGS[base]) else "m")


def _russian_gender(word: str, value: int, genders: dict[str, str]) -> str | None:
    """After 1 (21, 31...) a Russian noun is in the nominative singular, after 2 in the genitive
    singular: the gender of книга is read from "1 книга" and "2 книги"."""
    if not re.fullmatch(r"[а-яё]+", word):
        return None
    if value % 10 == 1 and value % 100 != 11:
        if word in genders:
            return genders[word]
        if word.endswith(("а", "я")):
            return "f"
        if word.endswith(("о", "е", "ё")):
            return "n"
        return "f" if word.endswith("ость") else "m"
    if value % 10 == 2 and value % 100 != 12:
        return "f" if word.endswith(("ы", "и")) and genders.get(word) != "m" else "m"
    return None


# German: a number before its noun after these prepositions is in the dative ("mit einem Hund").
GERMAN_DATIVE_PREPOSITIONS = {"mit", "von", "nach", "seit", "aus", "bei", "zu", "vor", "in", "an", "gegenüber"}


def before_noun(value: int, before: str, after: str, language: str) -> str | None:
    """A whole number in words as it stands before the noun it counts, in the noun's gender ("una
    casa", "um livro", "duas casas", "vingt et une maisons", "un secondo", "eine Stunde", "одна
    книга"), and in German in the dative after a preposition that asks for it ("in einer Woche");
    None where it counts no noun (the number is then read on its own: "número uno")."""
    base = base_language(language)
    gender = counted_gender(before, after, value, base)
    if gender is None:
        return None
    words = cardinal(value, language, gender)
    if base == "it" and words == "un" and re.match(r"\s+(?:s[^aeiouàèéìòù]|z|gn|ps|x|y)", after, re.IGNORECASE):
        words = "uno"  # uno studente, uno zaino
    if base == "it" and words == "una" and re.match(r"\s+[aeiouàèéìòù]", after, re.IGNORECASE):
        words = "un'"  # un'idea (data.text joins it to its noun)
    if base == "de" and words in ("ein", "eine") and _word_before(before, len(before)) in GERMAN_DATIVE_PREPOSITIONS:
        words = "einer" if gender == "f" else "einem"
    return words


# ---- times ------------------------------------------------------------------------------------

# A time of day: 10:30, and 10h30 in Portuguese and French (10h alone is a unit: dez horas), 10.30
# Uhr in German. Not 10:30:15 (left in digits), nor 3:1 (no two-digit minutes).
TIME_SEPARATOR = {"pt": "[:h]", "fr": "[:h]"}
HALF_PAST = {"es": "media", "pt": "meia", "it": "mezza"}


def _time_words(hours: int, minutes: int, after: str, hours_named: bool, base: str, language: str) -> str:
    """A time as said in `base`: ten thirty, ten oh five, ten o'clock; diez y media (with "horas"
    written after it: diez treinta horas); dez e meia, uma e quinze; dix heures trente; dieci e
    trenta; zehn Uhr dreißig; десять тридцать, десять ноль пять."""
    code = number_language(language) or base
    minute_words = number_words(minutes, language)
    if base == "en":
        if minutes == 0:
            return num2words(hours, lang=code) + ("" if re.match(r"\s*[AP] ?M\b", after) else " o'clock")
        return f"{num2words(hours, lang=code)} {'oh ' if minutes < 10 else ''}{minute_words}"
    if base == "ru":
        hour = "час" if hours == 1 else num2words(hours, lang=code)
        return f"{hour} {'ноль-ноль' if minutes == 0 else ('ноль ' if minutes < 10 else '') + minute_words}"
    if base == "de":
        return f"{cardinal(hours, language)} Uhr" + (f" {minute_words}" if minutes else "")
    if base == "fr":
        hour = f"{cardinal(hours, language, 'f')} heure{'s' if hours > 1 else ''}"
        return hour + (f" {cardinal(minutes, language, 'f')}" if minutes else "")
    hour = cardinal(hours, language, "f")  # la una, as duas, l'una: "hora" is feminine
    if hours_named and base == "es":
        return f"{hour} {minute_words + ' ' if minutes else ''}horas"
    joiner = {"es": " y ", "pt": " e ", "it": " e "}[base]
    if minutes == 0:
        return hour + ({"pt": " hora" if hours == 1 else " horas"}.get(base, ""))
    return hour + joiner + (HALF_PAST[base] if minutes == 30 else minute_words)


def _expand_times(text: str, base: str, language: str) -> str:
    def replace(match: re.Match) -> str:
        hours, minutes = int(match.group("h")), int(match.group("m"))
        if hours > 24:
            return match.group(0)
        return _time_words(hours, minutes, match.string[match.end() :], bool(match.group("unit")), base, language)

    separator = TIME_SEPARATOR.get(base, ":")
    unit = {"es": r"(?P<unit>\s?(?:h|hs|hrs|horas)\b)?", "de": r"(?P<unit>\s?Uhr\b)?", "pt": r"(?P<unit>min\b|h\b)?"}
    time = rf"(?<![\w:.,])(?P<h>\d{{1,2}}){separator}(?P<m>[0-5]\d){unit.get(base, '(?P<unit>)')}(?![\w:]|[.,]\d)"
    text = re.sub(time, replace, text)
    if base == "de":  # "10.30 Uhr"
        text = re.sub(r"(?<![\w:.,])(?P<h>\d{1,2})\.(?P<m>[0-5]\d)(?P<unit>\s?Uhr\b)", replace, text)
    return text


# German: "der 2. Weltkrieg", "am 3. Tag": an ordinal after an article and before a noun (a
# number before a period is otherwise the end of a sentence); after these the ending is -en.
GERMAN_ARTICLES = {"der": "", "die": "", "das": "", "dem": "n", "den": "n", "des": "n", "am": "n", "im": "n"}
GERMAN_ARTICLES.update(dict.fromkeys(("zum", "zur", "vom", "beim"), "n"))


def _expand_german_ordinals(text: str, code: str) -> str:
    def replace(match: re.Match) -> str:
        article, number = match.group(1), int(match.group(2))
        return f"{article} {num2words(number, lang=code, to='ordinal')}{GERMAN_ARTICLES[article.lower()]} "

    articles = "|".join(GERMAN_ARTICLES)
    return re.sub(rf"(?<![\w])((?i:{articles}))\s+(\d{{1,3}})\.\s+(?=[A-ZÄÖÜ])", replace, text)


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
    text = _expand_times(text, base, language or base)
    if base == "de":
        text = _expand_german_ordinals(text, code)
    text = _expand_money(text, base, language or base)
    return _expand_units(text, base, language or base)
