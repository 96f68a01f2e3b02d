"""Stage 2b, the speaker filter (`prepare --speaker REF.wav|auto`): keep only the target voice.

Recordings fetched from video are interviews, podcasts and shows: a host, guests, music. The
filter works on the stretches of speech the voice activity detector found, before clips are
planned, so that a clip never spans two voices that a pause separates:

1. Every stretch gets a GE2E speaker embedding (the scoring package's encoder). A stretch shorter
   than `MIN_JUDGED_SECONDS` says too little about its voice: it takes the voice of the nearest
   stretch that is long enough.
2. The target voice is an embedding: the reference recording's (`--speaker REF.wav`), or with
   `--speaker auto` the voice that speaks most over the files of the dataset's first prepare run
   (the larger group, in speech seconds, of a two-way split of all their stretches). It is kept in
   DATASET/.voicetune/speaker.json, so that files added later are judged against the same voice.
3. In each file, the stretches are split two ways (2-means on cosine): one group anchored at the
   target voice, the other at the stretch least like it. A stretch is the target's when it is nearer
   the target than the other group's centroid, and at least `MIN_SIMILARITY` like it. When the
   other group's centroid is `SAME_VOICE` like the target, the file holds one voice and only the
   floor applies.
4. Clips are planned within each run of the target's stretches (never across another voice), and
   each clip's halves are judged again: a clip whose halves disagree (a voice change without a
   pause, inside one stretch) is left out, before any transcription is spent on it.

Left-out stretches and clips go in report.json's rejections as `other_speaker` and
`speaker_change`, with their similarity to the target voice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicetune import fsio
from voicetune.data import files
from voicetune.data.ingest import ANALYSIS_RATE, Rejection, read_reference
from voicetune.data.segment import CUT_VOICE, ClipLimits, FrameEnergy, PlannedClip, SegmentPlan, plan_clips
from voicetune.errors import UsageError

AUTO = "auto"
REASONS = ("other_speaker", "speaker_change")  # what the filter leaves out, in report.json's rejections
MIN_SIMILARITY = 0.70  # below this a stretch is never the target voice (other voices: 0.45-0.8)
# Groups whose centroids are this alike are one voice. Measured on telephone prompts (8 kHz, where
# voices sound most alike): three voices' centroids 0.72-0.77 apart, while a group of one voice's
# least typical stretches is 0.88-0.89 like the rest.
SAME_VOICE = 0.85
MIN_JUDGED_SECONDS = 1.0  # shorter stretches take their nearest long stretch's voice
# A clip's half is the target voice only if it is nearly as like the target as the file's typical
# stretch of it (median similarity minus this): halves of one voice, measured: 0.87-0.95 with the
# median at 0.92; a half of another voice: 0.68-0.82.
HALF_MARGIN = 0.10
KMEANS_ROUNDS = 8
TARGET_FILE = "speaker.json"  # in DATASET/.voicetune/

Embed = Callable[[Sequence[np.ndarray]], np.ndarray]


def speaker_setting(speaker: str | None) -> str | None:
    """What settings.json records of --speaker: None, "auto", or "ref:<sha256 of the reference file>"
    (a reference moved or renamed is the same reference)."""
    if speaker is None or speaker == AUTO:
        return speaker
    path = Path(speaker)
    if not path.is_file():
        raise UsageError(
            f"--speaker {speaker}: no such file; pass a recording of the voice to keep (10 s or more) or `auto`"
        )
    return "ref:" + fsio.sha256_file(path)


def encoder() -> Embed:
    """The scoring package's speaker encoder (GE2E): clips at 16 kHz in, L2-normed embeddings out."""
    from voicetune.scoring.scorers import get_scorers

    scorers = get_scorers(None)
    if scorers.similarity is None:
        raise UsageError("--speaker needs the speaker encoder (resemblyzer), which did not load: run `make install`")

    def embed(clips: Sequence[np.ndarray]) -> np.ndarray:
        embeddings = scorers.embed(clips)
        return np.zeros((0, 256), np.float32) if embeddings is None else embeddings

    return embed


def reference_voice(path: Path, embed: Embed) -> np.ndarray:
    """The embedding of a reference recording of the voice to keep."""
    import soxr

    audio, rate = read_reference(Path(path))
    if rate != ANALYSIS_RATE:
        audio = soxr.resample(audio, rate, ANALYSIS_RATE).astype(np.float32)
    if len(audio) < 2 * ANALYSIS_RATE or not np.abs(audio).max() > 1e-3:
        raise UsageError(
            f"--speaker {path}: {len(audio) / ANALYSIS_RATE:.1f} s of audio with no voice to learn; "
            "pass a recording of the voice to keep, 10 s or more"
        )
    return embed([audio])[0]


