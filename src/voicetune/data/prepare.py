"""`voicetune prepare`: raw recordings in, a clean, transcribed LJSpeech-layout dataset out.

Each source file goes through the stages on its own (ingest -> segment -> check cuts ->
transcribe -> write clips), several files at a time in threads that share the models (each file's
whisper batches go to whichever copy of whisper is free), and ends with a record in
DATASET/.voicetune/sources/<sha256 of its content>.json written after all its clips. The record is
what makes the run resumable: a rerun skips every source whose record is there and whose clips
are intact, and picks up new files. The dataset-wide files (metadata, split, manifest, report)
are then rebuilt from all the records, and checked (check.py) as the last stage.

DATASET/
  wavs/<id>.wav                  16-bit PCM, mono, at --sample-rate
  metadata.csv                   id|text|normalized_text (every clip)
  metadata_train.csv, metadata_val.csv
  manifest.jsonl                 one JSON object per clip
  report.json                    totals, rejections with reasons, flags, the check's result
  durations.png                  clip-duration histogram
  .voicetune/                    settings.json, sources/*.json, last_run.json, LOCK
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicetune import fsio
from voicetune.data import files, ljspeech, speaker
from voicetune.data.files import REMOVED_DIR, REMOVED_KEY
from voicetune.data.ingest import (
    AUDIO_EXTENSIONS,
    Rejection,
    SourceAudio,
    SourceRejected,
    find_sources,
    load_source,
    loudness_gain_db,
    measure_loudness,
    probe_duration,
)
from voicetune.data.segment import ClipLimits, PlannedClip, SegmentPlan, SpeechDetector, segment_speech
from voicetune.data.text import normalize_transcript
from voicetune.data.transcribe import (
    TRANSCRIBERS,
    WINDOW_SECONDS,
    chars_per_second,
    find_existing_transcript,
    load_transcriber,
    resolve_whisper_model,
    transcribe_source,
)
from voicetune.errors import UsageError, VoicetuneError
from voicetune.faults import crash_point, pause_point

log = logging.getLogger("voicetune.prepare")

FORMAT_VERSION = 1  # of the records and the pipeline: a change makes old datasets "different"
STATE_DIR = ".voicetune"
LOW_CONFIDENCE = 0.5  # mean word probability under which a clip is flagged
MIN_CHARS_PER_SECOND = 2.0  # of speech: fewer is a transcript missing words (or whisper's silence filler)
MAX_CHARS_PER_SECOND = 30.0  # more is a hallucinated or repeated transcript
# Rejections that depend on the file's content and the settings alone are remembered; the others
# (a decoder missing, a transcript file not there yet) are tried again on the next run.
TRANSIENT_REASONS = {"unreadable", "no_transcript", "error"}


@dataclass(frozen=True)
class PrepareOptions:
    """Everything `voicetune prepare` takes besides its inputs and output folder."""

    sample_rate: int = 24000
    min_seconds: float = 5.0
    max_seconds: float = 15.0
    transcriber: str = "whisper"
    whisper_model: str = "small"
    language: str | None = None  # None: detected per source file
    numbers_to_words: bool = False
    loudness_lufs: float = -23.0
    val_fraction: float = 0.1
    workers: int | None = None  # copies of whisper; None: one per core
    beam_size: int = 3  # as accurate as 5 on 29 minutes of recorded speech, for 7% less CPU time
    speaker: str | None = None  # None: every voice; "auto": the voice that speaks most; else a reference recording

    def check(self) -> None:
        """Raise UsageError, naming the flag, for values that cannot work."""
        if not 8000 <= self.sample_rate <= 96000:
            raise UsageError(
                f"--sample-rate {self.sample_rate}: use a rate between 8000 and 96000 Hz (training reads clips at the model's own rate)"
            )
        if not 0.5 <= self.min_seconds < self.max_seconds:
            raise UsageError(
                f"--min-seconds {self.min_seconds} / --max-seconds {self.max_seconds}: need 0.5 <= min < max"
            )
        if self.max_seconds < 2 * self.min_seconds:
            raise UsageError(
                f"--max-seconds {self.max_seconds}: make it at least twice --min-seconds ({self.min_seconds}) so long speech can be split in clips that fit"
            )
        if self.transcriber not in TRANSCRIBERS:
            raise UsageError(f"--transcriber {self.transcriber}: use one of {', '.join(TRANSCRIBERS)}")
        if self.transcriber == "whisper" and self.max_seconds > WINDOW_SECONDS:
            raise UsageError(
                f"--max-seconds {self.max_seconds}: whisper reads at most {WINDOW_SECONDS:.0f} s at once; use --max-seconds {WINDOW_SECONDS:.0f} or less"
            )
        if self.transcriber == "pocketsphinx" and self.language not in (None, "en"):
            raise UsageError(
                f"--language {self.language}: the pocketsphinx fallback only knows English; use --transcriber whisper"
            )
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"--val-fraction {self.val_fraction}: use a fraction from 0 to below 1, e.g. 0.1")
        if not -40 <= self.loudness_lufs <= -5:
            raise UsageError(f"--loudness {self.loudness_lufs}: use a target between -40 and -5 LUFS (e.g. -23)")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers {self.workers}: use 1 or more")
        if not 1 <= self.beam_size <= 10:
            raise UsageError(f"--beam-size {self.beam_size}: use 1 to 10")
        if self.speaker is not None and self.transcriber == "none":
            raise UsageError(
                f"--speaker {self.speaker}: with --transcriber none each file is one clip, which the speaker "
                "filter cannot cut; use --transcriber whisper, or leave out the files of other voices yourself"
            )

    def limits(self) -> ClipLimits:
        return ClipLimits(self.min_seconds, self.max_seconds)


def dataset_settings(options: PrepareOptions, model_identity: str | None, speaker: str | None = None) -> dict:
    """The settings that decide what the clips and their text are: a dataset made with other values
    is a different dataset, and adding to it would mix the two."""
    return {
        "format": FORMAT_VERSION,
        "sample_rate": options.sample_rate,
        "min_seconds": options.min_seconds,
        "max_seconds": options.max_seconds,
        "loudness_lufs": options.loudness_lufs,
        "transcriber": options.transcriber,
        "whisper_model": model_identity if options.transcriber == "whisper" else None,
        "language": options.language or "auto",
        "numbers_to_words": options.numbers_to_words,
        "speaker": speaker,
    }


SETTING_FLAGS = {
    "sample_rate": "--sample-rate",
    "min_seconds": "--min-seconds",
    "max_seconds": "--max-seconds",
    "loudness_lufs": "--loudness",
    "transcriber": "--transcriber",
    "whisper_model": "--whisper-model",
    "language": "--language",
    "numbers_to_words": "--numbers-to-words",
    "format": "(voicetune version)",
    "speaker": "--speaker",
}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def choose_workers(requested: int | None, cores: int) -> tuple[int, str | None]:
    """(workers, warning): one per core by default, never more than the cores.

    A worker is a single-threaded copy of whisper (CTranslate2 replicas in this one process) and a
    thread that prepares one file at a time: on the CPU, copies on separate batches turn cores into
    speed better than one copy with a thread per core, since a decoding step is too small a piece
    of work to share between threads."""
    if requested is None:
        return cores, None
    if requested > cores:
        return cores, f"--workers {requested} is more than the {cores} CPU cores here; using {cores}"
    return requested, None


@dataclass
class OutputFolder:
    root: Path

    @property
    def wavs(self) -> Path:
        return self.root / ljspeech.WAVS

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def sources(self) -> Path:
        return self.state / "sources"

    def record_path(self, sha256: str) -> Path:
        return self.sources / f"{sha256}.json"


def open_output_folder(out_dir: Path, settings: dict) -> OutputFolder:
    """Create the dataset folder or check that it holds a dataset made with the same settings."""
    out = OutputFolder(Path(out_dir))
    check_output_folder(out, settings)
    out.wavs.mkdir(parents=True, exist_ok=True)
    out.sources.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(out.state / "settings.json", json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return out


def check_output_folder(out: OutputFolder, settings: dict) -> None:
    """Refuse a --out that is a file, a non-empty non-dataset folder, or a dataset of other settings."""
    settings_path = out.state / "settings.json"
    if out.root.exists() and not out.root.is_dir():
        raise UsageError(f"--out {out.root}: is a file; pass a folder (new or empty) for the dataset")
    if settings_path.is_file():
        try:
            stored = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = {}
        differences = [
            f"{SETTING_FLAGS.get(key, key)} {stored.get(key)!r} (now {settings.get(key)!r})"
            for key in sorted(set(stored) | set(settings))
            if stored.get(key) != settings.get(key)
        ]
        if differences:
            raise UsageError(
                f"--out {out.root} holds a dataset prepared with other settings: " + ", ".join(differences) + ".\n"
                "  Rerun with the same settings to add to it, or choose another --out folder for a new dataset."
            )
    elif out.root.is_dir() and any(p.name != STATE_DIR for p in out.root.iterdir()):
        raise UsageError(
            f"--out {out.root} is not empty and is not a voicetune dataset (no {STATE_DIR}/settings.json); "
            "choose a new or empty folder"
        )


class OutputLock:
    """One prepare at a time per dataset folder: a `fsio.DirLock` on DATASET/.voicetune/LOCK,
    the same lock that guards a run folder (dropped by the kernel when its process dies)."""

    def __init__(self, out: OutputFolder):
        self.lock = fsio.DirLock(out.state, "LOCK")

    def __enter__(self) -> OutputLock:
        try:
            self.lock.acquire()
        except fsio.LockedError as err:
            raise VoicetuneError(
                f"another `voicetune prepare` (pid {err.holder.get('pid', '?')}) is writing "
                f"{self.lock.path.parent.parent}; wait for it to finish, or use another --out folder"
            ) from None
        pause_point("prepare.locked")
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


@dataclass(frozen=True)
class SourceJob:
    """One source file to prepare."""

    path: str
    sha256: str
    clip_prefix: str  # ids are <prefix>_<nnn>
    estimated_seconds: float


@dataclass(frozen=True)
class WorkerContext:
    """What preparing a file needs besides the file: the run's options and how to load the models."""

    options: PrepareOptions
    out_dir: str
    whisper_model_path: str | None
    threads: int  # of each copy of whisper
    replicas: int = 1  # copies of whisper, one per file prepared at a time
    target_voice: np.ndarray | None = None  # prepare --speaker: the embedding of the voice to keep


