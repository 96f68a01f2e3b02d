"""Scoring of speech: intelligibility (WER/CER with faster-whisper), speaker similarity (GE2E
embeddings) and quality (DNSMOS), loaded once per process and run in batches.

Used by `voicetune dataset score` (every clip of a dataset), `voicetune eval` (checkpoints, runs,
upstream weights) and training (every milestone). It holds no model code: it scores audio.
"""

from voicetune.scoring.composite import Summary, composite_score, summarize
from voicetune.scoring.measures import SCORING_RATE, centroid, cosine
from voicetune.scoring.scorers import ClipScore, Scorers, get_scorers, to_scoring_rate
from voicetune.scoring.text import ErrorRates, error_rates, words_for_scoring

__all__ = [
    "SCORING_RATE",
    "ClipScore",
    "ErrorRates",
    "Scorers",
    "Summary",
    "centroid",
    "composite_score",
    "cosine",
    "error_rates",
    "get_scorers",
    "summarize",
    "to_scoring_rate",
    "words_for_scoring",
]