@dataclass(frozen=True)
class Stretches:
    """The stretches of speech of one file with their embeddings."""

    spans: list[tuple[float, float]]
    embeddings: np.ndarray  # (len(spans), 256); a short stretch has its nearest long one's

    @property
    def seconds(self) -> np.ndarray:
        return np.array([end - start for start, end in self.spans])


def embed_stretches(audio: np.ndarray, spans: list[tuple[float, float]], embed: Embed) -> Stretches:
    """Embed each stretch of 16 kHz `audio` long enough to judge; short ones borrow a neighbour's."""
    judged = [i for i, (start, end) in enumerate(spans) if end - start >= MIN_JUDGED_SECONDS] or list(range(len(spans)))
    if not spans:
        return Stretches([], np.zeros((0, 256), np.float32))
    pieces = [audio[int(spans[i][0] * ANALYSIS_RATE) : int(spans[i][1] * ANALYSIS_RATE)] for i in judged]
    own = embed(pieces)
    embeddings = np.zeros((len(spans), own.shape[1]), np.float32)
    middles = np.array([(spans[i][0] + spans[i][1]) / 2 for i in judged])
    for index, (start, end) in enumerate(spans):
        embeddings[index] = own[int(np.argmin(np.abs(middles - (start + end) / 2)))]
    return Stretches(list(spans), embeddings)


def _centroid(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    mean = (embeddings * weights[:, None]).sum(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-9)).astype(np.float32)


