"""Small file helpers for the dataset stages: wav writing, safe names, and the stages' defaults
over `voicetune.fsio` (where atomic writes and hashes live)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

from voicetune import fsio

# A dataset's clips taken out (by hand, or set aside by the speaker filter): DATASET/.voicetune/removed/,
# listed under this key in their source's record (prepare writes them, edit and report read them).
REMOVED_DIR = "removed"
REMOVED_KEY = "removed_clips"


def atomic_write_bytes(target: Path, data: bytes, only_if_changed: bool = True) -> bool:
    """`fsio.atomic_write_bytes`, keeping an unchanged file (and its mtime) by default, so that a
    rerun that has nothing new to say rewrites nothing."""
    return fsio.atomic_write_bytes(target, data, only_if_changed)


def atomic_write_text(target: Path, text: str, only_if_changed: bool = True) -> bool:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(target, text.encode("utf-8"), only_if_changed)


def write_wav_pcm16(target: Path, samples: np.ndarray, sample_rate: int) -> bytes:
    """Write mono float samples as a 16-bit PCM wav, atomically; returns the file's bytes."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    data = buffer.getvalue()
    atomic_write_bytes(target, data, only_if_changed=True)
    return data


def slugify(name: str, max_length: int = 32) -> str:
    """An ASCII file-name-safe form of `name` ('Entrevista Nº 3' -> 'entrevista_n_3')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    return slug[:max_length].strip("_") or "audio"
