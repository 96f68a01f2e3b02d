"""Narration: a long text (a book chapter) into one audio file, resumable and checked by ear.

    OUT.parts/     one finished chunk = chunk_NNNNN_<key>.wav (16-bit) + its .json, written
                   atomically through fsio, the json last: a chunk is done when its json exists.
                   <key> is a hash of what decides its audio (text, seed, voice, model, settings),
                   so a rerun after a kill redoes only the missing chunks, and an edited text
                   redoes only the chunks that changed.
    OUT            the chunks read back from disk and joined with the engine's cross-fade: a
                   resumed narration is bit-identical to one that ran straight through.
    OUT.json       the report: every chunk's text, takes, scores and flags.

With the check on, each take is transcribed by the scoring whisper and checked
(`voicetune.scoring.checks`: WER, duration against the voice's speaking rate, sound after the
last word, a cut last word); a take that fails is made again with another seed, up to `retakes`
times, and the best take is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicetune import fsio
from voicetune.errors import UsageError
from voicetune.synthesis.engine import Engine, Voice
from voicetune.synthesis.formats import encode

log = logging.getLogger("voicetune.narrate")

RETAKE_SEED_STEP = 1_000_003  # take k of a chunk uses seed + k * this: far from every other chunk's seed
REPORT_VERSION = 1


@dataclass
class ChunkReport:
    index: int
    text: str
    takes: int  # how many were made (1 = no retake)
    seed: int  # the seed of the take kept
    check: dict | None  # the kept take's check (TakeCheck.to_json()), None with --no-check
    resumed: bool = False  # done by an earlier run

    @property
    def passed(self) -> bool:
        return self.check is None or not self.check["flags"]

    @property
    def unread(self) -> list[str]:
        """Numbers the normalizer left in digits: the voice reads them digit by digit, or not at all."""
        from voicetune.data.text import unread_digits

        return unread_digits(self.text)

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "text": self.text,
            "unread": self.unread,
            "takes": self.takes,
            "seed": self.seed,
            "passed": self.passed,
            "check": self.check,
            "resumed": self.resumed,
        }


@dataclass
class Narration:
    out: Path
    report_path: Path
    chunks: list[ChunkReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[ChunkReport]:
        return [c for c in self.chunks if not c.passed]

    @property
    def unread(self) -> list[ChunkReport]:
        """The chunks that hold digits the normalizer left."""
        return [c for c in self.chunks if c.unread]


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def narrate(
    engine: Engine,
    text: str,
    voice: Voice,
    out: Path,
    check: bool = True,
    retakes: int = 2,
    seed: int = 0,
    whisper_model: str | None = None,
    on_chunk: Callable[[ChunkReport, int], None] | None = None,
) -> Narration:
    """Speak `text` into `out` (wav), resuming what an earlier run with the same settings left in
    OUT.parts/; `on_chunk(report, total)` is told as each chunk is done (or found done)."""
    out = Path(out)
    if retakes < 0:
        raise UsageError(f"--retakes {retakes}: give 0 or more")
    if out.suffix.lower() != ".wav":
        raise UsageError(f"--out {out}: narrate writes a wav; give a path ending in .wav")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give the path of the wav file to write")
    plan = engine.plan(text, voice, seed)
    checker = TakeChecker(engine, voice, whisper_model) if check else None
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    fsio.sweep_temporaries(folder)
    identity = _identity(engine, voice, check, retakes)
    narration = Narration(out, out.with_suffix(".json"))
    stems: list[Path] = []
    for index, (chunk, chunk_seed) in enumerate(zip(plan.chunks, plan.seeds)):
        key = hashlib.sha256(json.dumps([identity, chunk, chunk_seed]).encode()).hexdigest()[:12]
        stem = folder / f"chunk_{index:05d}_{key}"
        stems.append(stem)
        report = _read_done(stem)
        if report is None:
            report = _make_chunk(engine, voice, index, chunk, chunk_seed, retakes, checker, stem)
        narration.chunks.append(report)
        if on_chunk:
            on_chunk(report, len(plan.chunks))
    audio = _join(engine, [stem.with_suffix(".wav") for stem in stems])
    narration.seconds = len(audio) / engine.sample_rate
    fsio.atomic_write_bytes(out, encode(audio, engine.sample_rate, "wav"))
    fsio.atomic_write_json(
        narration.report_path,
        {
            "version": REPORT_VERSION,
            "out": str(out),
            "model": engine.name,
            "voice": voice.name,
            "checked": check,
            "retakes": retakes,
            "seconds": round(narration.seconds, 3),
            "unsayable": plan.unsayable,
            "unread": plan.unread,
            "chunks": [c.to_json() for c in narration.chunks],
        },
    )
    return narration


class TakeChecker:
    """The scoring whisper and the voice's speaking rate, loaded once for a narration."""

    def __init__(self, engine: Engine, voice: Voice, whisper_model: str | None):
        from voicetune.scoring import get_scorers, to_scoring_rate
        from voicetune.scoring.checks import speaking_rate

        if not whisper_model:
            raise UsageError(
                "--check needs a whisper model: pass --whisper-model NAME_OR_FOLDER (or set "
                "VOICETUNE_WHISPER_MODEL), or narrate without the check: --no-check"
            )
        self.language = engine.language
        self.asr = get_scorers(whisper_model).intelligibility
        if self.asr is None:
            raise UsageError(
                f"--whisper-model {whisper_model}: could not be loaded (see the note above); "
                "or narrate without the check: --no-check"
            )
        reference = to_scoring_rate(voice.audio, engine.sample_rate)
        self.rate = speaking_rate(reference, engine.normalize(voice.text)) if voice.text else None
        self.sample_rate = engine.sample_rate

    def __call__(self, audio: np.ndarray, text: str):
        from voicetune.scoring import to_scoring_rate
        from voicetune.scoring.checks import check_take

        clip = to_scoring_rate(audio, self.sample_rate)
        assert self.asr is not None  # checked when the checker was made
        transcript = self.asr.transcripts([clip], self.language)[0]
        return check_take(clip, text, transcript, self.language, self.rate)