def two_voices(
    embeddings: np.ndarray,
    weights: np.ndarray,
    first: np.ndarray,
    anchored: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Split embeddings two ways by 2-means on cosine, the first group starting at `first` (and
    staying there when `anchored`), the other at the embedding least like it. Returns (first
    centroid, other centroid, whether each embedding is in the first group); the other centroid is
    None when the embeddings are one voice (the centroids at least `SAME_VOICE` alike)."""
    other = embeddings[int(np.argmin(embeddings @ first))]
    mine = np.ones(len(embeddings), bool)
    for _ in range(KMEANS_ROUNDS):
        mine = embeddings @ first >= embeddings @ other
        if mine.all() or not mine.any():
            break
        if not anchored:
            first = _centroid(embeddings[mine], weights[mine])
        other = _centroid(embeddings[~mine], weights[~mine])
    if not mine.any():  # every embedding is nearer another voice: a file without the target, or one voice
        other = _centroid(embeddings, weights)
    one_voice = mine.all() or float(first @ other) >= SAME_VOICE
    if one_voice:
        return (first if anchored else _centroid(embeddings, weights)), None, np.ones(len(embeddings), bool)
    return first, other, mine


def split_voices(
    embeddings: np.ndarray,
    weights: np.ndarray,
    first: np.ndarray,
    anchored: bool,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Split off other voices one at a time (`two_voices` on what is left of the first group) until
    what is left is one voice. Returns (its centroid, the other voices' centroids, whether each
    embedding is in it)."""
    mine = np.ones(len(embeddings), bool)
    others: list[np.ndarray] = []
    while mine.sum() >= 2:
        first, other, stays = two_voices(embeddings[mine], weights[mine], first, anchored)
        if other is None:
            break
        others.append(other)
        mine[np.flatnonzero(mine)[~stays]] = False
    return first, others, mine


def main_voice(stretches: Sequence[Stretches]) -> np.ndarray:
    """`--speaker auto`: the voice that speaks most (in seconds) over these files' stretches.

    The search starts at the stretch with the most speech of its own voice around it (stretches at
    least `SAME_VOICE` like it, in seconds), and the splits refine that voice's centroid."""
    embeddings = np.concatenate([s.embeddings for s in stretches])
    seconds = np.concatenate([s.seconds for s in stretches])
    support = ((embeddings @ embeddings.T) >= SAME_VOICE).astype(np.float64) @ seconds
    seed = int(np.argmax(support))
    return split_voices(embeddings, seconds, embeddings[seed], anchored=False)[0]


@dataclass(frozen=True)
class Judged:
    """The voice of each stretch of one file."""

    target: np.ndarray
    others: list[np.ndarray]  # the centroids of the other voices of the file
    similarity: np.ndarray  # of each stretch to the target
    is_target: np.ndarray

    def matches(self, embeddings: np.ndarray) -> np.ndarray:
        """Whether embeddings (of clips' halves) are the target voice: nearer it than the file's
        other voices, and within `HALF_MARGIN` of its stretches' median similarity."""
        similarity = embeddings @ self.target
        nearer = np.ones(len(embeddings), bool)
        for other in self.others:
            nearer &= similarity >= embeddings @ other
        typical = float(np.median(self.similarity[self.is_target])) if self.is_target.any() else 1.0
        return nearer & (similarity >= max(MIN_SIMILARITY, typical - HALF_MARGIN))


def judge(stretches: Stretches, target: np.ndarray) -> Judged:
    """Which stretches of a file are the target voice (see the module docstring)."""
    similarity = stretches.embeddings @ target
    if not stretches.spans:
        return Judged(target, [], np.zeros(0), np.zeros(0, bool))
    _, others, mine = split_voices(stretches.embeddings, stretches.seconds, target, anchored=True)
    return Judged(target, others, similarity, mine & (similarity >= MIN_SIMILARITY))


def plan_target_clips(
    audio: np.ndarray,
    stretches: Stretches,
    judged: Judged,
    energy: FrameEnergy,
    limits: ClipLimits,
    embed: Embed,
    path: str,
) -> tuple[SegmentPlan, list[dict]]:
    """Clips planned within each run of the target's stretches, and the clips whose halves agree
    with it; returns the plan and the rejections (report.json rows) of what was left out."""
    duration = len(audio) / ANALYSIS_RATE
    left_out: list[dict] = []
    clips: list[PlannedClip] = []
    dropped: list[tuple[float, float]] = []
    run: list[tuple[float, float]] = []
    run_start = 0.0

    def close_run(end: float) -> None:
        if run:
            plan = plan_clips(run, end, energy, limits, start=run_start, edge=CUT_VOICE)
            clips.extend(plan.clips)
            dropped.extend(plan.dropped)

    for (start, end), keep, similarity in zip(stretches.spans, judged.is_target, judged.similarity):
        if keep:
            run.append((start, end))
            continue
        close_run(start)
        run, run_start = [], end
        left_out.append(
            _row(
                path,
                "other_speaker",
                f"another voice: similarity {similarity:.2f} to the voice kept",
                start,
                end,
                similarity,
            )
        )
    close_run(duration)
    kept = _clips_whose_halves_agree(audio, clips, judged, embed, path, left_out)
    speech = float(stretches.seconds.sum()) if stretches.spans else 0.0
    return SegmentPlan(kept, dropped, speech), left_out


def _clips_whose_halves_agree(
    audio, clips: list[PlannedClip], judged: Judged, embed: Embed, path: str, left_out: list[dict]
) -> list[PlannedClip]:
    if not clips:
        return []
    halves = []
    for clip in clips:
        middle = (clip.speech_start + clip.speech_end) / 2
        halves += [
            audio[int(clip.speech_start * ANALYSIS_RATE) : int(middle * ANALYSIS_RATE)],
            audio[int(middle * ANALYSIS_RATE) : int(clip.speech_end * ANALYSIS_RATE)],
        ]
    embeddings = embed(halves)
    agree = judged.matches(embeddings).reshape(-1, 2)
    similarity = (embeddings @ judged.target).reshape(-1, 2)
    kept = []
    for clip, (first, second), (a, b) in zip(clips, agree, similarity):
        if first and second:
            kept.append(clip)
        else:
            left_out.append(
                _row(
                    path,
                    "speaker_change",
                    f"its halves are not one voice: similarity {a:.2f} and {b:.2f} to the voice kept",
                    clip.start,
                    clip.end,
                    min(a, b),
                )
            )
    return kept


def _row(path: str, reason: str, detail: str, start: float, end: float, similarity: float) -> dict:
    return {
        **Rejection(path, reason, detail, end - start, start, end).to_json(),
        "similarity": round(float(similarity), 3),
    }


def load_target(state_dir: Path, setting: str) -> np.ndarray | None:
    """The target voice chosen by an earlier run of this dataset, if any."""
    try:
        stored = json.loads((Path(state_dir) / TARGET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stored.get("speaker") != setting:
        return None
    return np.asarray(stored["embedding"], np.float32)


def save_target(state_dir: Path, setting: str, embedding: np.ndarray, chosen_from: str) -> None:
    data = {"speaker": setting, "chosen_from": chosen_from, "embedding": [round(float(v), 6) for v in embedding]}
    files.atomic_write_text(Path(state_dir) / TARGET_FILE, json.dumps(data) + "\n")


def segment_target_voice(
    audio: np.ndarray, detector, limits: ClipLimits, target: np.ndarray, embed: Embed, path: str
) -> tuple[SegmentPlan, FrameEnergy, list[dict]]:
    """The segmentation stage with the speaker filter: the clips of the target voice in 16 kHz
    `audio`, its energy, and the rejections of the other voices' stretches and of mixed clips."""
    from voicetune.data.segment import find_speech

    spans, energy = find_speech(audio, detector)
    stretches = embed_stretches(audio, spans, embed)
    plan, left_out = plan_target_clips(audio, stretches, judge(stretches, target), energy, limits, embed, path)
    return plan, energy, left_out


def file_stretches(audio: np.ndarray, detector, embed: Embed) -> Stretches:
    """The embedded stretches of speech of one file (the pre-pass of `--speaker auto`)."""
    from voicetune.data.segment import find_speech

    spans, _ = find_speech(audio, detector)
    return embed_stretches(audio, spans, embed)
