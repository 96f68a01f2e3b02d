"""Stage 2b, the speaker filter (`prepare --speaker REF.wav|auto`): keep only the target voice.

Recordings fetched from video are interviews, podcasts and shows: a host, guests, music. The
filter works on the stretches of speech the voice activity detector found, before clips are
planned, so that a clip never holds two voices:

1. Each stretch is cut into windows of `WINDOW_SECONDS` every `HOP_SECONDS` (one window for a
   shorter stretch), and every window gets a GE2E speaker embedding (the scoring package's
   encoder). A stretch shorter than `MIN_JUDGED_SECONDS` says too little about its voice: it
   takes the voice of the nearest window. Windows, not whole stretches, are judged: two voices
   with no pause between them are one stretch, and a stretch's mean hides a second voice in it.
2. The target voice is an embedding: the reference recording's (`--speaker REF.wav`), or with
   `--speaker auto` the voice that speaks most over the files of the dataset's first prepare run,
   which must hold a clear majority (`MAJORITY`) of the speech of the two voices that speak most. It is kept in
   DATASET/.voicetune/speaker.json, so that files added later are judged against the same voice.
3. Each file's windows are clustered (divisive 2-means on cosine): a group is split in two until
   each group is one voice, and a group is the target voice when its centroid is at least
   `SAME_VOICE` like the target. Clustering each file on its own is what tells similar voices
   apart: two women recorded the same way are 0.73-0.88 alike as centroids, where single windows
   of the target are 0.75-0.99 like it; a group's centroid averages the window's noise away.
4. Windows of both kinds inside one stretch are a change of voice without a pause: the stretch is
   cut where the windows change; where windows of both voices overlap, the speech is left out.
   Clips are planned within each run of the target's speech (never across another voice).

Left-out speech goes in report.json's rejections as `other_speaker` (another voice) and
`speaker_change` (the overlap around a change of voice without a pause), with its similarity to the
target voice and the filter's estimated probability that it is the target (`p_target`); kept clips
carry their own `p_target`, from which the report estimates the purity of the kept clips.
"""

from __future__ import annotations

import json
import math
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
# The rows of those that judge a voice, which a person may overrule; speaker_change is where two
# voices meet inside a window (its p_target, the mean of both voices' windows, is near 0.5).
JUDGED_REASONS = ("other_speaker",)
WINDOW_SECONDS = 1.5  # about GE2E's own 1.6 s partial utterance
HOP_SECONDS = 0.75
MIN_JUDGED_SECONDS = 1.0  # shorter stretches take their nearest window's voice
# A group of windows is the target voice when its centroid is at least this like the target.
# Measured on pairs of telephone voices (bench/speaker_pairs.py): groups of the target's windows
# 0.96-0.99 like it, and a sixth of them, split off, 0.91-0.93; groups of another voice 0.70-0.88
# (0.91 for two espeak-ng variants). The margin is thin on both sides: see docs/guides/prepare.md.
SAME_VOICE = 0.90
MIN_GROUP_WINDOWS = 4  # about 3.75 s of speech: a smaller group is not taken for a voice of its own,
SMALL_GROUP_FLOOR = 0.85  # unless its centroid is less like the target than this
MAX_SPLITS = 3  # depth of the divisive clustering: up to 8 groups per file
KMEANS_ROUNDS = 10
MAJORITY = 0.60  # `auto` needs the voice that speaks most to hold this share of the two leading voices' speech
# The scale of a window's margin (similarity to the target's centroid minus to the nearest other
# voice's) in its probability of being the target: a margin of 0.075 is 95%.
MARGIN_SCALE = 0.025
# Left-out speech at least this likely to be the target is transcribed and set aside as removed
# clips (`dataset restore` brings one back); the other voice's own speech scores under 0.05.
BORDERLINE = 0.2
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
class FileWindows:
    """The stretches of speech of one file, its windows and their embeddings."""

    spans: list[tuple[float, float]]
    windows: np.ndarray  # (n, 2): start and end, in seconds
    stretch_of: np.ndarray  # (n,): the stretch each window lies in
    embeddings: np.ndarray  # (n, 256)

    @property
    def seconds(self) -> np.ndarray:
        return self.windows[:, 1] - self.windows[:, 0]


