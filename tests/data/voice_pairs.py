"""Pairs of voices taking turns, for the speaker filter's test and bench (`prepare --speaker`).

Each pair is a target voice, who speaks two turns in three, and another voice; a pair is written
as two recordings of about 110 s (one wav, one mp3) in which they alternate in turns of 3-8 s
separated by pauses of 0.4-1.6 s, at 8 kHz (telephone) and resampled to 16 kHz, with a reference
recording of 12 s of the target's prompts that are in neither recording. Where every prompt lies,
and whose it is, is known from how the recordings were assembled: that is the ground truth.

The real voices are Asterisk's telephone prompts (tests/data/real_speech.py), each read by one
professional voice: Spanish, French and Russian by women (median pitch measured by
`median_pitch`: about 215, 200 and 210 Hz), Italian by a voice that Debian's package calls male
(it_IT_m_Carlo) but that speaks as high as the others (about 185 Hz, against 85-155 Hz for most
men): every pair is two voices of one pitch range, the hard case. Pairs of espeak-ng voices with different settings are the floor: a filter that cannot
tell them apart is broken.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from real_speech import PROMPT_RATE, Prompt, load_prompts, require_packages

from voicetune.demo.recordings import ESPEAK_RATE

RECORDING_SECONDS = 110.0
TURN_SECONDS = (3.0, 8.0)
TURN_PAUSES = (0.4, 1.6)  # between turns
INNER_PAUSES = (0.3, 0.6)  # between the prompts of one turn
REFERENCE_SECONDS = 12.0
RATES = (8000, 16000)

# (target, other): the real pairs, same-sex first; then the espeak-ng floor.
REAL_PAIRS = [("es", "fr"), ("fr", "ru"), ("ru", "es"), ("es", "it"), ("it", "fr"), ("ru", "it")]
# espeak-ng voices as "voice|pitch|words per minute".
# They read the Spanish prompts' texts.
ESPEAK_PAIRS = [("es|50|165", "es-419|35|150"), ("es+f3|60|160", "es+f4|45|175")]


@dataclass(frozen=True)
class Turn:
    voice: str  # "target" or "other"
    start: float
    end: float


@dataclass(frozen=True)
class PairRecording:
    """One recording of a pair: its file and the stretches each voice speaks."""

    path: Path
    duration: float
    prompts: list[Turn]  # one per prompt, in order

    def seconds_of(self, voice: str, start: float = 0.0, end: float = float("inf")) -> float:
        return sum(max(0.0, min(end, p.end) - max(start, p.start)) for p in self.prompts if p.voice == voice)


@dataclass(frozen=True)
class Pair:
    """A pair of voices at one sample rate: its two recordings (in one folder) and a reference."""

    name: str  # "es+fr", the target first
    rate: int
    real: bool
    recordings: list[PairRecording]
    reference: Path

    @property
    def folder(self) -> Path:
        return self.recordings[0].path.parent


def espeak_prompts(setting: str, cache: Path) -> list[Prompt]:
    """The Spanish prompts' texts in one espeak-ng setting ("voice|pitch|wpm"), at the prompts' 8 kHz."""
    voice, pitch, rate = setting.split("|")
    prompts = []
    for index, text in enumerate(p.text for p in load_prompts("es")):
        key = f"{voice}|{pitch}|{rate}"
        wav = cache / "espeak" / f"{hashlib.sha256(f'{key}|{text}'.encode()).hexdigest()[:16]}.wav"
        if not wav.is_file():
            wav.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["espeak-ng", "-v", voice, "-p", pitch, "-s", rate, "-w", str(wav), text],
                check=True,
                capture_output=True,
            )
        samples, _ = sf.read(wav, dtype="float32")
        loud = np.flatnonzero(np.abs(samples) > 2e-3)
        samples = samples[loud[0] : loud[-1] + 1]
        prompts.append(
            Prompt(f"{voice}-{index}", text, soxr.resample(samples, ESPEAK_RATE, PROMPT_RATE).astype(np.float32))
        )
    return prompts


def _voice_prompts(voice: str, cache: Path) -> list[Prompt]:
    """A voice's prompts that fit in a turn (at most 8 s), in a fixed shuffled order."""
    prompts = espeak_prompts(voice, cache) if "|" in voice else load_prompts(voice)
    usable = [p for p in prompts if p.duration <= TURN_SECONDS[1]]
    order = np.random.default_rng(len(usable)).permutation(len(usable))
    return [usable[i] for i in order]


