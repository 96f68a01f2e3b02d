"""Audio bytes in the formats of OpenAI's speech API, written as audio arrives.

    wav   16-bit PCM; streamed with the sizes of an unknown length (0xFFFFFFFF), as OpenAI does
    pcm   raw 16-bit signed little-endian samples, no header
    flac  lossless; streamed as ffmpeg writes a FLAC stream to a pipe
    mp3, opus (in Ogg), aac (ADTS)   encoded by an ffmpeg process fed as chunks are done

An encoder is given `emit(bytes)`, called with each piece of the file as soon as it exists (from
an ffmpeg reader thread for the compressed formats); `write(samples)` feeds it, `close()` ends
the file. The concatenation of everything emitted is one valid file.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable

import numpy as np

from voicetune.errors import UsageError

MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
}
FFMPEG_ARGS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "64k", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "128k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
}
FFMPEG_ENCODERS = {"mp3": "libmp3lame", "opus": "libopus", "aac": "aac", "flac": "flac"}


def available_formats() -> list[str]:
    """The response formats this machine can write (the compressed ones need ffmpeg's encoder)."""
    return ["wav", "pcm", *[f for f in ("flac", "mp3", "opus", "aac") if _ffmpeg_has(FFMPEG_ENCODERS[f])]]


_encoders: set[str] | None = None


def _ffmpeg_has(encoder: str) -> bool:
    global _encoders
    if _encoders is None:
        _encoders = set()
        if shutil.which("ffmpeg"):
            out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
            _encoders = {
                line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" A")
            }
    return encoder in _encoders


def to_pcm16(samples: np.ndarray) -> bytes:
    """16-bit samples as libsndfile writes a float wav as PCM_16 (scaled by 32767, rounded)."""
    return np.rint(np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte header of 16-bit mono PCM; `data_bytes` None: unknown length (a stream)."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


class Encoder:
    """Writes one file in `fmt` through `emit`; see the module docstring."""

    def __init__(self, fmt: str, sample_rate: int, emit: Callable[[bytes], None], streaming: bool = True):
        if fmt not in available_formats():
            raise UsageError(f"response_format {fmt}: use one of {', '.join(available_formats())}")
        self.fmt, self.sample_rate, self.emit, self.streaming = fmt, sample_rate, emit, streaming
        self._held: list[bytes] = []  # a whole (not streamed) wav or flac is written at close
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        if fmt == "wav" and streaming:
            emit(wav_header(sample_rate, None))
        elif fmt in FFMPEG_ARGS and (streaming or fmt != "flac"):
            self._start_ffmpeg()

    def _start_ffmpeg(self) -> None:
        proc = self._proc = subprocess.Popen(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "s16le",
                "-ar",
                str(self.sample_rate),
                "-ac",
                "1",
                "-i",
                "pipe:0",
                *FFMPEG_ARGS[self.fmt],
                "pipe:1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

        stdout = proc.stdout
        assert stdout is not None  # a pipe

        def read() -> None:
            while True:
                data = stdout.read1(65536)  # type: ignore[attr-defined]  # a pipe's reader is buffered: it has read1
                if not data:
                    return
                self.emit(data)

        self._reader = threading.Thread(target=read, name=f"encode-{self.fmt}", daemon=True)
        self._reader.start()

    def write(self, samples: np.ndarray) -> None:
        data = to_pcm16(samples)
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        elif self.fmt in ("wav", "flac") and not self.streaming:
            self._held.append(data)
        else:
            self.emit(data)

    def close(self) -> None:
        """End the file: what is held is written, ffmpeg is drained and waited for."""
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            if self._reader is not None:
                self._reader.join()
            if self._proc.wait() != 0:
                raise RuntimeError(f"ffmpeg could not encode {self.fmt} (exit {self._proc.returncode})")
        elif self.fmt == "wav" and not self.streaming:
            data = b"".join(self._held)
            self.emit(wav_header(self.sample_rate, len(data)) + data)
        elif self.fmt == "flac":
            import soundfile as sf

            buffer = io.BytesIO()
            samples = np.frombuffer(b"".join(self._held), dtype="<i2")
            sf.write(buffer, samples, self.sample_rate, format="FLAC", subtype="PCM_16")
            self.emit(buffer.getvalue())

    def abort(self) -> None:
        """Stop without finishing the file (the client left)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def encode(samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """A whole file of `samples` in `fmt` (a wav with its real sizes)."""
    parts: list[bytes] = []
    encoder = Encoder(fmt, sample_rate, parts.append, streaming=False)
    encoder.write(samples)
    encoder.close()
    return b"".join(parts)