def window_spans(spans: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Windows of `WINDOW_SECONDS` every `HOP_SECONDS` or so across each stretch long enough to
    judge (evenly spread, the last one ending with the stretch), and the stretch of each."""
    windows: list[tuple[float, float]] = []
    owners: list[int] = []
    judged = [i for i, (start, end) in enumerate(spans) if end - start >= MIN_JUDGED_SECONDS]
    for index in judged or range(len(spans)):  # a file of short stretches only: judge them anyway
        start, end = spans[index]
        if end - start <= WINDOW_SECONDS:
            starts = np.array([start])
        else:
            starts = np.linspace(
                start, end - WINDOW_SECONDS, math.ceil((end - start - WINDOW_SECONDS) / HOP_SECONDS) + 1
            )
        windows += [(float(s), min(end, float(s) + WINDOW_SECONDS)) for s in starts]
        owners += [index] * len(starts)
    return np.array(windows, np.float64).reshape(-1, 2), np.array(owners, np.int64)


def embed_windows(audio: np.ndarray, spans: list[tuple[float, float]], embed: Embed) -> FileWindows:
    """The windows of the stretches of 16 kHz `audio`, embedded."""
    windows, owners = window_spans(spans)
    if not len(windows):
        return FileWindows(list(spans), windows, owners, np.zeros((0, 256), np.float32))
    pieces = [audio[int(start * ANALYSIS_RATE) : int(end * ANALYSIS_RATE)] for start, end in windows]
    return FileWindows(list(spans), windows, owners, np.asarray(embed(pieces), np.float32))


def _centroid(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    mean = (embeddings * weights[:, None]).sum(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-9)).astype(np.float32)


def two_groups(embeddings: np.ndarray, weights: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """2-means on cosine, one group starting at `seed`, the other at the embedding least like it;
    returns whether each embedding is in the first group (all True when they do not split)."""
    first, other = seed, embeddings[int(np.argmin(embeddings @ seed))]
    mine = np.ones(len(embeddings), bool)
    for _ in range(KMEANS_ROUNDS):
        now = embeddings @ first >= embeddings @ other
        if now.all() or not now.any() or (now == mine).all():
            mine = now if now.any() else mine
            break
        mine = now
        first, other = _centroid(embeddings[mine], weights[mine]), _centroid(embeddings[~mine], weights[~mine])
    return mine


def voice_groups(
    embeddings: np.ndarray, weights: np.ndarray, seed: np.ndarray, depth: int = MAX_SPLITS
) -> list[np.ndarray]:
    """Divisive clustering: split in two (`two_groups`) until a group's halves are one voice (their
    centroids at least `SAME_VOICE` alike) or `depth` splits deep. Returns the groups as masks."""
    everything = np.ones(len(embeddings), bool)
    if depth == 0 or len(embeddings) < 4:
        return [everything]
    first = two_groups(embeddings, weights, seed)
    if first.all():
        return [everything]
    a, b = _centroid(embeddings[first], weights[first]), _centroid(embeddings[~first], weights[~first])
    if float(a @ b) >= SAME_VOICE:
        return [everything]
    groups = []
    for half, centroid in ((first, a), (~first, b)):
        for inner in voice_groups(embeddings[half], weights[half], centroid, depth - 1):
            mask = np.zeros(len(embeddings), bool)
            mask[np.flatnonzero(half)[inner]] = True
            groups.append(mask)
    return groups


@dataclass(frozen=True)
class Judged:
    """The voice of each window of one file."""

    similarity: np.ndarray  # of each window to the target voice
    is_target: np.ndarray
    p_target: np.ndarray  # the estimated probability that each window is the target voice


def judge(found: FileWindows, target: np.ndarray) -> Judged:
    """Which windows of a file are the target voice (see the module docstring)."""
    embeddings, weights = found.embeddings, found.seconds
    similarity = embeddings @ target
    if not len(embeddings):
        return Judged(similarity, np.zeros(0, bool), np.zeros(0))
    is_target = np.zeros(len(embeddings), bool)
    groups = [(g, _centroid(embeddings[g], weights[g])) for g in voice_groups(embeddings, weights, target)]
    for group, centroid in groups:
        if float(centroid @ target) >= SAME_VOICE:
            is_target |= group
    # A group split off the target's own speech in this file is more like the file's target than
    # like the reference (one recording, one microphone): it is the target too.
    if is_target.any():
        mine = _centroid(embeddings[is_target], weights[is_target])
        for group, centroid in groups:
            if float(centroid @ mine) >= SAME_VOICE:
                is_target |= group
    # Another voice is a group of at least MIN_GROUP_WINDOWS, or a smaller one clearly unlike the
    # target; the windows of a small group near the line (a few atypical windows of the target, too
    # few for their centroid to mean much) go with the nearest voice.
    others = [
        c
        for g, c in groups
        if not (g & is_target).any() and (g.sum() >= MIN_GROUP_WINDOWS or float(c @ target) < SMALL_GROUP_FLOOR)
    ]
    if not is_target.any() or not others:
        if is_target.any():
            is_target[:] = True
        return Judged(similarity, is_target, is_target.astype(np.float64))
    mine = _centroid(embeddings[is_target], weights[is_target])
    # A window's margin: how much more like the file's target voice than like the nearest other.
    margin = embeddings @ mine - np.max(embeddings @ np.stack(others).T, axis=1)
    is_target = _smoothed(margin >= 0, found.stretch_of)
    p_target = 1.0 / (1.0 + np.exp(-np.clip(margin / MARGIN_SCALE, -30, 30)))
    return Judged(similarity, is_target, p_target)


def _smoothed(labels: np.ndarray, stretch_of: np.ndarray) -> np.ndarray:
    """A lone window between two windows of the other kind in the same stretch takes their kind:
    1.5 s is too short a turn to trust one window's word for."""
    out = labels.copy()
    for i in range(1, len(labels) - 1):
        same_stretch = stretch_of[i - 1] == stretch_of[i] == stretch_of[i + 1]
        if same_stretch and labels[i - 1] == labels[i + 1] != labels[i]:
            out[i] = labels[i - 1]
    return out


