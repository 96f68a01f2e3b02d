"""Fixing a prepared dataset by hand: a clip's transcript corrected, a clip removed or restored.

The per-source records in DATASET/.voicetune/sources/ are what a prepared dataset is made of (a
rerun of `prepare` rebuilds metadata.csv from them), so an edit is written into the record first,
atomically, and the dataset-wide files (metadata*.csv, manifest.jsonl, report.json, durations.png)
are then rebuilt from the records by the same code `prepare` ends with, which also runs
`dataset check`. An edit therefore survives a rerun of `prepare`, and a crash at any instant
leaves the old dataset or the edited one.

A removed clip's wav moves to DATASET/.voicetune/removed/ and its record entry to the record's
"removed_clips", so that it can be restored exactly as it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from voicetune.data import files
from voicetune.data.files import REMOVED_DIR, REMOVED_KEY
from voicetune.data.ingest import Rejection
from voicetune.data.prepare import STATE_DIR, OutputFolder, OutputLock, PrepareOptions
from voicetune.data.report import REPORT, finish_dataset, load_records
from voicetune.data.text import normalize_transcript
from voicetune.errors import UsageError


@dataclass(frozen=True)
class ClipEntry:
    """One clip of a prepared dataset, as the clip table shows it."""

    clip_id: str
    text: str
    duration: float
    flags: list[str]
    source: str
    removed: bool
    wav: Path  # where its audio is now (wavs/ or .voicetune/removed/)


def list_clips(dataset: Path) -> list[ClipEntry]:
    """Every clip of a prepared dataset, kept ones first (by id), then removed ones."""
    from voicetune.data.report import score_flags

    out = _prepared(dataset)
    scored = score_flags(out.root)  # `dataset score`'s flags join prepare's, so "flags first" sorts by both
    kept, removed = [], []
    for record in load_records(out.sources):
        for clip in record.get("clips", []):
            entry = _entry(out, clip, removed=False)
            entry.flags.extend(f for f in scored.get(entry.clip_id, []) if f not in entry.flags)
            kept.append(entry)
        for clip in record.get(REMOVED_KEY, []):
            removed.append(_entry(out, clip, removed=True))
    return sorted(kept, key=lambda c: c.clip_id) + sorted(removed, key=lambda c: c.clip_id)


def set_transcript(dataset: Path, clip_id: str, text: str) -> dict:
    """Replace a clip's transcript (normalized as `prepare` normalizes); returns the new report."""
    out = _prepared(dataset)
    with OutputLock(out):
        sha, record = _record_of(out, clip_id)
        clip = next(c for c in record["clips"] if c["id"] == clip_id) if _holds(record, "clips", clip_id) else None
        if clip is None:
            raise UsageError(f"{clip_id}: the clip is removed; restore it before editing its text")
        settings = _settings(out)
        cleaned, normalized, text_flags = normalize_transcript(
            text, clip.get("language"), bool(settings.get("numbers_to_words"))
        )
        if not cleaned:
            raise UsageError(f"{clip_id}: the new transcript is empty; type what the clip says, or remove the clip")
        clip["text"], clip["normalized_text"] = cleaned, normalized
        clip["flags"] = sorted((set(clip.get("flags", [])) - {"digits_left"}) | set(text_flags))
        clip["text_edited"] = True
        _write_record(out, sha, record)
        return _rebuild(out)


def remove_clip(dataset: Path, clip_id: str) -> dict:
    """Take a clip out of the dataset (its wav kept aside for `restore_clip`); returns the new report."""
    return _move_clip(_prepared(dataset), clip_id, "clips", REMOVED_KEY)


def restore_clip(dataset: Path, clip_id: str) -> dict:
    """Put a removed clip back, text and audio as they were; returns the new report."""
    return _move_clip(_prepared(dataset), clip_id, REMOVED_KEY, "clips")


