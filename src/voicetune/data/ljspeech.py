"""Reading an LJSpeech-layout dataset folder: wavs/ plus metadata.csv (`id|text[|normalized text]`).

The split into training and validation items is decided by the folder when it has
metadata_train.csv and metadata_val.csv, and otherwise by a stable hash of each item's id, so the
same item lands on the same side on every machine and every run, and adding items to a dataset
never moves old ones across.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicetune.errors import UsageError

METADATA, METADATA_TRAIN, METADATA_VAL = "metadata.csv", "metadata_train.csv", "metadata_val.csv"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Item:
    item_id: str
    text: str  # the normalized text when metadata has one, else the raw text
    audio_path: Path


def read_ljspeech(data_dir: Path, val_fraction: float = 0.1) -> tuple[list[Item], list[Item]]:
    """(train items, validation items) of an LJSpeech folder."""
    data_dir = Path(data_dir)
    train_file, val_file = data_dir / METADATA_TRAIN, data_dir / METADATA_VAL
    if train_file.is_file() and val_file.is_file():
        return read_metadata(train_file, data_dir), read_metadata(val_file, data_dir)
    items = read_metadata(data_dir / METADATA, data_dir)
    return split_by_id_hash(items, val_fraction)


def read_metadata(path: Path, data_dir: Path) -> list[Item]:
    if not path.is_file():
        raise UsageError(f"--data {data_dir}: no {path.name}; a dataset folder needs wavs/ and metadata.csv "
                         "(`id|text`), e.g. from `voicetune prepare`")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].strip():
            raise UsageError(f"{path}:{number}: expected `id|text` or `id|text|normalized text`, got {line[:80]!r}")
        item_id = fields[0].strip()
        text = (fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]).strip()
        items.append(Item(item_id, text, audio_path_of(data_dir, item_id)))
    if not items:
        raise UsageError(f"{path}: no items; add lines `id|text`")
    return items


def audio_path_of(data_dir: Path, item_id: str) -> Path:
    """`wavs/ID.wav`, or the id itself when metadata names a file (`wavs/clip_001.wav|...`)."""
    if item_id.lower().endswith(AUDIO_SUFFIXES):
        return data_dir / item_id
    return data_dir / "wavs" / f"{item_id}.wav"


def split_by_id_hash(items: list[Item], val_fraction: float) -> tuple[list[Item], list[Item]]:
    """Items whose id hashes below `val_fraction` validate; at least one item on each side (if 2+)."""
    keyed = sorted(items, key=lambda item: _unit_hash(item.item_id))
    val_ids = {item.item_id for item in keyed if _unit_hash(item.item_id) < val_fraction}
    if not val_ids and len(items) > 1:
        val_ids = {keyed[0].item_id}
    if len(val_ids) == len(items) and len(items) > 1:
        val_ids.discard(keyed[-1].item_id)
    return [i for i in items if i.item_id not in val_ids], [i for i in items if i.item_id in val_ids]


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 at `sample_rate` (soxr resampling, deterministic)."""
    import soundfile as sf
    import soxr

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as err:  # soundfile raises LibsndfileError (a RuntimeError)
        raise UsageError(f"{path}: cannot read audio ({err}); convert it to wav with `voicetune prepare`") from None
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0**64