@dataclass(frozen=True)
class Piece:
    """A part of a stretch of speech, of one kind: "target", "other" (another voice) or "change"
    (where windows of both overlap), with the mean similarity and p_target of its windows."""

    start: float
    end: float
    kind: str
    similarity: float
    p_target: float


GRID = 0.01  # seconds: the resolution at which a stretch is cut where its windows change voice


def pieces(found: FileWindows, judged: Judged) -> list[Piece]:
    """The stretches of a file cut into pieces of one kind, in time order."""
    out: list[Piece] = []
    middles = found.windows.mean(axis=1) if len(found.windows) else np.zeros(0)
    for index, (start, end) in enumerate(found.spans):
        own = np.flatnonzero(found.stretch_of == index)
        if not len(own):  # a short stretch: the voice of the nearest window
            if not len(middles):
                continue
            own = np.array([int(np.argmin(np.abs(middles - (start + end) / 2)))])
            out.append(_piece(start, end, own, judged))
            continue
        if judged.is_target[own].all() or not judged.is_target[own].any():
            out.append(_piece(start, end, own, judged))
            continue
        # The middles of cells of GRID seconds, the last cell ending with the stretch: a middle
        # past the stretch's end lies in no window, and would read as another voice.
        edges = np.r_[np.arange(start, end, GRID), end]
        grid = (edges[:-1] + edges[1:]) / 2
        covered = [
            np.any(
                [
                    (found.windows[w, 0] <= grid) & (grid < found.windows[w, 1])
                    for w in own
                    if judged.is_target[w] == kind
                ]
                or [np.zeros(len(grid), bool)],
                axis=0,
            )
            for kind in (True, False)
        ]
        kinds = np.where(covered[0] & covered[1], 2, np.where(covered[0], 0, 1))
        cuts = np.flatnonzero(np.diff(kinds)) + 1
        for first, last in zip(np.r_[0, cuts], np.r_[cuts, len(grid)]):
            a, b = edges[first], edges[last]
            near = [w for w in own if found.windows[w, 0] < b and found.windows[w, 1] > a]
            out.append(_piece(a, b, np.array(near), judged, ("target", "other", "change")[kinds[first]]))
    return out


def _piece(start: float, end: float, windows: np.ndarray, judged: Judged, kind: str | None = None) -> Piece:
    if kind is None:
        kind = "target" if judged.is_target[windows].all() else "other"
    return Piece(
        float(start), float(end), kind, float(judged.similarity[windows].mean()), float(judged.p_target[windows].mean())
    )


