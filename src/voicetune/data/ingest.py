"""Stage 1, ingest: find the recordings, decode them, mix to mono, resample, normalize loudness.

Decoding streams blocks (soundfile where libsndfile reads the file, an ffmpeg subprocess for
everything else, video containers included), so that a long recording is never held at its
original rate and channel count: each block is mixed to mono and fed to two soxr resampling
streams, one at the dataset's rate and one at 16 kHz for voice activity detection and ASR.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicetune.errors import UsageError

ANALYSIS_RATE = 16000  # what silero-vad and whisper take

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .mp4 .m4v .mov .webm .mkv .aif .aiff .wma .caf".split()
)
# What libsndfile decodes itself. mp3 goes to ffmpeg too: it honours the encoder delay (gapless
# playback), so that times in the manifest match the file, and it prints no decoder chatter.
SOUNDFILE_EXTENSIONS = frozenset(".wav .wave .flac .ogg .oga .opus .aif .aiff .caf".split())
# Files that live beside recordings and are not recordings: never reported as rejected.
COMPANION_EXTENSIONS = frozenset(".txt .lab .csv .json .jsonl .md .part .ytdl .srt .vtt .ass".split())

FULL_SCALE = 0.999  # a decoded sample at or above this magnitude is taken as clipped
CLIPPING_RUN = 3  # consecutive full-scale samples that make a clipping event (one can be a peak)
MAX_PEAK_DBFS = -1.0  # the peak guard: loudness gain never pushes a sample above this
SILENT_LUFS = -70.0  # BS.1770's absolute gate: below it there is nothing to measure
LOUDNESS_BLOCK = 0.4  # seconds: BS.1770's gating block
LOUDNESS_HOP = 0.25  # of a block: blocks overlap by 75%
BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class Rejection:
    """A source file, or a stretch of one, left out of the dataset and why (report.json)."""

    path: str
    reason: str  # a short code: unreadable, empty, silent, no_speech, too_short, not_audio, ...
    detail: str = ""
    seconds: float = 0.0  # audio lost, where known
    start: float | None = None  # for a stretch inside a source
    end: float | None = None

    def to_json(self) -> dict:
        row = {"path": self.path, "reason": self.reason, "detail": self.detail, "seconds": round(self.seconds, 3)}
        if self.start is not None:
            row["start"] = round(self.start, 3)
            row["end"] = round(self.end or self.start, 3)
        return row


class SourceRejected(Exception):
    """Raised by a stage when a whole source file cannot give any clip."""

    def __init__(self, reason: str, detail: str = "", seconds: float = 0.0):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.seconds = seconds


@dataclass
class SourceScan:
    """The audio files found under the inputs, in a stable order, and the files that are not audio."""

    audio_files: list[Path]
    not_audio: list[Rejection]


def find_sources(inputs: Sequence[Path], exclude: Path | None = None) -> SourceScan:
    """Walk files and folders (recursively; hidden ones and `exclude`, the dataset being written,
    are passed over) and sort what is found into audio and not audio.

    A missing input is a usage error: it is a typo, and preparing the rest silently would hide it.
    """
    audio: list[Path] = []
    not_audio: list[Rejection] = []
    seen: set[Path] = set()
    excluded = exclude.resolve() if exclude is not None else None
    for given in map(Path, inputs):
        if not given.exists():
            raise UsageError(f"INPUT {given}: no such file or folder; pass audio files or folders of them")
        if given.is_file():
            candidates = [given]
        else:
            candidates = sorted(
                p
                for p in given.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(given).parts)
            )
        for path in candidates:
            resolved = path.resolve()
            if resolved in seen or (excluded is not None and resolved.is_relative_to(excluded)):
                continue
            seen.add(resolved)
            suffix = path.suffix.lower()
            if suffix in AUDIO_EXTENSIONS:
                audio.append(path)
            elif suffix not in COMPANION_EXTENSIONS or given.is_file():
                not_audio.append(
                    Rejection(
                        str(path), "not_audio", f"'{suffix or path.name}' is not an audio or video format prepare reads"
                    )
                )
    return SourceScan(audio, not_audio)


@dataclass
class DecodedStream:
    """An open decoder: native rate and channel count, and float32 blocks (frames, channels)."""

    sample_rate: int
    channels: int
    blocks: Iterator[np.ndarray]
    decoder: str
    warnings: list[str] = field(default_factory=list)


def open_audio(path: Path) -> DecodedStream:
    """Open `path` for decoding: soundfile where libsndfile reads it, ffmpeg otherwise."""
    import soundfile as sf

    if path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
        return _open_with_ffmpeg(path)
    try:
        handle = sf.SoundFile(str(path))
    except Exception:  # noqa: BLE001 - libsndfile cannot read this file (a wav with an odd codec, say): ffmpeg can
        return _open_with_ffmpeg(path)

    def blocks() -> Iterator[np.ndarray]:
        with handle:
            while True:
                block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block

    return DecodedStream(handle.samplerate, handle.channels, blocks(), "soundfile")


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UsageError(
            f"{tool} is not installed and is needed to decode mp3/m4a/video: run `sudo apt-get install ffmpeg`"
        )
    return path


def probe_audio_stream(path: Path) -> dict | None:
    """ffprobe's description of the first audio stream (sample_rate, channels, duration), or None."""
    result = subprocess.run(
        [
            _require("ffprobe"),
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels,duration:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SourceRejected(
            "unreadable", "ffprobe cannot read it: " + (_last_line(result.stderr) or f"exit {result.returncode}")
        )
    info = json.loads(result.stdout or "{}")
    streams = info.get("streams") or []
    if not streams:
        return None
    stream = dict(streams[0])
    stream.setdefault("duration", (info.get("format") or {}).get("duration"))
    return stream


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _open_with_ffmpeg(path: Path) -> DecodedStream:
    stream = probe_audio_stream(path)
    if stream is None:
        raise SourceRejected("no_audio_track", "the file has no audio stream")
    rate, channels = int(stream.get("sample_rate") or 0), int(stream.get("channels") or 0)
    if rate <= 0 or channels <= 0:
        raise SourceRejected("unreadable", f"ffprobe reports {rate} Hz, {channels} channels")
    # Native rate and channel layout, as float32: mixing and resampling are ours (soxr).
    command = [
        _require("ffmpeg"),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-vn",
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "-",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr_pipe = process.stdout, process.stderr
    assert stdout is not None and stderr_pipe is not None  # both are pipes
    decoded = DecodedStream(rate, channels, iter(()), "ffmpeg")

    def blocks() -> Iterator[np.ndarray]:
        bytes_per_block = BLOCK_FRAMES * channels * 4
        try:
            while True:
                data = stdout.read(bytes_per_block)
                if not data:
                    break
                usable = len(data) - len(data) % (channels * 4)
                yield np.frombuffer(data[:usable], dtype="<f4").reshape(-1, channels)
        finally:
            stdout.close()
            stderr = stderr_pipe.read().decode("utf-8", "replace")
            stderr_pipe.close()
            if process.wait() != 0 or stderr.strip():
                decoded.warnings.append(_last_line(stderr) or f"ffmpeg exited with {process.returncode}")

    decoded.blocks = blocks()
    return decoded


def probe_duration(path: Path) -> float:
    """The duration in seconds, from the header (cheap); 0.0 when it cannot be told."""
    import soundfile as sf

    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            info = sf.info(str(path))
            return float(info.frames) / info.samplerate
        except Exception:  # noqa: BLE001 - ffprobe is asked next
            pass
    try:
        stream = probe_audio_stream(path)
        return float((stream or {}).get("duration") or 0.0)
    except (SourceRejected, ValueError, OSError, UsageError):
        return 0.0


@dataclass
class SourceAudio:
    """One recording, mono, at the dataset rate and at 16 kHz, loudness-normalized."""

    path: Path
    samples: np.ndarray  # float32, mono, at `sample_rate`
    sample_rate: int
    analysis: np.ndarray  # float32, mono, 16 kHz: for VAD, energy and ASR
    original_rate: int
    channels: int
    decoder: str
    loudness_lufs: float  # measured before the gain
    gain_db: float
    clipped: list[tuple[float, float]]  # stretches (seconds) where the original was clipped
    decode_warnings: list[str]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class _Resampler:
    """A soxr stream from the original rate to one target rate (a pass-through when they match)."""

    def __init__(self, in_rate: int, out_rate: int):
        import soxr

        self.stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        )
        self.parts: list[np.ndarray] = []

    def feed(self, mono: np.ndarray, last: bool = False) -> None:
        out = mono if self.stream is None else self.stream.resample_chunk(mono, last=last)
        if len(out):
            self.parts.append(np.ascontiguousarray(out, dtype=np.float32))

    def result(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def _clipping_runs(block: np.ndarray, offset: int, rate: int) -> list[tuple[float, float]]:
    """Stretches of at least CLIPPING_RUN consecutive full-scale samples (any channel)."""
    if max(block.max(), -block.min()) < FULL_SCALE:  # whole-array reductions: fast, the usual case
        return []
    hot = np.abs(block[:, 0]) >= FULL_SCALE
    for channel in range(1, block.shape[1]):
        hot |= np.abs(block[:, channel]) >= FULL_SCALE
    edges = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [((offset + s) / rate, (offset + e) / rate) for s, e in zip(starts, ends) if e - s >= CLIPPING_RUN]


def _mix_to_mono(block: np.ndarray) -> np.ndarray:
    """The plain mean of the channels (column by column: numpy's mean(axis=1) is slow on 2 columns)."""
    mono = block[:, 0].astype(np.float32, copy=True)
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    if block.shape[1] > 1:
        mono *= np.float32(1.0 / block.shape[1])
    return mono


def merge_ranges(ranges: Iterable[tuple[float, float]], join_within: float = 0.1) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(ranges):
        if merged and start - merged[-1][1] <= join_within:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(round(a, 3), round(b, 3)) for a, b in merged]


def measure_loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4: K-weighting, 400 ms blocks overlapping by
    75%, absolute gate at -70 LUFS, relative gate 10 LU below); -inf for silence or < 0.4 s.

    The same figures as pyloudnorm's Meter (same filter coefficients, blocks and gates; the tests
    compare the two), computed with numpy alone: importing pyloudnorm loads scipy.signal, about
    1.5 s of every prepare worker's start."""
    block = int(round(LOUDNESS_BLOCK * rate))
    if len(samples) < block + 1:
        return -math.inf
    weighted = _fft_convolve(np.asarray(samples, np.float64), _k_weighting_response(rate))
    energy = np.concatenate(([0.0], np.cumsum(weighted * weighted)))
    count = int(np.round((len(samples) / rate - LOUDNESS_BLOCK) / (LOUDNESS_BLOCK * LOUDNESS_HOP))) + 1
    steps = np.arange(count) * LOUDNESS_HOP
    lower = (LOUDNESS_BLOCK * steps * rate).astype(np.int64)
    upper = np.minimum((LOUDNESS_BLOCK * (steps + 1) * rate).astype(np.int64), len(samples))
    z = (energy[upper] - energy[lower]) / (LOUDNESS_BLOCK * rate)  # mean square of each block

    def lufs(mean_square):
        return -0.691 + 10 * np.log10(mean_square)

    with np.errstate(divide="ignore"):
        block_loudness = lufs(z)
        above_absolute = z[block_loudness >= SILENT_LUFS]
        if not len(above_absolute):
            return -math.inf
        gated = z[(block_loudness > lufs(above_absolute.mean()) - 10) & (block_loudness > SILENT_LUFS)]
        return float(lufs(gated.mean())) if len(gated) else -math.inf


