"""Stage 2, segment: find speech with silero-vad and plan clips cut at pauses.

Speech is found with the silero-vad model that the `silero-vad` package ships (its torch-free
"sequence" ONNX export, run with onnxruntime: one call per 16 s of audio instead of one per
32 ms frame, so that this stage runs hundreds of times faster than real time on one core).

Clips are then planned by a small dynamic programme over the speech stretches: every clip lasts
between the minimum and maximum duration, cuts go where the pauses are longest, a stretch too
short to stand alone is merged with a neighbour when that stays within bounds (and dropped,
reported, when it cannot), and speech that runs on longer than the maximum without a pause is
split at its quietest point. Cuts made without a clear pause are marked so that the transcriber
can check them against word timestamps (transcribe.transcribe_source).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VAD_RATE = 16000
VAD_FRAME = 512  # samples per silero frame at 16 kHz (32 ms)
VAD_CONTEXT = 64  # samples of the previous frame the model sees with each frame
VAD_BLOCK_FRAMES = 512  # frames per ONNX call
SPEECH_THRESHOLD = 0.5
SILENCE_THRESHOLD = 0.35  # hysteresis: speech ends only below this (silero's own default offset)
MIN_SILENCE = 0.10  # seconds below the threshold that end a stretch of speech
MIN_SPEECH = 0.10  # shorter blips (clicks, breaths) are not speech
SPEECH_EDGE_PAD = 0.03  # silero marks onsets about one frame late
MIN_GAP = 0.12  # shorter gaps between stretches are bridged: too short to cut in safely
EDGE_REACH_END = 0.25  # how far a soft word ending (a fading fricative) may extend a stretch
EDGE_REACH_START = 0.15

ENERGY_HOP = 80  # 5 ms frames for finding the quietest point
QUIET_WINDOW_FRAMES = 4  # smoothing: the quietest 20 ms, not the quietest sample

# Cut kinds, from the safest to the least safe.
CUT_EDGE = "edge"  # start or end of the recording
CUT_PAUSE = "pause"  # inside a pause long enough to leave padding on both sides
CUT_SHORT_PAUSE = "short_pause"  # in the middle of a pause shorter than twice the padding
CUT_FORCED = "forced"  # no pause at all: the quietest point of running speech, checked by ASR
CUT_VOICE = "voice"  # another voice speaks beyond it (prepare --speaker): a pause before that voice

CLEAR_PAUSE = 0.5  # a cut in a pause at least this long costs nothing
MAX_EDGE_SILENCE = 0.6  # silence a clip may keep at an edge to reach the minimum length


@dataclass(frozen=True)
class ClipLimits:
    """Clip duration bounds and padding, in seconds."""

    min_seconds: float = 5.0
    max_seconds: float = 15.0
    pad_seconds: float = 0.2  # silence kept before and after the speech of a clip, where there is some
    max_inner_pause: float = 2.0  # a clip never holds a longer silence: it is cut there

    def fits(self, seconds: float) -> bool:
        return self.min_seconds - 1e-6 <= seconds <= self.max_seconds + 1e-6


@dataclass(frozen=True)
class PlannedClip:
    """A clip to cut from a source: [start, end) in seconds, padding included."""

    start: float
    end: float
    speech_start: float
    speech_end: float
    cut_before: str = CUT_EDGE
    cut_after: str = CUT_EDGE
    flags: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class SegmentPlan:
    """The clips of one source, and the stretches of speech that could not be placed in one."""

    clips: list[PlannedClip]
    dropped: list[tuple[float, float]] = field(default_factory=list)
    speech_seconds: float = 0.0


def silero_model_path() -> Path:
    """The sequence ONNX model inside the installed silero-vad package (found without importing
    the package, whose __init__ imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        from voicetune.errors import VoicetuneError

        raise VoicetuneError("the silero-vad package is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad_16k_sequence.onnx"


class SpeechDetector:
    """silero-vad speech probabilities and speech stretches for 16 kHz mono audio."""

    def __init__(self, threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """One probability per 32 ms frame; the model's recurrent state runs through the whole file."""
        n_frames = math.ceil(len(audio) / VAD_FRAME)
        if n_frames == 0:
            return np.zeros(0, np.float32)
        frames = np.zeros((n_frames, VAD_FRAME), np.float32)
        frames.reshape(-1)[: len(audio)] = audio
        context = np.zeros((n_frames, VAD_CONTEXT), np.float32)
        context[1:] = frames[:-1, -VAD_CONTEXT:]
        inputs = np.concatenate([context, frames], axis=1)
        hidden = np.zeros((1, 1, 128), np.float32)
        cell = np.zeros((1, 1, 128), np.float32)
        probabilities = []
        for first in range(0, n_frames, VAD_BLOCK_FRAMES):
            values, hidden, cell = self.session.run(
                ["speech_probs", "hn", "cn"],
                {"input": inputs[first : first + VAD_BLOCK_FRAMES], "h": hidden, "c": cell},
            )
            probabilities.append(values)
        return np.concatenate(probabilities).reshape(-1)

    def speech_spans(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Stretches of speech (seconds), with hysteresis, short pauses bridged and blips dropped."""
        return spans_from_probabilities(self.speech_probabilities(audio), len(audio) / VAD_RATE)


def spans_from_probabilities(probabilities: np.ndarray, duration: float) -> list[tuple[float, float]]:
    """Turn per-frame speech probabilities into speech stretches in seconds."""
    frame_seconds = VAD_FRAME / VAD_RATE
    min_silence_frames = max(1, round(MIN_SILENCE / frame_seconds))
    spans: list[tuple[float, float]] = []
    in_speech, start, quiet_since = False, 0, None
    for index, p in enumerate(probabilities):
        if not in_speech:
            if p >= SPEECH_THRESHOLD:
                in_speech, start, quiet_since = True, index, None
        elif p < SILENCE_THRESHOLD:
            quiet_since = index if quiet_since is None else quiet_since
            if index - quiet_since + 1 >= min_silence_frames:
                spans.append((start, quiet_since))
                in_speech = False
        else:
            quiet_since = None
    if in_speech:
        spans.append((start, len(probabilities)))
    seconds: list[tuple[float, float]] = []
    for first, stop in spans:
        begin = max(0.0, first * frame_seconds - SPEECH_EDGE_PAD)
        end = min(duration, stop * frame_seconds + SPEECH_EDGE_PAD)
        if end - begin >= MIN_SPEECH:
            if seconds and begin <= seconds[-1][1]:
                seconds[-1] = (seconds[-1][0], end)
            else:
                seconds.append((begin, end))
    return seconds


class FrameEnergy:
    """Smoothed short-time energy (5 ms frames, 20 ms smoothing) of 16 kHz audio, to find quiet points."""

    def __init__(self, audio: np.ndarray):
        n = len(audio) // ENERGY_HOP
        frames = audio[: n * ENERGY_HOP].reshape(n, ENERGY_HOP).astype(np.float32)
        power = (frames**2).mean(axis=1)
        kernel = np.ones(QUIET_WINDOW_FRAMES, np.float32) / QUIET_WINDOW_FRAMES
        self.smoothed = np.convolve(power, kernel, mode="same") if n else power
        self.frame_seconds = ENERGY_HOP / VAD_RATE
        self._floor: float | None = None

    def noise_floor(self) -> float:
        """The level below which a frame is silence: a little above the recording's background noise
        and at least 45 dB below its loud frames."""
        if self._floor is None:
            if not len(self.smoothed):
                self._floor = 0.0
            else:
                background, loud = np.percentile(self.smoothed, [10, 99])
                self._floor = float(max(background * 3.0, loud * 10**-4.5))
        return self._floor

    def level_at(self, time: float) -> float:
        frame = min(max(0, int(time / self.frame_seconds)), len(self.smoothed) - 1)
        return float(self.smoothed[frame]) if len(self.smoothed) else 0.0

    def quietest_point(self, lo: float, hi: float, prefer: float | None = None) -> float:
        """The centre of the quietest 20 ms in [lo, hi] (seconds); ties go to the one nearest `prefer`."""
        first = max(0, int(math.ceil(lo / self.frame_seconds)))
        last = min(len(self.smoothed), int(hi / self.frame_seconds) + 1)
        if last <= first:
            return min(max(prefer if prefer is not None else (lo + hi) / 2, lo), hi)
        window = self.smoothed[first:last]
        floor = window.min()
        # Quieter than the floor plus a hair counts as equally quiet: among those, the nearest.
        candidates = np.flatnonzero(window <= floor * 1.05 + 1e-12) + first
        target = prefer if prefer is not None else (lo + hi) / 2
        best = candidates[np.argmin(np.abs((candidates + 0.5) * self.frame_seconds - target))]
        return float(min(max((best + 0.5) * self.frame_seconds, lo), hi))


def extend_to_quiet(
    spans: list[tuple[float, float]], energy: FrameEnergy, duration: float
) -> list[tuple[float, float]]:
    """Widen each speech stretch over its soft edges (silero tends to end speech before a fading
    consonant does) until the energy falls to the noise floor, then bridge gaps too short to cut in."""
    floor, fs, level = energy.noise_floor(), energy.frame_seconds, energy.smoothed
    widened: list[tuple[float, float]] = []
    for index, (start, end) in enumerate(spans):
        previous_end = widened[-1][1] if widened else 0.0
        next_start = spans[index + 1][0] if index + 1 < len(spans) else duration
        stop = int(min(next_start, end + EDGE_REACH_END, duration) / fs)
        frame = int(end / fs)
        while frame < min(stop, len(level)) and level[frame] > floor:
            frame += 1
        end = max(end, min(frame * fs, duration))
        first = int(max(previous_end, start - EDGE_REACH_START) / fs)
        frame = int(start / fs)
        while frame > first and level[frame - 1] > floor:
            frame -= 1
        start = min(start, frame * fs)
        if widened and start - widened[-1][1] < MIN_GAP:
            widened[-1] = (widened[-1][0], end)
        else:
            widened.append((start, end))
    return widened


def _split_long_stretch(start: float, end: float, energy: FrameEnergy, limits: ClipLimits) -> list[float]:
    """Cut points that split running speech longer than a clip, each at the quietest nearby point."""
    usable = limits.max_seconds - 2 * limits.pad_seconds
    pieces = math.ceil((end - start) / usable)
    cuts: list[float] = []
    previous = start
    for index in range(1, pieces):
        ideal = previous + (end - previous) / (pieces - index + 1)
        # Room to move the cut while both sides still fit in a clip.
        slack = max(0.0, min(1.5, previous + usable - ideal, ideal - (end - usable * (pieces - index))))
        cut = energy.quietest_point(
            max(previous + 0.5, ideal - slack), min(previous + usable, ideal + slack), prefer=ideal
        )
        cuts.append(cut)
        previous = cut
    return cuts


def plan_clips(
    spans: list[tuple[float, float]],
    duration: float,
    energy: FrameEnergy,
    limits: ClipLimits,
    start: float = 0.0,
    edge: str = CUT_EDGE,
) -> SegmentPlan:
    """Group speech stretches into clips within the limits, cutting at the longest pauses.

    The clips lie in [start, duration): a part of the recording when `start` is given, whose
    edges are cuts of kind `edge`."""
    # Units: speech stretches, with running speech longer than a clip split at quiet points.
    units: list[tuple[float, float]] = []
    for first, last in spans:
        if last - first + 2 * limits.pad_seconds > limits.max_seconds:
            edges = [first, *_split_long_stretch(first, last, energy, limits), last]
            units += list(zip(edges[:-1], edges[1:]))
        else:
            units.append((first, last))
    n = len(units)
    speech_seconds = sum(e - s for s, e in spans)
    if n == 0:
        return SegmentPlan([], [], 0.0)
    gaps = [units[k + 1][0] - units[k][1] for k in range(n - 1)]  # 0.0 where a stretch was split

    def room_before(i: int) -> float:  # silence a clip starting at unit i may take: half the gap
        return units[0][0] - start if i == 0 else gaps[i - 1] / 2

    def room_after(j: int) -> float:
        return duration - units[-1][1] if j == n - 1 else gaps[j] / 2

    def span(i: int, j: int) -> tuple[float, float]:
        """Clip edges for units i..j: the usual padding, widened over the silence around (up to
        MAX_EDGE_SILENCE a side) when that is what it takes to reach the minimum length."""
        before, after = min(limits.pad_seconds, room_before(i)), min(limits.pad_seconds, room_after(j))
        short = limits.min_seconds - (units[j][1] - units[i][0] + before + after)
        if short > 0:
            more_before = max(0.0, min(MAX_EDGE_SILENCE, room_before(i)) - before)
            more_after = max(0.0, min(MAX_EDGE_SILENCE, room_after(j)) - after)
            take_before = min(more_before, max(short / 2, short - more_after))
            before += take_before
            after += min(more_after, short - take_before)
        return units[i][0] - before, units[j][1] + after

    def cut_cost(i_gap: int) -> float:
        gap = gaps[i_gap]
        if gap <= 0:
            return 3.0
        return 0.0 if gap >= CLEAR_PAUSE else 0.5 + (CLEAR_PAUSE - gap) / CLEAR_PAUSE

    # best[k]: the cheapest way to place units[:k]; a unit is either in a clip or dropped.
    inf = float("inf")
    best = [0.0] + [inf] * n
    choice: list[tuple[int, bool]] = [(0, False)] * (n + 1)  # (first unit, is a clip)
    for k in range(1, n + 1):
        j = k - 1
        drop = best[j] + 1.0 + 10.0 * (units[j][1] - units[j][0])  # losing speech is the worst outcome
        best[k], choice[k] = drop, (j, False)
        inner_cost = 0.0
        for i in range(j, -1, -1):
            if i < j:
                inner_gap = gaps[i]
                if inner_gap > limits.max_inner_pause:
                    break
                inner_cost += max(0.0, inner_gap - 0.8) * 2.0  # long silences inside a clip are unnatural
            first, last = span(i, j)
            length = last - first
            if length > limits.max_seconds + 1e-6:
                break
            if not limits.fits(length):
                continue
            cost = best[i] + inner_cost + 0.05  # a small cost per clip prefers fewer, longer clips
            cost += cut_cost(i - 1) if i > 0 else 0.0
            cost += cut_cost(j) if j < n - 1 else 0.0
            if cost < best[k]:
                best[k], choice[k] = cost, (i, True)
    groups: list[tuple[int, int, bool]] = []
    k = n
    while k > 0:
        i, is_clip = choice[k]
        groups.append((i, k - 1, is_clip))
        k = i
    groups.reverse()

    def kind(i_gap: int) -> str:
        gap = gaps[i_gap]
        return CUT_FORCED if gap <= 0 else CUT_PAUSE if gap >= 2 * limits.pad_seconds else CUT_SHORT_PAUSE

    clips, dropped = [], []
    for i, j, is_clip in groups:
        if not is_clip:
            dropped.append(units[i])
            continue
        first, last = span(i, j)
        clips.append(
            PlannedClip(
                start=round(first, 4),
                end=round(last, 4),
                speech_start=units[i][0],
                speech_end=units[j][1],
                cut_before=edge if i == 0 else kind(i - 1),
                cut_after=edge if j == n - 1 else kind(j),
            )
        )
    return SegmentPlan(clips, dropped, speech_seconds)


def find_speech(audio: np.ndarray, detector: SpeechDetector) -> tuple[list[tuple[float, float]], FrameEnergy]:
    """The stretches of speech in 16 kHz audio (widened over their soft edges), and its energy."""
    energy = FrameEnergy(audio)
    return extend_to_quiet(detector.speech_spans(audio), energy, len(audio) / VAD_RATE), energy


def segment_speech(audio: np.ndarray, detector: SpeechDetector, limits: ClipLimits) -> tuple[SegmentPlan, FrameEnergy]:
    """Find speech in 16 kHz audio and plan its clips (the segmentation stage on its own)."""
    spans, energy = find_speech(audio, detector)
    return plan_clips(spans, len(audio) / VAD_RATE, energy, limits), energy