# The models of the current run, loaded by the first thread that needs them (the others decode
# their files meanwhile) and shared by all: silero-vad's session and CTranslate2's copies of whisper
# take calls from several threads.
_loaded: dict = {}
_loading = threading.Lock()


def _models(context: WorkerContext):
    with _loading:
        if not _loaded:
            _loaded.update(
                transcriber=load_transcriber(
                    context.options.transcriber,
                    context.whisper_model_path,
                    context.threads,
                    context.options.beam_size,
                    context.replicas,
                ),
                detector=SpeechDetector(),
                transcripts_cache={},
            )
    return _loaded["detector"], _loaded["transcriber"]


def prepare_source(job: SourceJob, context: WorkerContext, progress: Callable[[float], None] = lambda f: None) -> dict:
    """Prepare one source file: its clips in wavs/, then its record. Returns the record."""
    options, out = context.options, OutputFolder(Path(context.out_dir))
    record: dict = {
        "format": FORMAT_VERSION,
        "sha256": job.sha256,
        "path": job.path,
        "status": "kept",
        "clips": [],
        "rejected": [],
        "transcribed_seconds": 0.0,
    }
    started = time.perf_counter()
    try:
        audio = load_source(Path(job.path), options.sample_rate, options.loudness_lufs)
        record.update(
            duration=round(audio.duration, 3),
            original_rate=audio.original_rate,
            channels=audio.channels,
            decoder=audio.decoder,
            loudness_lufs=audio.loudness_lufs,
            gain_db=audio.gain_db,
            clipped_seconds=round(sum(b - a for a, b in audio.clipped), 3),
            decode_warnings=audio.decode_warnings,
        )
        progress(0.1)
        detector, transcriber = _models(context)
        limits = options.limits()
        if transcriber is None:
            planned, texts = _whole_file_clip(audio, detector, limits)
            language = options.language  # the transcripts' language is only known when given
            confidences: list[float | None] = [None]
        else:
            if context.target_voice is None:
                plan, energy = segment_speech(audio.analysis, detector, limits)
            else:
                plan, energy, other_voices, confidence = speaker.segment_target_voice(
                    audio.analysis, detector, limits, context.target_voice, speaker.encoder(), job.path
                )
                record["rejected"] += other_voices
                judged = [(c.start, c.end, p) for c, p in zip(plan.clips, confidence)]
            _reject_stretches(record, job, plan)
            if not plan.clips:
                raise _no_clip_reason(plan, audio.duration, record)
            progress(0.2)
            clips, transcripts, language = transcribe_source(
                plan.clips,
                audio.analysis,
                energy,
                transcriber,
                limits,
                options.language,
                progress=lambda f: progress(0.25 + 0.65 * f),
            )
            record["transcribed_seconds"] = round(sum(c.duration for c in clips), 3)
            if context.target_voice is not None:  # each clip's p_target: the planned clips' it overlaps
                p_target = [
                    min([p for a, b, p in judged if a < clip.end and b > clip.start] or [1.0]) for clip in clips
                ]
            planned = clips
            texts = [(t.text, None) for t in transcripts]
            confidences = [t.confidence for t in transcripts]
        record["language"] = language
        _write_clips(record, audio, planned, texts, confidences, language, job, options, out)
        if context.target_voice is not None and transcriber is not None:
            by_start = dict(zip((round(c.start, 3) for c in planned), p_target))
            for clip in record["clips"]:
                clip["p_target"] = round(by_start.get(clip["start"], 1.0), 3)
            _set_aside_borderline(record, audio, energy, transcriber, limits, language, job, options, out)
        if not record["clips"]:
            reasons = sorted({r["reason"] for r in record["rejected"]})
            raise SourceRejected("no_clip", "every clip was rejected: " + ", ".join(reasons))
    except SourceRejected as rejected:
        record.update(
            status="rejected",
            reason=rejected.reason,
            detail=rejected.detail,
            seconds=round(rejected.seconds or record.get("duration", 0.0), 3),
            clips=[],
        )
    except Exception as err:  # noqa: BLE001 - a bug, or a failure no stage expected: the run goes on without this file
        record.update(
            status="rejected",
            reason="error",
            detail=f"{type(err).__name__}: {err}"[:500],
            clips=[],
            traceback=traceback.format_exc(),
        )
    record["elapsed_seconds"] = round(time.perf_counter() - started, 3)
    if record.get("reason") not in TRANSIENT_REASONS:
        # Written after every clip: a run killed before this line redoes the whole file.
        persisted = {
            k: v for k, v in record.items() if k not in ("elapsed_seconds", "transcribed_seconds", "traceback")
        }
        files.atomic_write_text(out.record_path(job.sha256), json.dumps(persisted, indent=1, ensure_ascii=False) + "\n")
    progress(1.0)
    return record