@functools.lru_cache(maxsize=8)
def _k_weighting_response(rate: int) -> np.ndarray:
    """The impulse response of BS.1770's K-weighting (a high shelf, +4 dB above 1.5 kHz, then a
    38 Hz high pass: RBJ biquads, as pyloudnorm designs them), 0.25 s long: its slowest pole
    decays by e^-60 in that time, so the response is exact in float64."""

    def biquad_response(b: list[float], a: list[float], z: np.ndarray) -> np.ndarray:
        return (b[0] + b[1] / z + b[2] / z**2) / (a[0] + a[1] / z + a[2] / z**2)

    w_shelf, w_pass = 2 * np.pi * 1500.0 / rate, 2 * np.pi * 38.0 / rate
    gain, alpha_shelf, alpha_pass = 10 ** (4.0 / 40), np.sin(w_shelf) / (2 / np.sqrt(2)), np.sin(w_pass) / (2 * 0.5)
    c, root = np.cos(w_shelf), 2 * np.sqrt(gain) * alpha_shelf
    shelf = (
        [
            gain * ((gain + 1) + (gain - 1) * c + root),
            -2 * gain * ((gain - 1) + (gain + 1) * c),
            gain * ((gain + 1) + (gain - 1) * c - root),
        ],
        [(gain + 1) - (gain - 1) * c + root, 2 * ((gain - 1) - (gain + 1) * c), (gain + 1) - (gain - 1) * c - root],
    )
    c = np.cos(w_pass)
    high_pass = ([(1 + c) / 2, -(1 + c), (1 + c) / 2], [1 + alpha_pass, -2 * c, 1 - alpha_pass])
    length, n_fft = int(0.25 * rate), 1 << 18  # the response sampled on a grid long enough not to alias
    z = np.exp(1j * np.linspace(0, np.pi, n_fft // 2 + 1))
    return np.fft.irfft(biquad_response(*shelf, z) * biquad_response(*high_pass, z), n_fft)[:length]


def _fft_convolve(signal: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`signal` filtered by `response` from a silent start, as long as `signal` (overlap-add)."""
    n_fft = 1 << min(18, (len(signal) + len(response) - 2).bit_length())
    step = n_fft - len(response) + 1
    spectrum = np.fft.rfft(response, n_fft)
    out = np.zeros(len(signal) + len(response) - 1)
    for start in range(0, len(signal), step):
        piece = signal[start : start + step]
        out[start : start + len(piece) + len(response) - 1] += np.fft.irfft(
            np.fft.rfft(piece, n_fft) * spectrum, n_fft
        )[: len(piece) + len(response) - 1]
    return out[: len(signal)]


def loudness_gain_db(loudness: float, peak: float, target_lufs: float, max_peak_dbfs: float = MAX_PEAK_DBFS) -> float:
    """The gain that brings `loudness` to `target_lufs`, lowered where the peak would pass the guard."""
    if not math.isfinite(loudness) or peak <= 0:
        return 0.0
    gain = target_lufs - loudness
    headroom = max_peak_dbfs - 20 * math.log10(peak)
    return min(gain, headroom)


def load_source(path: Path, sample_rate: int, target_lufs: float) -> SourceAudio:
    """Decode `path`, mix to mono, resample (soxr) and normalize its loudness (BS.1770).

    Raises SourceRejected for what cannot give speech: unreadable, empty, silent.
    """
    try:
        stream = open_audio(path)
    except (OSError, ValueError) as err:
        raise SourceRejected("unreadable", str(err)[:300]) from None
    to_target = _Resampler(stream.sample_rate, sample_rate)
    to_analysis = _Resampler(stream.sample_rate, ANALYSIS_RATE)
    clipped: list[tuple[float, float]] = []
    frames = 0
    try:
        for block in stream.blocks:
            if not len(block):
                continue
            clipped += _clipping_runs(block, frames, stream.sample_rate)
            frames += len(block)
            # The plain channel mean: a channel in antiphase would cancel, a dead one halves the level
            # (the loudness gain below makes up for that).
            mono = _mix_to_mono(block)
            to_target.feed(mono)
            to_analysis.feed(mono)
    except Exception as err:  # noqa: BLE001 - a decoder dying mid-file: keep what came out before it
        stream.warnings.append(f"decoding stopped: {err}")
    if frames == 0:
        detail = stream.warnings[-1] if stream.warnings else "no audio samples in the file"
        raise SourceRejected("unreadable" if stream.warnings else "empty", detail)
    for resampler in (to_target, to_analysis):
        resampler.feed(np.zeros(0, np.float32), last=True)
    samples, analysis = to_target.result(), to_analysis.result()
    duration = len(samples) / sample_rate
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak < 1e-4:  # -80 dBFS: digital silence or a dead input
        detail = "every sample is zero" if peak == 0 else f"peak level {20 * math.log10(peak):.0f} dBFS"
        raise SourceRejected("silent", detail, duration)
    loudness = measure_loudness(analysis, ANALYSIS_RATE)
    if not math.isfinite(loudness) or loudness < SILENT_LUFS:
        reason = "too_short" if duration < 0.5 else "silent"
        raise SourceRejected(reason, f"loudness {loudness:.0f} LUFS over {duration:.2f} s", duration)
    gain_db = loudness_gain_db(loudness, peak, target_lufs)
    scale = np.float32(10 ** (gain_db / 20))
    samples *= scale
    analysis *= scale
    return SourceAudio(
        path=path,
        samples=samples,
        sample_rate=sample_rate,
        analysis=analysis,
        original_rate=stream.sample_rate,
        channels=stream.channels,
        decoder=stream.decoder,
        loudness_lufs=round(loudness, 2),
        gain_db=round(gain_db, 2),
        clipped=merge_ranges(clipped),
        decode_warnings=stream.warnings,
    )


def read_reference(path: Path) -> tuple[np.ndarray, int]:
    """A reference clip as float32 mono and its rate (any format soundfile or ffmpeg reads)."""
    import soundfile as sf

    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - soundfile cannot read mp3/m4a on every libsndfile: ask torchcodec/ffmpeg
        try:
            from torchcodec.decoders import AudioDecoder

            samples = AudioDecoder(str(path)).get_all_samples()
            audio, rate = samples.data.numpy().T.astype(np.float32), samples.sample_rate
        except Exception:  # noqa: BLE001 - neither decoder reads it: a usage error naming the file
            raise UsageError(f"--ref {path}: cannot read audio ({err}); convert it to wav") from None
    return audio.mean(axis=1).astype(np.float32), int(rate)