def plan_target_clips(
    found: FileWindows, judged: Judged, duration: float, energy: FrameEnergy, limits: ClipLimits, path: str
) -> tuple[SegmentPlan, list[dict], list[float]]:
    """Clips planned within each run of the target's speech; returns the plan, the rejections
    (report.json rows) of what was left out, and each clip's p_target (its windows' lowest)."""
    left_out: list[dict] = []
    plan = SegmentPlan([], [], 0.0)
    run: list[Piece] = []
    run_start = 0.0

    def close_run(end: float) -> None:
        if run:
            part = plan_clips([(p.start, p.end) for p in run], end, energy, limits, start=run_start, edge=CUT_VOICE)
            plan.clips.extend(part.clips)
            plan.dropped.extend(part.dropped)

    cut = pieces(found, judged)
    for piece in cut:
        if piece.kind == "target":
            run.append(piece)
            continue
        close_run(piece.start)
        run, run_start = [], piece.end
        detail = (
            f"another voice: similarity {piece.similarity:.2f} to the voice kept"
            if piece.kind == "other"
            else "a change of voice without a pause: both voices within a window"
        )
        reason = "other_speaker" if piece.kind == "other" else "speaker_change"
        left_out.append(_row(path, reason, detail, piece.start, piece.end, piece.similarity, piece.p_target))
    close_run(duration)
    plan.speech_seconds = float(sum(end - start for start, end in found.spans))
    confidence = [
        min([p.p_target for p in cut if p.kind == "target" and p.start < clip.end and p.end > clip.start] or [1.0])
        for clip in plan.clips
    ]
    return plan, left_out, confidence


def borderline_clips(rows: list[dict], duration: float, energy: FrameEnergy, limits: ClipLimits) -> list[PlannedClip]:
    """Clips planned within runs of left-out speech (report rows, in time order) that may be the
    target voice after all: what `prepare` sets aside for `dataset restore`."""
    clips: list[PlannedClip] = []
    run: list[dict] = []
    for row in [*rows, None]:
        if row is not None and (not run or row["start"] - run[-1]["end"] <= limits.max_inner_pause):
            run.append(row)
            continue
        if run:
            spans = [(r["start"], r["end"]) for r in run]
            clips += plan_clips(spans, run[-1]["end"], energy, limits, start=run[0]["start"], edge=CUT_VOICE).clips
        run = [row] if row is not None else []
    return [c for c in clips if c.end <= duration]


def _row(path: str, reason: str, detail: str, start: float, end: float, similarity: float, p_target: float) -> dict:
    return {
        **Rejection(path, reason, detail, end - start, start, end).to_json(),
        "similarity": round(float(similarity), 3),
        "p_target": round(float(p_target), 3),
    }


@dataclass(frozen=True)
class MainVoice:
    """`--speaker auto`'s choice: the voice that speaks most, its share of the speech, the share of
    the voice that speaks most after it, and where each can be heard (path, start, end)."""

    embedding: np.ndarray
    share: float
    runner_up_share: float
    sample: tuple[str, float, float]
    runner_up_sample: tuple[str, float, float] | None

    @property
    def clear(self) -> bool:
        """Whether the voice holds a clear majority over the next one: `MAJORITY` of the speech
        of the two (a host with 60% of an interview and guests with 20% each is clear)."""
        return self.share >= MAJORITY * (self.share + self.runner_up_share)


SEED_SIMILARITY = 0.80  # single windows of one voice are this alike (0.75-0.99 to its centroid)
MAX_SEED_WINDOWS = 2000  # the seed's search compares windows pairwise: a sample of them is enough


def main_voice(found: Sequence[FileWindows], paths: Sequence[str]) -> MainVoice:
    """`--speaker auto`: the voice that speaks most (in seconds) over these files' windows.

    The clustering starts at the window with the most speech of its own voice around it (windows at
    least `SEED_SIMILARITY` like it); a voice is the largest group of `voice_groups` with the groups
    like it (`_voice_of`), and its share of the speech is what `judge` keeps of it in each file."""
    embeddings = np.concatenate([f.embeddings for f in found])
    seconds = np.concatenate([f.seconds for f in found])
    sample = np.linspace(0, len(embeddings) - 1, min(len(embeddings), MAX_SEED_WINDOWS)).astype(int)
    support = ((embeddings[sample] @ embeddings[sample].T) >= SEED_SIMILARITY).astype(np.float64) @ seconds[sample]
    seed = embeddings[sample[int(np.argmax(support))]]
    leaves = voice_groups(embeddings, seconds, seed)
    voices = [_voice_of(max(leaves, key=lambda g: float(seconds[g].sum())), leaves, embeddings, seconds)]
    rest = [g for g in leaves if not (g & voices[0][1]).any()]
    if rest:
        voices.append(_voice_of(max(rest, key=lambda g: float(seconds[g].sum())), rest, embeddings, seconds))
    # The share is what the files' own judgement (`judge`, as prepare will run it) gives the voice.
    target = voices[0][0]
    kept = sum(float(f.seconds[judge(f, target).is_target].sum()) for f in found)
    total = float(seconds.sum())
    samples = [_sample(found, paths, mask, centroid) for centroid, mask in voices]
    return MainVoice(
        target,
        kept / total,
        float(seconds[voices[1][1]].sum()) / total if len(voices) > 1 else 0.0,
        samples[0],
        samples[1] if len(samples) > 1 else None,
    )