def _move_clip(out: OutputFolder, clip_id: str, from_key: str, to_key: str) -> dict:
    with OutputLock(out):
        sha, record = _record_of(out, clip_id)
        if not _holds(record, from_key, clip_id):
            state = "already removed" if from_key == "clips" else "not removed"
            raise UsageError(f"{clip_id}: the clip is {state}")
        aside = out.state / REMOVED_DIR
        aside.mkdir(exist_ok=True)
        live, kept_aside = out.wavs / f"{clip_id}.wav", aside / f"{clip_id}.wav"
        source, target = (live, kept_aside) if from_key == "clips" else (kept_aside, live)
        # Link first, record second, unlink last: a crash anywhere leaves the wav where the record
        # says it is (a stray copy in wavs/ is swept by the rebuild; one aside is harmless).
        target.unlink(missing_ok=True)
        os.link(source, target)
        clip = next(c for c in record[from_key] if c["id"] == clip_id)
        record[from_key] = [c for c in record[from_key] if c["id"] != clip_id]
        record.setdefault(to_key, []).append(clip)
        _write_record(out, sha, record)
        source.unlink()
        return _rebuild(out)


def _prepared(dataset: Path) -> OutputFolder:
    out = OutputFolder(Path(dataset))
    if not (out.state / "settings.json").is_file() or not out.sources.is_dir():
        raise UsageError(
            f"{dataset}: not a dataset made by `voicetune prepare` (no {STATE_DIR}/settings.json); "
            "edit its metadata.csv directly, or prepare the recordings with voicetune"
        )
    return out


def _entry(out: OutputFolder, clip: dict, removed: bool) -> ClipEntry:
    folder = out.state / REMOVED_DIR if removed else out.wavs
    return ClipEntry(
        clip["id"],
        clip["text"],
        float(clip["duration"]),
        list(clip.get("flags", [])),
        clip.get("source", ""),
        removed,
        folder / f"{clip['id']}.wav",
    )


def _holds(record: dict, key: str, clip_id: str) -> bool:
    return any(c["id"] == clip_id for c in record.get(key, []))


def _record_of(out: OutputFolder, clip_id: str) -> tuple[str, dict]:
    for record in load_records(out.sources):
        if _holds(record, "clips", clip_id) or _holds(record, REMOVED_KEY, clip_id):
            return record["sha256"], record
    raise UsageError(f"{clip_id}: no such clip in {out.root} (see metadata.csv for the ids)")


def _write_record(out: OutputFolder, sha: str, record: dict) -> None:
    # The same serialization `prepare` writes its records with.
    files.atomic_write_text(out.record_path(sha), json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def _settings(out: OutputFolder) -> dict:
    return json.loads((out.state / "settings.json").read_text(encoding="utf-8"))


def _rebuild(out: OutputFolder) -> dict:
    """metadata*.csv, manifest, histogram and report.json from the records, then `dataset check`."""
    previous = json.loads((out.root / REPORT).read_text(encoding="utf-8")) if (out.root / REPORT).is_file() else {}
    given = previous.get("settings", {})
    stored = _settings(out)
    options = PrepareOptions(
        sample_rate=int(stored["sample_rate"]),
        min_seconds=float(stored["min_seconds"]),
        max_seconds=float(stored["max_seconds"]),
        transcriber=stored["transcriber"],
        whisper_model=given.get("whisper_model") or "small",
        language=given.get("language") if given.get("language") != "auto" else None,
        numbers_to_words=bool(stored.get("numbers_to_words")),
        loudness_lufs=float(stored["loudness_lufs"]),
        val_fraction=float(given.get("val_fraction", 0.1)),
        # The --speaker given (a reference's path, or auto), which report.json's speaker section names.
        speaker=given.get("speaker") or stored.get("speaker"),
    )
    # Rejections of files that left no record (not audio, duplicates, unreadable) live only in the
    # previous report: carry them over, or the report would forget them.
    recorded = {r.get("path") for r in load_records(out.sources)}
    transient = [
        Rejection(r["path"], r["reason"], r.get("detail", ""), r.get("seconds", 0.0), r.get("start"), r.get("end"))
        for r in previous.get("rejections", [])
        if r["path"] not in recorded
    ]
    last_run_path = out.state / "last_run.json"
    last_run = json.loads(last_run_path.read_text(encoding="utf-8")) if last_run_path.is_file() else {}
    return finish_dataset(out, options, transient, last_run)