def _take_turn(prompts: list[Prompt], rng: np.random.Generator) -> list[Prompt]:
    """Prompts from the front of `prompts` that make a turn of 3-8 s of speech (removed from it)."""
    want = rng.uniform(*TURN_SECONDS)
    turn = [prompts.pop(0)]
    while prompts and sum(p.duration for p in turn) < TURN_SECONDS[0]:
        turn.append(prompts.pop(0))
    while prompts and sum(p.duration for p in turn) + prompts[0].duration <= min(want, TURN_SECONDS[1]):
        turn.append(prompts.pop(0))
    return turn


def _assemble(
    target: list[Prompt],
    other: list[Prompt],
    rng: np.random.Generator,
    period: int = 3,
    seconds: float = RECORDING_SECONDS,
) -> tuple[np.ndarray, list[Turn]]:
    """Turns of the two voices at 8 kHz until `seconds`: the other voice every `period`-th turn
    (target, target, other, ... with the default 3)."""
    parts = [np.zeros(int(0.5 * PROMPT_RATE), np.float32)]
    position = len(parts[0])
    truth: list[Turn] = []
    turn_index = int(rng.integers(3))
    while position / PROMPT_RATE < seconds - 6 and target and other:
        voice = "other" if turn_index % period == period - 1 else "target"
        turn_index += 1
        for k, prompt in enumerate(turn := _take_turn(target if voice == "target" else other, rng)):
            truth.append(Turn(voice, position / PROMPT_RATE, (position + len(prompt.samples)) / PROMPT_RATE))
            gap = rng.uniform(*(INNER_PAUSES if k < len(turn) - 1 else TURN_PAUSES))
            parts += [prompt.samples, np.zeros(int(gap * PROMPT_RATE), np.float32)]
            position += len(prompt.samples) + len(parts[-1])
    return np.concatenate(parts), truth