def _make_chunk(
    engine: Engine,
    voice: Voice,
    index: int,
    chunk: str,
    seed: int,
    retakes: int,
    checker: TakeChecker | None,
    stem: Path,
) -> ChunkReport:
    best = None  # (rank, audio, seed, check)
    takes = 0
    for take in range(retakes + 1 if checker else 1):
        take_seed = seed + take * RETAKE_SEED_STEP
        audio = engine.speak_chunk(chunk, take_seed, voice)
        takes += 1
        result = checker(audio, chunk) if checker else None
        rank = (0, 0.0) if result is None else (len(result.flags), result.wer or 0.0)
        if best is None or rank < best[0]:
            best = (rank, audio, take_seed, result)
        if result is None or result.passed:
            break
    assert best is not None  # at least one take was made
    _, audio, kept_seed, result = best
    report = ChunkReport(index, chunk, takes, kept_seed, result.to_json() if result else None)
    fsio.atomic_write_bytes(stem.with_suffix(".wav"), encode(audio, engine.sample_rate, "wav"))
    fsio.atomic_write_json(stem.with_suffix(".json"), report.to_json())  # last: the chunk is done
    return report


def _read_done(stem: Path) -> ChunkReport | None:
    """The report of a chunk an earlier run finished, or None (absent, or damaged: made again)."""
    try:
        data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        if not stem.with_suffix(".wav").is_file():
            return None
        return ChunkReport(data["index"], data["text"], data["takes"], data["seed"], data["check"], resumed=True)
    except (OSError, ValueError, KeyError):
        return None


def _identity(engine: Engine, voice: Voice, check: bool, retakes: int) -> list:
    """What, besides its text and seed, decides a chunk's audio."""
    voice_hash = hashlib.sha256(np.ascontiguousarray(voice.audio).tobytes() + (voice.text or "").encode()).hexdigest()
    return [
        str(engine.trained.checkpoint.resolve()),
        getattr(engine.adapter, "nfe_steps", None),
        voice_hash,
        check,
        retakes,
    ]


def _join(engine: Engine, paths: list[Path]) -> np.ndarray:
    """The chunks as written (16-bit), joined with the model's cross-fade."""
    import soundfile as sf

    from voicetune.models.base import cross_fade

    waves = [sf.read(str(p), dtype="float32")[0] for p in paths]
    return cross_fade(waves, int(engine.adapter.cross_fade_seconds * engine.sample_rate))