def _set_aside_borderline(record, audio, energy, transcriber, limits, language, job, options, out) -> None:
    """Speech the speaker filter left out although it may be the target voice (p_target at least
    `speaker.BORDERLINE`) becomes removed clips, transcribed and kept aside like a clip taken out by
    hand, so that `dataset restore` can overrule the filter; the rejection row names its clip."""
    rows = [
        r for r in record["rejected"] if r["reason"] in speaker.JUDGED_REASONS and r["p_target"] >= speaker.BORDERLINE
    ]
    planned = speaker.borderline_clips(rows, audio.duration, energy, limits)
    if not planned:
        return
    clips, transcripts, _ = transcribe_source(planned, audio.analysis, energy, transcriber, limits, language)
    kept, rejected = len(record["clips"]), len(record["rejected"])
    _write_clips(
        record,
        audio,
        clips,
        [(t.text, None) for t in transcripts],
        [t.confidence for t in transcripts],
        language,
        job,
        options,
        out,
    )
    del record["rejected"][rejected:]  # their speech is already in the rows of the voice left out
    aside = out.state / REMOVED_DIR
    for clip in record["clips"][kept:]:
        clip["flags"] = sorted({*clip["flags"], "speaker_borderline"})
        clip["p_target"] = round(
            min([r["p_target"] for r in rows if r["start"] < clip["end"] and r["end"] > clip["start"]] or [0.0]), 3
        )
        # A copy aside under this name is a killed run's, of this same clip: its record was never
        # written, so this run prepares the file again.
        (aside / f"{clip['id']}.wav").unlink(missing_ok=True)
        fsio.move(out.wavs / f"{clip['id']}.wav", aside / f"{clip['id']}.wav")
        for row in rows:
            if row["start"] < clip["end"] and row["end"] > clip["start"]:
                row["clip"] = clip["id"]
    crash_point("prepare.set_aside")  # tests: a run killed with clips set aside and no record yet
    record.setdefault(REMOVED_KEY, []).extend(record["clips"][kept:])
    del record["clips"][kept:]