def _write(samples: np.ndarray, path: Path, rate: int) -> None:
    audio = samples if rate == PROMPT_RATE else soxr.resample(samples, PROMPT_RATE, rate).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".wav":
        sf.write(path, audio, rate, subtype="PCM_16")
        return
    source = path.with_suffix(".src.wav")
    sf.write(source, audio, rate, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-b:a", "32k", str(path)], check=True)
    source.unlink()


def build_pair(
    folder: Path,
    target: str,
    other: str,
    rates=RATES,
    cache: Path | None = None,
    period: int = 3,
    seconds: float = RECORDING_SECONDS,
) -> list[Pair]:
    """Write the pair's recordings (a.wav, b.mp3) and reference (outside the recordings' folder)
    under `folder`, once per rate in `rates`; the other voice speaks every `period`-th turn."""
    require_packages(("es", "fr", "it", "ru"))
    cache = cache or folder
    mine, theirs = _voice_prompts(target, cache), _voice_prompts(other, cache)
    reference: list[Prompt] = []
    while sum(p.duration for p in reference) < REFERENCE_SECONDS:
        reference.append(mine.pop())
    rng = np.random.default_rng(sum(map(ord, target + other)))
    built = [_assemble(mine, theirs, rng, period, seconds) for _ in ("a", "b")]
    gap = np.zeros(int(0.6 * PROMPT_RATE), np.float32)
    reference_audio = np.concatenate([x for p in reference for x in (p.samples, gap)])
    name = f"{_short(target)}+{_short(other)}"
    pairs = []
    for rate in rates:
        where = folder / f"{name}-{rate // 1000}k"
        recordings = []
        for (samples, truth), file in zip(built, ("a.wav", "b.mp3")):
            _write(samples, where / "recordings" / file, rate)
            recordings.append(PairRecording(where / "recordings" / file, len(samples) / PROMPT_RATE, truth))
        _write(reference_audio, where / "reference.wav", rate)
        pairs.append(Pair(name, rate, "|" not in target, recordings, where / "reference.wav"))
    return pairs


def _short(voice: str) -> str:
    return voice.split("|")[0] + ("" if "|" not in voice else "-p" + voice.split("|")[1])


def median_pitch(samples: np.ndarray, rate: int = PROMPT_RATE) -> float:
    """The median fundamental frequency (Hz) of the voiced frames of `samples` (librosa's YIN,
    frames under a tenth of the loudest left out): whether a voice is a woman's or a man's."""
    import librosa

    f0 = librosa.yin(samples, fmin=60, fmax=400, sr=rate, frame_length=512)
    loudness = librosa.feature.rms(y=samples, frame_length=512, hop_length=128)[0][: len(f0)]
    return float(np.median(f0[: len(loudness)][loudness > 0.1 * loudness.max()]))


MAX_OTHER_SECONDS = 1.0  # a kept clip holding more of the other voice is impure


def score_pair(pair: Pair, limits=None) -> list[dict]:
    """Run the speaker filter on a pair's recordings as `prepare` does (decode, voice activity,
    windows, clustering, clip planning; no transcription, which does not change what is kept) with
    `--speaker REF` and `--speaker auto`, and score the planned clips against the ground truth:
    precision (the share of kept clips holding at most 1 s of the other voice), recall (the share
    of the target's speech in a kept clip), the purity the filter estimates, and (auto) the share."""
    from voicetune.data import speaker
    from voicetune.data.ingest import ANALYSIS_RATE, load_source
    from voicetune.data.segment import ClipLimits, SpeechDetector, find_speech

    limits = limits or ClipLimits(5, 15)
    detector, embed = SpeechDetector(), speaker.encoder()
    decoded = [load_source(r.path, 16000, -23.0).analysis for r in pair.recordings]
    found, energies = [], []
    for audio in decoded:
        spans, energy = find_speech(audio, detector)
        found.append(speaker.embed_windows(audio, spans, embed))
        energies.append(energy)
    chosen = speaker.main_voice(found, [str(r.path) for r in pair.recordings])
    rows = []
    for mode, target in (("REF", speaker.reference_voice(pair.reference, embed)), ("auto", chosen.embedding)):
        row = {"pair": pair.name, "rate": pair.rate, "mode": mode, "real": pair.real}
        if mode == "auto":
            row["share"] = chosen.share
            if not chosen.clear:
                rows.append({**row, "stopped": True})
                continue
        clips, confidences, judged_target = [], [], 0.0
        for recording, audio, windows, energy in zip(pair.recordings, decoded, found, energies):
            judged = speaker.judge(windows, target)
            judged_target += sum(
                recording.seconds_of("target", p.start, p.end)
                for p in speaker.pieces(windows, judged)
                if p.kind == "target"
            )
            plan, _, confidence = speaker.plan_target_clips(
                windows, judged, len(audio) / ANALYSIS_RATE, energy, limits, str(recording.path)
            )
            clips += [(recording, clip) for clip in plan.clips]
            confidences += confidence
        pure = sum(1 for r, c in clips if r.seconds_of("other", c.start, c.end) <= MAX_OTHER_SECONDS)
        kept = sum(r.seconds_of("target", c.start, c.end) for r, c in clips)
        total = sum(r.seconds_of("target") for r in pair.recordings)
        rows.append(
            {
                **row,
                "clips": len(clips),
                "precision": pure / len(clips) if clips else 0.0,
                "recall": kept / total,
                "judged_recall": judged_target / total,
                "estimated": sum(confidences) / len(confidences) if confidences else 0.0,
                "other_kept": max((r.seconds_of("other", c.start, c.end) for r, c in clips), default=0.0),
            }
        )
    return rows