def _voice_of(
    leaf: np.ndarray, leaves: list[np.ndarray], embeddings: np.ndarray, seconds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The voice of a group: the groups whose centroids are `SAME_VOICE` like the centroid of
    them all (found from `leaf` in a few rounds). The clustering splits one voice's windows in
    groups less alike than that, each of which is still `SAME_VOICE` like the voice as a whole."""
    mask = leaf
    for _ in range(3):
        centroid = _centroid(embeddings[mask], seconds[mask])
        mask = leaf.copy()
        for group in leaves:
            if float(_centroid(embeddings[group], seconds[group]) @ centroid) >= SAME_VOICE:
                mask |= group
    return _centroid(embeddings[mask], seconds[mask]), mask


def _sample(found: Sequence[FileWindows], paths: Sequence[str], mask: np.ndarray, centroid: np.ndarray):
    """Where a voice can be heard: the longest stretch whose windows are all in its group (the one
    most like its centroid among equals), else its window most like its centroid."""
    embeddings = np.concatenate([f.embeddings for f in found])
    offsets = np.cumsum([0] + [len(f.embeddings) for f in found])
    best: tuple[tuple[float, float], str, float, float] | None = None
    for f, path, first in zip(found, paths, offsets):
        for index, (start, end) in enumerate(f.spans):
            own = first + np.flatnonzero(f.stretch_of == index)
            if len(own) and mask[own].all():
                key = (round(end - start, 1), float((embeddings[own] @ centroid).mean()))
                if best is None or key > best[0]:
                    best = (key, path, start, end)
    if best is None:
        members = np.flatnonzero(mask)
        k = int(members[np.argmax(embeddings[members] @ centroid)])
        file = int(np.searchsorted(offsets, k, side="right")) - 1
        start, end = found[file].windows[k - offsets[file]]
        return paths[file], round(float(start), 1), round(float(end), 1)
    return best[1], round(best[2], 1), round(best[3], 1)


def stored_target(state_dir: Path) -> dict:
    """DATASET/.voicetune/speaker.json as a dict (empty when there is none)."""
    try:
        return json.loads((Path(state_dir) / TARGET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def load_target(state_dir: Path, setting: str) -> np.ndarray | None:
    """The target voice chosen by an earlier run of this dataset, if any."""
    try:
        stored = json.loads((Path(state_dir) / TARGET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stored.get("speaker") != setting:
        return None
    return np.asarray(stored["embedding"], np.float32)


def save_target(
    state_dir: Path, setting: str, embedding: np.ndarray, chosen_from: str, sample: list | None = None
) -> None:
    """Keep the target voice in DATASET/.voicetune/, with where it was chosen from and (auto)
    where it can be heard: [path, start, end]."""
    data = {
        "speaker": setting,
        "chosen_from": chosen_from,
        "sample": sample,
        "embedding": [round(float(v), 6) for v in embedding],
    }
    files.atomic_write_text(Path(state_dir) / TARGET_FILE, json.dumps(data) + "\n")


def segment_target_voice(
    audio: np.ndarray, detector, limits: ClipLimits, target: np.ndarray, embed: Embed, path: str
) -> tuple[SegmentPlan, FrameEnergy, list[dict], list[float]]:
    """The segmentation stage with the speaker filter: the clips of the target voice in 16 kHz
    `audio`, its energy, the rejections of the other voices' speech, and each clip's p_target."""
    from voicetune.data.segment import find_speech

    spans, energy = find_speech(audio, detector)
    found = embed_windows(audio, spans, embed)
    plan, left_out, confidence = plan_target_clips(
        found, judge(found, target), len(audio) / ANALYSIS_RATE, energy, limits, path
    )
    return plan, energy, left_out, confidence


def file_windows(audio: np.ndarray, detector, embed: Embed) -> FileWindows:
    """The embedded windows of speech of one file (the pre-pass of `--speaker auto`)."""
    from voicetune.data.segment import find_speech

    spans, _ = find_speech(audio, detector)
    return embed_windows(audio, spans, embed)