def _no_clip_reason(plan: SegmentPlan, duration: float, record: dict) -> SourceRejected:
    if plan.speech_seconds == 0:
        return SourceRejected("no_speech", "the voice activity detector found no speech", duration)
    other_voices = sum(r["seconds"] for r in record["rejected"] if r["reason"] in speaker.REASONS)
    if other_voices and not plan.dropped:
        return SourceRejected(
            "other_speaker", f"{other_voices:.1f} s of speech, none of it the voice kept (--speaker)", duration
        )
    return SourceRejected(
        "too_short",
        f"{plan.speech_seconds:.1f} s of speech in stretches that make no clip of the minimum length",
        duration,
    )


def _reject_stretches(record: dict, job: SourceJob, plan: SegmentPlan) -> None:
    for start, end in plan.dropped:
        record["rejected"].append(
            Rejection(
                job.path, "too_short", "speech between long pauses, shorter than --min-seconds", end - start, start, end
            ).to_json()
        )


def _whole_file_clip(audio: SourceAudio, detector: SpeechDetector, limits: ClipLimits):
    """--transcriber none: the file is one clip (its transcript covers all of it), trimmed of the
    silence around the speech."""
    found = find_existing_transcript(audio.path, _loaded["transcripts_cache"])
    if found is None:
        raise SourceRejected(
            "no_transcript",
            f"no {audio.path.stem}.txt or .lab beside it and no row in a metadata.csv; "
            "write one or use --transcriber whisper",
            audio.duration,
        )
    spans = detector.speech_spans(audio.analysis)
    if not spans:
        raise SourceRejected("no_speech", "the voice activity detector found no speech", audio.duration)
    start = max(0.0, spans[0][0] - limits.pad_seconds)
    end = min(audio.duration, spans[-1][1] + limits.pad_seconds)
    if not limits.fits(end - start):
        reason = "too_short" if end - start < limits.min_seconds else "too_long"
        raise SourceRejected(
            reason,
            f"{end - start:.1f} s of speech with one transcript, which cannot be split; "
            "adjust --min-seconds/--max-seconds",
            audio.duration,
        )
    clip = PlannedClip(round(start, 4), round(end, 4), spans[0][0], spans[-1][1])
    return [clip], [found]


