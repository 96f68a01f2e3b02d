"""F5-TTS training data: an LJSpeech-layout folder -> mel spectrograms (cached) + token indices.

Layout read: DATA/wavs/ID.wav and DATA/metadata.csv with rows `id|text` or `id|text|normalized`
(the normalized column is used when present and not empty). With DATA/metadata_train.csv (and
optionally metadata_val.csv) those define the split; otherwise about 10% of the ids go to
validation, chosen by a stable hash of the id, so a clip keeps its split when clips are added.

Mels are computed with upstream's own MelSpec (vocos settings: 24 kHz, 100 mels, hop 256, window
and FFT 1024) from mono audio resampled with soxr when its rate differs, and cached in
CACHE/f5-mel/ under a key of the audio file's sha256 and the mel settings: a rerun or a resume
computes nothing again, and an edited wav gets a new entry. Cache files are written to a
temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voicetune import fsio
from voicetune.data.ljspeech import load_audio
from voicetune.errors import UsageError
from voicetune.fsio import sha256_file

log = logging.getLogger("voicetune.models.f5")

MIN_SECONDS, MAX_SECONDS = 0.3, 30.0  # upstream's CustomDataset skips clips outside this range
VAL_PERCENT = 10
CACHE_VERSION = 1  # bump when the way mels are computed changes


@dataclass(frozen=True)
class MetadataRow:
    id: str
    text: str
    wav: Path
    where: str  # "metadata.csv:12", for error messages


@dataclass(frozen=True)
class Clip:
    id: str
    text: str
    wav: Path
    audio_sha256: str
    mel_path: Path
    frames: int
    tokens: tuple[int, ...]


# ---- metadata -------------------------------------------------------------------------------


def read_metadata(path: Path, data_dir: Path) -> list[MetadataRow]:
    """Rows of one LJSpeech metadata file (read by `voicetune.data.ljspeech`, as prepare writes
    them); a row naming a missing wav is a UsageError, a row without text is left out."""
    from voicetune.data import ljspeech

    rows = []
    for row in ljspeech.read_metadata(path):
        if row.columns < 2:
            raise UsageError(
                f"--data {data_dir}: {path.name} line {row.line_number} is not `id|text` or "
                "`id|text|normalized_text`; fix or remove the line"
            )
        text = row.normalized_text if row.normalized_text and row.normalized_text.strip() else row.text
        text = " ".join(text.split())
        wav = ljspeech.audio_path_of(data_dir, row.item_id)
        if not wav.is_file():
            raise UsageError(
                f"--data {data_dir}: {path.name} line {row.line_number} names {row.item_id} but {wav} "
                "does not exist; add the file or remove the line"
            )
        if text:
            rows.append(MetadataRow(row.item_id, text, wav, f"{path.name}:{row.line_number}"))
    return rows


def split_by_hash(rows: list[MetadataRow]) -> tuple[list[MetadataRow], list[MetadataRow]]:
    """~10% validation by a stable hash of the id: the rule `voicetune prepare` writes splits with."""
    from voicetune.data.ljspeech import split_ids

    train_ids, val_ids = split_ids([r.id for r in rows], VAL_PERCENT / 100)
    train_set, val_set = set(train_ids), set(val_ids)
    return [r for r in rows if r.id in train_set], [r for r in rows if r.id in val_set]


def dataset_rows(data_dir: Path) -> tuple[list[MetadataRow], list[MetadataRow]]:
    """(train rows, val rows) of a dataset folder."""
    data_dir = Path(data_dir)
    train_file, val_file, all_file = (data_dir / f"metadata{s}.csv" for s in ("_train", "_val", ""))
    if train_file.is_file():
        train = read_metadata(train_file, data_dir)
        if val_file.is_file():
            return train, read_metadata(val_file, data_dir)
        return split_by_hash(train)
    if all_file.is_file():
        return split_by_hash(read_metadata(all_file, data_dir))
    raise UsageError(
        f"--data {data_dir}: no metadata.csv (or metadata_train.csv); give a dataset folder in "
        "LJSpeech layout (wavs/ID.wav + metadata.csv rows `id|text`), e.g. made by `voicetune prepare`"
    )


def dataset_texts(data_dir: Path) -> list[str]:
    train, val = dataset_rows(data_dir)
    return [r.text for r in train + val]


# ---- audio and mels -------------------------------------------------------------------------


class MelCache:
    """Mel spectrograms on disk, keyed by audio content and mel settings."""

    def __init__(self, cache_dir: Path, mel_settings: dict[str, Any]):
        from f5_tts.model.modules import MelSpec

        self.dir = Path(cache_dir) / "f5-mel"
        self.mel_settings = dict(mel_settings)
        self.sample_rate = int(mel_settings["target_sample_rate"])
        self._settings_key = json.dumps(
            {**self.mel_settings, "resampler": "soxr-HQ", "channels": "mean", "version": CACHE_VERSION}, sort_keys=True
        )
        self._mel = MelSpec(**self.mel_settings)
        self.computed = 0  # how many mels this instance computed (the rest came from the cache)

    def path_for(self, audio_sha256: str) -> Path:
        key = hashlib.sha256(f"{audio_sha256}|{self._settings_key}".encode()).hexdigest()
        return self.dir / key[:2] / f"{key}.npy"

    def mel_of(self, audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            mel = self._mel(torch.from_numpy(audio).unsqueeze(0))
        return mel.squeeze(0).float().numpy()  # (n_mels, frames)

    def get(self, wav: Path, audio_sha256: str) -> tuple[Path, int]:
        """(cache file, frames), computing and writing the mel on a miss."""
        path = self.path_for(audio_sha256)
        if path.is_file():
            try:
                return path, int(np.load(path, mmap_mode="r").shape[1])
            except (ValueError, OSError, IndexError):
                log.warning("damaged mel cache file %s: computing it again", path)
        mel = self.mel_of(load_audio(wav, self.sample_rate, clip=False))
        with fsio.atomic_path(path) as tmp, open(tmp, "xb") as handle:
            np.save(handle, mel)
        self.computed += 1
        return path, int(mel.shape[1])


# ---- datasets -------------------------------------------------------------------------------


class MelTextDataset(torch.utils.data.Dataset):
    """Items as upstream's CustomDataset returns them: mel (n_mels, frames) and the text (as indices)."""

    def __init__(self, clips: list[Clip]):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        return {
            "mel_spec": torch.from_numpy(np.load(clip.mel_path)),
            "text": torch.tensor(clip.tokens, dtype=torch.long),
        }


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Upstream's collate_fn (mels zero-padded, lengths kept), with the text already as indices
    padded with -1 as upstream's list_str_to_idx pads it, so the batch is all tensors."""
    mels = [item["mel_spec"] for item in items]
    mel_lengths = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
    longest = int(mel_lengths.max())
    mel = torch.stack([torch.nn.functional.pad(m, (0, longest - m.shape[-1]), value=0.0) for m in mels])
    texts = [item["text"] for item in items]
    text = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True, padding_value=-1)
    return {
        "mel": mel,
        "mel_lengths": mel_lengths,
        "text": text,
        "text_lengths": torch.tensor([len(t) for t in texts], dtype=torch.long),
    }


def build_clips(rows: Iterable[MetadataRow], cache: MelCache, encode, skipped: list[str]) -> list[Clip]:
    """Clips of `rows` with cached mels; clips outside upstream's 0.3-30 s are listed in `skipped`."""
    clips = []
    hop, rate = int(cache.mel_settings["hop_length"]), cache.sample_rate
    for row in rows:
        sha = sha256_file(row.wav)
        mel_path, frames = cache.get(row.wav, sha)
        seconds = frames * hop / rate
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            skipped.append(f"{row.id} ({seconds:.1f} s)")
            continue
        clips.append(Clip(row.id, row.text, row.wav, sha, mel_path, frames, tuple(encode(row.text))))
    return clips


def fingerprint(train: list[Clip], val: list[Clip]) -> str:
    """Hash of the ids, texts and audio content used, per split."""
    digest = hashlib.sha256()
    for split, clips in (("train", train), ("val", val)):
        for clip in clips:
            digest.update(json.dumps([split, clip.id, clip.text, clip.audio_sha256]).encode("utf-8"))
    return digest.hexdigest()
