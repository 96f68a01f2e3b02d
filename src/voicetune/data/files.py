"""Small file helpers for the dataset stages: atomic writes, content hashes, safe names.

Every file a stage writes goes to a temporary name in the same folder first and is renamed into
place, so that a killed run leaves either the old file or the complete new one, never a torn one
that a rerun would trust.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

import numpy as np

TEMP_MARK = ".tmp-"


def temp_path_for(target: Path) -> Path:
    """A temporary name beside `target` (same folder, so the final rename is atomic)."""
    return target.with_name(f"{TEMP_MARK}{os.getpid()}-{target.name}")


def atomic_write_bytes(target: Path, data: bytes, only_if_changed: bool = True) -> bool:
    """Write `data` to `target` atomically; returns False when the file already held these bytes.

    `only_if_changed` keeps the old file (and its mtime) when nothing changed, so that a rerun
    that has nothing new to say rewrites nothing.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if only_if_changed and target.is_file():
        try:
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                return False
        except OSError:
            pass
    tmp = temp_path_for(target)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return True


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


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temporary files that a killed run left in `folder`; returns how many."""
    removed = 0
    if folder.is_dir():
        for stale in folder.glob(f"{TEMP_MARK}*"):
            try:
                stale.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slugify(name: str, max_length: int = 32) -> str:
    """An ASCII file-name-safe form of `name` ('Entrevista Nº 3' -> 'entrevista_n_3')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    return slug[:max_length].strip("_") or "audio"