def _write_clips(
    record: dict,
    audio: SourceAudio,
    planned: list[PlannedClip],
    texts,
    confidences,
    language,
    job: SourceJob,
    options: PrepareOptions,
    out: OutputFolder,
) -> None:
    for clip, (raw_text, given_normalized), confidence in zip(planned, texts, confidences):
        text, normalized, text_flags = normalize_transcript(raw_text, language, options.numbers_to_words)
        if given_normalized and not options.numbers_to_words:
            normalized = " ".join(given_normalized.split())
        speech = max(clip.speech_end - clip.speech_start, 1e-3)
        reason = None
        if not text:
            reason, detail = "no_text", "the transcriber heard no words"
        elif (
            not MIN_CHARS_PER_SECOND <= chars_per_second(text, speech) <= MAX_CHARS_PER_SECOND
            and options.transcriber != "none"
        ):
            reason, detail = (
                "text_mismatch",
                f"{chars_per_second(text, speech):.1f} characters per second of speech: {text[:80]!r}",
            )
        if reason:
            record["rejected"].append(
                Rejection(job.path, reason, detail, clip.duration, clip.start, clip.end).to_json()
            )
            continue
        clip_id = f"{job.clip_prefix}_{len(record['clips']):03d}"
        flags = set(clip.flags) | set(text_flags)
        if "forced" in (clip.cut_before, clip.cut_after):
            flags.add("forced_cut")
        if any(a < clip.end and b > clip.start for a, b in audio.clipped):
            flags.add("clipped")
        if confidence is not None and confidence < LOW_CONFIDENCE:
            flags.add("low_confidence")
        samples = audio.samples[
            int(round(clip.start * audio.sample_rate)) : int(round(clip.end * audio.sample_rate))
        ].copy()
        loudness = measure_loudness(samples, audio.sample_rate)
        peak = float(np.abs(samples).max()) if len(samples) else 0.0
        gain = loudness_gain_db(loudness, peak, options.loudness_lufs)
        samples *= np.float32(10 ** (gain / 20))
        data = files.write_wav_pcm16(out.wavs / f"{clip_id}.wav", samples, audio.sample_rate)
        record["clips"].append(
            {
                "id": clip_id,
                "source": job.path,
                "source_sha256": job.sha256,
                "start": round(clip.start, 3),
                "end": round(clip.end, 3),
                "duration": round(len(samples) / audio.sample_rate, 3),
                "text": text,
                "normalized_text": normalized,
                "language": language,
                "asr_confidence": None if confidence is None else round(confidence, 3),
                "loudness_lufs": round(loudness + gain, 2) if math.isfinite(loudness) else None,
                "peak_dbfs": round(20 * math.log10(max(peak * 10 ** (gain / 20), 1e-9)), 2),
                "cut_before": clip.cut_before,
                "cut_after": clip.cut_after,
                "flags": sorted(flags),
                "wav_bytes": len(data),
                "wav_sha256": fsio.sha256_bytes(data),
            }
        )


