"""The LJSpeech layout: `wavs/<id>.wav` and `metadata.csv` rows `id|text|normalized_text`.

Reading is lenient about what other tools write (two or three columns, `wavs/x.wav` as the id, a
header row, CRLF line ends); writing always gives three columns. The train/validation split is
decided by a hash of each clip's id, so adding recordings never moves an existing clip from one
side to the other.
"""

from __future__ import annotations

import hashlib
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
    """(train, validation): an id goes to validation when its score is below `val_fraction`.

    When that leaves validation empty although there are two clips or more, the clip with the
    lowest score goes there, so that training always has something to validate on (with more
    audio, that clip may go back to train once others qualify on their own)."""
    if val_fraction <= 0:
        return list(clip_ids), []
    scores = {clip_id: split_score(clip_id) for clip_id in clip_ids}
    val = {clip_id for clip_id, score in scores.items() if score < val_fraction}
    if not val and len(clip_ids) >= 2:
        val = {min(clip_ids, key=scores.__getitem__)}
    return [c for c in clip_ids if c not in val], [c for c in clip_ids if c in val]
