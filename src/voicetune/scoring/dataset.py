"""`voicetune dataset score`: every clip of a dataset scored, and the outliers flagged with reasons.

Three questions per clip, one measure each:
- does its transcript say what is spoken? WER of the transcript against a fresh whisper
  transcription (`transcript_mismatch`);
- is it clean? DNSMOS overall quality (`low_quality`: noise, music, clipping, reverberation);
- is it the same speaker? cosine similarity of its GE2E embedding to the dataset's own speaker
  centroid (`other_speaker`). The centroid is computed twice: once over every clip, then again
  without the fifth of clips least like it, so that a few clips of another voice do not pull it.

Thresholds follow the dataset (its median) with fixed bounds, so that a uniformly noisy dataset is
still flagged as a whole and a clean one only where a clip stands out:

    transcript_mismatch   WER > max(0.5, median WER + 0.3)
    low_quality           DNSMOS < max(1.8, median DNSMOS - 0.6)
    other_speaker         similarity < min(0.75, median similarity - 0.1)
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from voicetune.data.language import dataset_language
from voicetune.data.report import SCORE_KEY  # report.json's key for `prepare --score`
from voicetune.errors import UsageError

WER_BOUND, WER_MARGIN = 0.5, 0.3
DNSMOS_BOUND, DNSMOS_MARGIN = 1.8, 0.6
SIMILARITY_BOUND, SIMILARITY_MARGIN = 0.75, 0.1
CENTROID_TRIM = 0.2  # share of clips least like the first centroid left out of the second
BATCH_CLIPS = 16  # clips scored per batch (one progress step)


@dataclass
class ScoredClip:
    id: str
    wer: float | None
    dnsmos: float | None
    similarity: float | None
    flags: list[str] = field(default_factory=list)
    text: str = ""
    heard: str | None = None
    severity: float = 0.0  # how far past its thresholds, summed: the sort key

    def to_json(self, full: bool = False) -> dict:
        data = {
            "id": self.id,
            "wer": self.wer,
            "dnsmos": self.dnsmos,
            "similarity": self.similarity,
            "flags": self.flags,
        }
        if full:
            data.update(text=self.text, heard=self.heard)
        return data


@dataclass
class Thresholds:
    wer: float | None
    dnsmos: float | None
    similarity: float | None


@dataclass
class DatasetScore:
    dataset: Path
    clips: list[ScoredClip]  # worst first
    thresholds: Thresholds
    language: str | None

    @property
    def flagged(self) -> list[ScoredClip]:
        return [c for c in self.clips if c.flags]

    def report(self) -> dict:
        """The report written by --out and added to report.json by `prepare --score`."""
        counts = Counter(flag for clip in self.clips for flag in clip.flags)
        return {
            "dataset": str(self.dataset),
            "clips": len(self.clips),
            "flagged": len(self.flagged),
            "language": self.language,
            "thresholds": asdict(self.thresholds),
            "flags": dict(sorted(counts.items())),
            "flagged_clips": [c.to_json(full=True) for c in self.flagged],
            "all_clips": [c.to_json(full=True) for c in self.clips],
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def score_dataset(
    dataset: Path,
    whisper_model: str | None,
    language: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> DatasetScore:
    """Score every clip of an LJSpeech-layout dataset (metadata.csv + wavs/) and flag outliers."""
    from voicetune.data.ljspeech import METADATA, audio_path_of, load_audio, read_metadata
    from voicetune.scoring.measures import SCORING_RATE, centroid, cosine
    from voicetune.scoring.scorers import get_scorers

    dataset = Path(dataset)
    metadata = dataset / METADATA
    if not metadata.is_file():
        raise UsageError(
            f"{dataset}: no {METADATA}; give a dataset folder (wavs/ and metadata.csv), e.g. from `voicetune prepare`"
        )
    rows = [row for row in read_metadata(metadata) if row.item_id]
    if not rows:
        raise UsageError(f"{metadata}: no clips; add lines `id|text`")
    missing = [row.item_id for row in rows if not audio_path_of(dataset, row.item_id).is_file()]
    if missing:
        raise UsageError(
            f"{dataset}: {len(missing)} clips of {METADATA} have no audio file (first: {missing[0]}); "
            f"run `voicetune dataset check {dataset}`"
        )
    language = language or dataset_language(dataset)
    scorers = get_scorers(whisper_model, note)
    texts = [row.text for row in rows]
    results, embeddings = [], []
    for first in range(0, len(rows), BATCH_CLIPS):
        batch = rows[first : first + BATCH_CLIPS]
        clips = [load_audio(audio_path_of(dataset, row.item_id), SCORING_RATE) for row in batch]
        results.extend(scorers.score(clips, texts[first : first + BATCH_CLIPS], language))
        batch_embeddings = scorers.embed(clips)
        if batch_embeddings is not None:
            embeddings.append(batch_embeddings)
        if progress:
            progress(min(first + BATCH_CLIPS, len(rows)), len(rows))
    similarities: list[float | None] = [None] * len(rows)
    if embeddings and sum(len(e) for e in embeddings) == len(rows):
        every = np.concatenate(embeddings)
        first_pass = cosine(every, centroid(every))
        kept = np.argsort(-first_pass)[: max(1, int(np.ceil(len(rows) * (1 - CENTROID_TRIM))))]
        similarities = [float(v) for v in cosine(every, centroid(every[kept]))]
    clips = [
        ScoredClip(
            row.clip_id,
            _round(score.wer),
            _round(score.dnsmos),
            _round(similarity),
            text=row.text,
            heard=score.transcript,
        )
        for row, score, similarity in zip(rows, results, similarities)
    ]
    thresholds = flag_outliers(clips)
    clips.sort(key=lambda c: (-len(c.flags), -c.severity, c.id))
    return DatasetScore(dataset, clips, thresholds, language)


def flag_outliers(clips: list[ScoredClip]) -> Thresholds:
    """Set each clip's flags and severity; returns the thresholds (see the module docstring)."""

    def median(values):
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    wer_median = median(c.wer for c in clips)
    mos_median = median(c.dnsmos for c in clips)
    sim_median = median(c.similarity for c in clips)
    thresholds = Thresholds(
        None if wer_median is None else round(max(WER_BOUND, wer_median + WER_MARGIN), 4),
        None if mos_median is None else round(max(DNSMOS_BOUND, mos_median - DNSMOS_MARGIN), 4),
        None if sim_median is None else round(min(SIMILARITY_BOUND, sim_median - SIMILARITY_MARGIN), 4),
    )
    for clip in clips:
        clip.flags, clip.severity = [], 0.0
        if clip.wer is not None and thresholds.wer is not None and clip.wer > thresholds.wer:
            clip.flags.append("transcript_mismatch")
            clip.severity += (clip.wer - thresholds.wer) / WER_MARGIN
        if clip.dnsmos is not None and thresholds.dnsmos is not None and clip.dnsmos < thresholds.dnsmos:
            clip.flags.append("low_quality")
            clip.severity += (thresholds.dnsmos - clip.dnsmos) / DNSMOS_MARGIN
        if (
            clip.similarity is not None
            and thresholds.similarity is not None
            and clip.similarity < thresholds.similarity
        ):
            clip.flags.append("other_speaker")
            clip.severity += (thresholds.similarity - clip.similarity) / SIMILARITY_MARGIN
    return thresholds


def write_score_report(result: DatasetScore, out: Path) -> None:
    """The full report as JSON at `out` (atomic)."""
    from voicetune.data.files import atomic_write_text

    atomic_write_text(Path(out), json.dumps(result.report(), indent=1, ensure_ascii=False) + "\n")


def add_to_prepare_report(result: DatasetScore, report_path: Path) -> None:
    """`prepare --score`: the thresholds and the flagged clips go into the dataset's report.json."""
    from voicetune.data.files import atomic_write_text

    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    full = result.report()
    report[SCORE_KEY] = {k: v for k, v in full.items() if k not in ("all_clips", "dataset")}
    atomic_write_text(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
