"""The LJSpeech layout: `wavs/<id>.wav` and `metadata.csv` rows `id|text|normalized_text`.

Reading is lenient about what other tools write (two or three columns, `wavs/x.wav` as the id, a
header row, CRLF line ends); writing always gives three columns. The train/validation split is
decided by a hash of each clip's id, so adding recordings never moves an existing clip from one
side to the other.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

METADATA = "metadata.csv"
METADATA_TRAIN = "metadata_train.csv"
METADATA_VAL = "metadata_val.csv"
WAVS = "wavs"
HEADER_IDS = {"id", "audio_file", "audio", "file", "filename", "path", "wav"}


@dataclass(frozen=True)
class MetadataRow:
    line_number: int
    item_id: str  # as written: `x`, `x.wav` or `wavs/x.wav`
    text: str
    normalized_text: str | None
    columns: int

    @property
    def clip_id(self) -> str:
        """The id without folder or `.wav`: the name of wavs/<id>.wav."""
        name = self.item_id.replace("\\", "/").rsplit("/", 1)[-1]
        return name[:-4] if name.lower().endswith(".wav") else name


def read_metadata(path: Path) -> list[MetadataRow]:
    """Rows of an LJSpeech metadata file; blank lines and a header row are skipped."""
    rows = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        columns = line.split("|")
        if number == 1 and columns[0].strip().lower() in HEADER_IDS:
            continue
        text = columns[1] if len(columns) > 1 else ""
        normalized = columns[2] if len(columns) > 2 else None
        rows.append(MetadataRow(number, columns[0].strip(), text, normalized, len(columns)))
    return rows


def metadata_text(rows: Iterable[tuple[str, str, str]]) -> str:
    """`id|text|normalized_text` lines."""
    return "".join(f"{item_id}|{text}|{normalized}\n" for item_id, text, normalized in rows)


def split_score(clip_id: str) -> float:
    """A number in [0, 1) that depends only on the id: the split's coin."""
    return int.from_bytes(hashlib.sha256(clip_id.encode("utf-8")).digest()[:8], "big") / 2**64


def split_ids(clip_ids: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, validation): an id goes to validation when its score is below `val_fraction`,
    which keeps a clip on its side when others are added.

    Small datasets are held to the fraction asked for: validation gets at least one clip (when
    there are two or more) and at most ceil(val_fraction * n), the lowest scores kept."""
    if val_fraction <= 0:
        return list(clip_ids), []
    scores = {clip_id: split_score(clip_id) for clip_id in clip_ids}
    by_score = sorted(clip_ids, key=scores.__getitem__)
    wanted = sum(1 for clip_id in by_score if scores[clip_id] < val_fraction)
    most = math.ceil(val_fraction * len(clip_ids) - 1e-9)
    count = min(max(wanted, 1 if len(clip_ids) >= 2 else 0), most)
    val = set(by_score[:count])
    return [c for c in clip_ids if c not in val], [c for c in clip_ids if c in val]


# ---- reading a dataset for training -------------------------------------------------------------

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Item:
    item_id: str
    text: str  # the normalized text when metadata has one, else the raw text
    audio_path: Path


def read_ljspeech(data_dir: Path, val_fraction: float = 0.1) -> tuple[list[Item], list[Item]]:
    """(train items, validation items) of an LJSpeech folder.

    metadata_train.csv and metadata_val.csv decide the split when both exist; otherwise
    `split_ids` does, the same rule `voicetune prepare` writes them with."""
    data_dir = Path(data_dir)
    train_file, val_file = data_dir / METADATA_TRAIN, data_dir / METADATA_VAL
    if train_file.is_file() and val_file.is_file():
        return read_items(train_file, data_dir), read_items(val_file, data_dir)
    items = read_items(data_dir / METADATA, data_dir)
    by_id = {item.item_id: item for item in items}
    train_ids, val_ids = split_ids(list(by_id), val_fraction)
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def read_items(path: Path, data_dir: Path) -> list[Item]:
    """Training items of one metadata file; a malformed or empty file is a UsageError naming it."""
    from voicetune.errors import UsageError

    if not path.is_file():
        raise UsageError(
            f"--data {data_dir}: no {path.name}; a dataset folder needs wavs/ and metadata.csv "
            "(`id|text`), e.g. from `voicetune prepare`"
        )
    items = []
    for row in read_metadata(path):
        if row.columns < 2 or not row.item_id:
            raise UsageError(f"{path}:{row.line_number}: expected `id|text` or `id|text|normalized text`")
        text = (row.normalized_text if row.normalized_text and row.normalized_text.strip() else row.text).strip()
        items.append(Item(row.item_id, text, audio_path_of(data_dir, row.item_id)))
    if not items:
        raise UsageError(f"{path}: no items; add lines `id|text`")
    return items


def audio_path_of(data_dir: Path, item_id: str) -> Path:
    """`wavs/ID.wav`; an id that names a file is taken as it is written: `wavs/clip_001.wav` under
    the dataset folder, `clip_001.wav` (no folder) inside wavs/."""
    if item_id.lower().endswith(AUDIO_SUFFIXES):
        return data_dir / item_id if "/" in item_id.replace("\\", "/") else data_dir / WAVS / item_id
    return data_dir / WAVS / f"{item_id}.wav"


def load_audio(path: Path, sample_rate: int, clip: bool = True):
    """Mono float32 numpy array at `sample_rate` (soxr resampling, deterministic), clipped to
    [-1, 1] unless `clip` is False (some models' mels are computed from the unclipped resampled signal)."""
    import numpy as np
    import soundfile as sf
    import soxr

    from voicetune.errors import UsageError

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as err:  # soundfile raises LibsndfileError (a RuntimeError)
        raise UsageError(f"{path}: cannot read audio ({err}); convert it to wav with `voicetune prepare`") from None
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0) if clip else audio, dtype=np.float32)