@dataclass
class PrepareResult:
    """What a prepare run did and what the dataset now holds."""

    out_dir: Path
    report: dict
    processed_sources: int
    resumed_sources: int
    elapsed_seconds: float
    workers: int
    warnings: list[str] = field(default_factory=list)

    @property
    def clips(self) -> int:
        return self.report["totals"]["clips"]


def _stable_done(out: OutputFolder, sha256: str) -> dict | None:
    """The record of an already prepared source whose clips are all intact, else None."""
    path = out.record_path(sha256)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("format") != FORMAT_VERSION:
        return None
    for clip in record.get("clips", []):
        wav = out.wavs / f"{clip['id']}.wav"
        if not wav.is_file() or wav.stat().st_size != clip.get("wav_bytes"):
            return None  # a clip deleted or damaged since: prepare the source again
    return record


def prepare_dataset(
    inputs: Sequence[Path],
    out_dir: Path,
    options: PrepareOptions,
    show_progress: bool = True,
    on_progress: Callable[[float, str], None] | None = None,
) -> PrepareResult:
    """Prepare (or resume, or extend) the dataset in `out_dir` from the recordings in `inputs`.

    `on_progress(fraction, status)` is called as audio is processed (the studio's progress bar)."""
    from voicetune.console import error_console, is_interactive
    from voicetune.data.report import finish_dataset
    from voicetune.plotting import preload_in_background

    started = time.perf_counter()
    options.check()
    cores = available_cores()
    workers, warning = choose_workers(options.workers, cores)
    warnings = [warning] if warning else []
    for message in warnings:
        error_console.print(f"warning: {message}", highlight=False, markup=False, style="yellow")
    # Inputs are looked at before anything is created: a run that finds no audio leaves no folder.
    scan = find_sources(inputs, exclude=Path(out_dir))
    if not scan.audio_files and not (Path(out_dir) / "manifest.jsonl").is_file():
        shown = ", ".join(str(p) for p in inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise UsageError(
            f"INPUT {shown}: found no audio or video file ({len(scan.not_audio)} other files); prepare reads "
            f"{', '.join(sorted(s.lstrip('.') for s in AUDIO_EXTENSIONS))}"
        )
    model = resolve_whisper_model(options.whisper_model) if options.transcriber == "whisper" else None
    speaker_setting = speaker.speaker_setting(options.speaker)
    settings = dataset_settings(options, model.identity if model else None, speaker_setting)
    check_output_folder(OutputFolder(Path(out_dir)), settings)  # fail early, before taking the lock
    # `auto` must find a voice that holds a clear majority before the dataset folder is made: a
    # run that stops for it leaves nothing that a rerun with --speaker REF.wav would refuse.
    chosen = (
        _main_voice(options, scan.audio_files)
        if speaker_setting == speaker.AUTO
        and speaker.load_target(OutputFolder(Path(out_dir)).state, speaker_setting) is None
        else None
    )
    with OutputLock(OutputFolder(Path(out_dir))):
        out = open_output_folder(out_dir, settings)  # again under the lock: another prepare may have written
        for folder in (out.root, out.state, out.wavs, out.sources):  # what a killed prepare left
            fsio.sweep_temporaries(folder)
        transient = list(scan.not_audio)
        jobs: list[SourceJob] = []
        resumed = 0
        first_path_of: dict[str, str] = {}
        for path in scan.audio_files:
            try:
                sha = fsio.sha256_file(path)
            except OSError as err:
                transient.append(Rejection(str(path), "unreadable", str(err)))
                continue
            if sha in first_path_of:
                transient.append(Rejection(str(path), "duplicate", f"same content as {first_path_of[sha]}"))
                continue
            first_path_of[sha] = str(path)
            record = _stable_done(out, sha)
            if record is not None:
                resumed += 1
                if record.get("path") != str(path):  # the same recording, moved: keep the record current
                    record["path"] = str(path)
                    for clip in record["clips"]:
                        clip["source"] = str(path)
                    files.atomic_write_text(
                        out.record_path(sha), json.dumps(record, indent=1, ensure_ascii=False) + "\n"
                    )
                continue
            out.record_path(sha).unlink(missing_ok=True)
            jobs.append(SourceJob(str(path), sha, f"{files.slugify(path.stem)}_{sha[:8]}", probe_duration(path)))
        # Longest first: the last files to start are the short ones, so the workers finish together.
        jobs.sort(key=lambda job: -job.estimated_seconds)
        # One copy of whisper per worker; one file per worker at a time, so fewer files than
        # workers still keep every copy busy (a file's batches go to whichever copy is free).
        target = _target_voice(options, speaker_setting, out, chosen) if speaker_setting and jobs else None
        context = WorkerContext(
            options, str(out.root), model.path if model else None, max(1, cores // workers), workers, target
        )
        at_once = max(1, min(workers, len(jobs)))
        if workers > 1:
            preload_in_background()  # the report's histogram, drawn after the workers
        records = (
            _run_jobs(jobs, context, at_once, show_progress and is_interactive(), error_console, on_progress)
            if jobs
            else []
        )
        for record in records:
            if record.get("reason") in TRANSIENT_REASONS:
                transient.append(
                    Rejection(record["path"], record["reason"], record.get("detail", ""), record.get("seconds", 0.0))
                )
                if record.get("traceback"):
                    log.error("preparing %s failed:\n%s", record["path"], record["traceback"])
        elapsed = time.perf_counter() - started
        last_run = {
            "processed_sources": len(jobs),
            "resumed_sources": resumed,
            "workers": workers,
            "transcribed_seconds": round(sum(r.get("transcribed_seconds", 0.0) for r in records), 3),
            "elapsed_seconds": round(elapsed, 3),
        }
        report = finish_dataset(out, options, transient, last_run)
    return PrepareResult(out.root, report, len(jobs), resumed, time.perf_counter() - started, workers, warnings)


def _target_voice(
    options: PrepareOptions, setting: str, out: OutputFolder, chosen: speaker.MainVoice | None
) -> np.ndarray:
    """The voice `--speaker` keeps: chosen by the dataset's first run and kept in its state folder,
    so that files added later are judged against the same voice."""
    stored = speaker.load_target(out.state, setting)
    if stored is not None:
        return stored
    if chosen is not None:
        path, start, end = chosen.sample
        speaker.save_target(
            out.state, setting, chosen.embedding, f"auto: {chosen.share:.0%} of the speech", [path, start, end]
        )
        return chosen.embedding
    target = speaker.reference_voice(Path(str(options.speaker)), speaker.encoder())
    speaker.save_target(out.state, setting, target, str(options.speaker))
    return target


def _main_voice(options: PrepareOptions, paths: Sequence[Path]) -> speaker.MainVoice:
    """`--speaker auto`'s pre-pass over the files to prepare: the voice that speaks most, which
    must hold a clear majority of the speech (else exit 2, asking for a reference)."""
    from voicetune.console import error_console

    error_console.print(
        f"--speaker auto: finding the voice that speaks most in {len(paths)} file(s)", highlight=False, markup=False
    )
    embed, detector = speaker.encoder(), SpeechDetector()
    found, names = [], []
    for path in paths:
        try:
            audio = load_source(Path(path), options.sample_rate, options.loudness_lufs)
        except SourceRejected:
            continue  # the file's own run reports why
        windows = speaker.file_windows(audio.analysis, detector, embed)
        if len(windows.embeddings):
            found.append(windows)
            names.append(str(path))
    if not found:
        raise VoicetuneError(
            "--speaker auto: no speech in the files to prepare, so no voice to choose; check the INPUT files"
        )
    chosen = speaker.main_voice(found, names)
    heard, start, end = chosen.sample
    if not chosen.clear:
        other = chosen.runner_up_sample
        raise UsageError(
            f"--speaker auto: no voice holds a clear majority of the speech: the voice that speaks most holds "
            f"{chosen.share:.0%} (hear it in {heard} at {start:.1f}-{end:.1f} s), the next one {chosen.runner_up_share:.0%}"
            + (f" (in {other[0]} at {other[1]:.1f}-{other[2]:.1f} s)" if other else "")
            + f": under the {speaker.MAJORITY:.0%} of the two voices' speech that auto needs.\n"
            "  Pass --speaker REF.wav, 10 s or more of the voice to keep."
        )
    error_console.print(
        f"--speaker auto: keeping the voice that speaks most ({chosen.share:.0%} of the speech; the next voice "
        f"{chosen.runner_up_share:.0%}): hear it in {heard} at {start:.1f}-{end:.1f} s",
        highlight=False,
        markup=False,
    )
    return chosen


class _Stopped(BaseException):
    """Raised in a file's thread when the run is interrupted: not an error of that file."""


def _run_jobs(
    jobs: list[SourceJob],
    context: WorkerContext,
    at_once: int,
    interactive: bool,
    error_console,
    on_progress: Callable[[float, str], None] | None = None,
) -> list[dict]:
    """Run the jobs one after the other, or `at_once` at a time in threads, with a progress bar by audio time."""
    from voicetune.console import progress_bar

    total = sum(max(job.estimated_seconds, 1.0) for job in jobs)
    done_fraction = [0.0] * len(jobs)
    records: list[dict] = []
    with progress_bar(disable=not interactive) as bar:
        task = bar.add_task("prepare (audio seconds)", total=round(total), status=f"0/{len(jobs)} files")

        def advance(index: int, fraction: float) -> None:
            done_fraction[index] = max(done_fraction[index], fraction)
            completed = sum(max(j.estimated_seconds, 1.0) * f for j, f in zip(jobs, done_fraction))
            bar.update(task, completed=round(completed), status=f"{len(records)}/{len(jobs)} files")
            if on_progress is not None:
                on_progress(completed / total, f"{len(records)}/{len(jobs)} files")

        def finished(record: dict) -> None:
            records.append(record)
            if not interactive:
                kept = len(record.get("clips", []))
                what = f"{kept} clips" if record["status"] == "kept" else f"rejected: {record.get('reason')}"
                error_console.print(
                    f"[{len(records)}/{len(jobs)}] {record['path']}: {what}", highlight=False, markup=False
                )

        _loaded.clear()  # a fresh run: models follow this run's options
        if at_once == 1:
            for index, job in enumerate(jobs):
                finished(prepare_source(job, context, progress=functools.partial(advance, index)))
                advance(index, 1.0)
            return records
        events: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()

        def reporter(index: int) -> Callable[[float], None]:
            def report(fraction: float) -> None:
                if stop.is_set():
                    raise _Stopped
                events.put((index, fraction))

            return report

        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="prepare") as pool:
            pending = {
                pool.submit(prepare_source, job, context, reporter(index)): index for index, job in enumerate(jobs)
            }
            try:
                while pending:
                    done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                    while not events.empty():
                        advance(*events.get_nowait())
                    for future in done:
                        index = pending.pop(future)
                        try:
                            finished(future.result())
                        except Exception as err:  # noqa: BLE001 - prepare_source keeps its errors in the record; this is a bug
                            finished(
                                {
                                    "path": jobs[index].path,
                                    "status": "rejected",
                                    "reason": "error",
                                    "detail": f"{type(err).__name__}: {err}",
                                    "clips": [],
                                }
                            )
                        advance(index, 1.0)
            except BaseException:  # Ctrl-C: each thread stops at its next progress point (a batch at most)
                stop.set()  # and the lock is held until they have, so that no clip is written after it
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return records
