"""The composite score of a voice, relative to the real voice's own scores (the ceiling).

Pure arithmetic (no models): every evaluation of a set of synthesized clips is summarized by
`summarize`, and the same summary of the real held-out clips is the ceiling. The score is the mean
of three parts, each the fraction of the way from "nothing" to "as good as the real voice", cut to
[0, 1]:

    intelligibility = (1 - WER) / (1 - WER of the real clips)        nothing: every word wrong
    similarity      = (sim - 0.5) / (sim of the real clips - 0.5)    nothing: cosine 0.5, about
                                                                    what unrelated voices score
    quality         = (DNSMOS - 1) / (DNSMOS of the real clips - 1)  nothing: DNSMOS 1, its lowest

So 1.0 means "scores as well as the real recordings on all three", 0.5 "half way there on
average". A part whose measure is missing (its model could not load) is left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SIMILARITY_FLOOR = 0.5
DNSMOS_FLOOR = 1.0
MAX_CEILING_WER = 0.9  # a ceiling WER above this (whisper cannot hear the language) is taken as 0.9
MEASURES = ("wer", "cer", "similarity", "dnsmos")


@dataclass(frozen=True)
class Summary:
    """Measures of a set of clips: WER and CER over all their words (edits / words), similarity
    and DNSMOS as means over clips. None where not measured."""

    wer: float | None = None
    cer: float | None = None
    similarity: float | None = None
    dnsmos: float | None = None
    clips: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Summary | None:
        if not data:
            return None
        return cls(**{k: data[k] for k in (*MEASURES, "clips") if k in data})


def summarize(scores: Sequence[Any], digits: int = 6) -> Summary:
    """A `Summary` of `ClipScore`s (objects with rates, similarity and dnsmos)."""
    rates = [s.rates for s in scores if getattr(s, "rates", None) is not None]
    wer = cer = None
    if rates:
        total = rates[0]
        for rate in rates[1:]:
            total = total + rate
        wer, cer = total.wer, total.cer
    return Summary(
        _round(wer, digits),
        _round(cer, digits),
        _round(_mean(s.similarity for s in scores), digits),
        _round(_mean(s.dnsmos for s in scores), digits),
        len(scores),
    )


def composite_score(measured: Summary, ceiling: Summary | None) -> float | None:
    """The score of `measured` relative to `ceiling` (see the module docstring); None when no
    part can be computed."""
    ceiling = ceiling or Summary()
    parts = []
    if measured.wer is not None:
        real_wer = min(ceiling.wer if ceiling.wer is not None else 0.0, MAX_CEILING_WER)
        parts.append(_fraction(1.0 - min(measured.wer, 1.0), 1.0 - real_wer))
    if measured.similarity is not None:
        real = ceiling.similarity if ceiling.similarity is not None else 1.0
        parts.append(_fraction(measured.similarity - SIMILARITY_FLOOR, real - SIMILARITY_FLOOR))
    if measured.dnsmos is not None:
        real = ceiling.dnsmos if ceiling.dnsmos is not None else 5.0
        parts.append(_fraction(measured.dnsmos - DNSMOS_FLOOR, real - DNSMOS_FLOOR))
    if not parts:
        return None
    return round(sum(parts) / len(parts), 6)


def _fraction(value: float, full: float) -> float:
    if full <= 1e-6:  # a ceiling at the floor: anything above the floor is "as good"
        return 1.0 if value > 0 else 0.0
    return min(1.0, max(0.0, value / full))


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return sum(present) / len(present) if present else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)
