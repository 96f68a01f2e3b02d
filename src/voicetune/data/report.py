"""The last stage of prepare: dataset-wide files rebuilt from the per-source records, the dataset
checked, report.json and the duration histogram written, and the summary printed.

Everything written here depends only on the records and the settings (never on the time or on how
many files this run did), so a rerun with nothing new rewrites no byte.
"""

from __future__ import annotations

import collections
import json
import statistics
from pathlib import Path

from voicetune.data import files, ljspeech
from voicetune.data.check import check_dataset
from voicetune.data.ingest import Rejection

REPORT = "report.json"
MANIFEST = "manifest.jsonl"
HISTOGRAM = "durations.png"
HISTOGRAM_BIN_SECONDS = 0.5


def load_records(sources_dir: Path) -> list[dict]:
    """Every source record, sorted by source path."""
    records = []
    for path in sorted(sources_dir.glob("*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a record is written atomically; an unreadable one is treated as never written
    return sorted(records, key=lambda r: (r.get("path", ""), r.get("sha256", "")))


def finish_dataset(out, options, transient: list[Rejection], last_run: dict) -> dict:
    """Write metadata*.csv, manifest.jsonl, durations.png and report.json from all records."""
    records = load_records(out.sources)
    clips = sorted((clip for record in records for clip in record.get("clips", [])), key=lambda c: c["id"])
    ids = {clip["id"] for clip in clips}
    for wav in out.wavs.glob("*.wav"):  # clips of a source whose record was never written (a killed run)
        if wav.stem not in ids:
            wav.unlink(missing_ok=True)
    train, val = ljspeech.split_ids([clip["id"] for clip in clips], options.val_fraction)
    val_ids = set(val)
    by_id = {clip["id"]: clip for clip in clips}

    def rows(selected):
        return ljspeech.metadata_text((i, by_id[i]["text"], by_id[i]["normalized_text"]) for i in selected)

    files.atomic_write_text(out.root / ljspeech.METADATA, rows([c["id"] for c in clips]))
    files.atomic_write_text(out.root / ljspeech.METADATA_TRAIN, rows(train))
    files.atomic_write_text(out.root / ljspeech.METADATA_VAL, rows(val))
    manifest = "".join(
        json.dumps({**clip, "split": "val" if clip["id"] in val_ids else "train"}, ensure_ascii=False, sort_keys=True)
        + "\n"
        for clip in clips
    )
    files.atomic_write_text(out.root / MANIFEST, manifest)
    durations = [clip["duration"] for clip in clips]
    write_duration_histogram(durations, out.root / HISTOGRAM, options.min_seconds, options.max_seconds)
    check = check_dataset(
        out.root,
        sample_rate=options.sample_rate,
        min_seconds=options.min_seconds,
        max_seconds=options.max_seconds,
        with_prepare_report=False,
    )
    report = build_report(records, clips, transient, options, len(train), len(val), check)
    kept = {c["id"] for c in clips}
    previous = _previous_scores(out.root / REPORT)
    if previous is not None:
        # `dataset score`'s findings stay until the next scoring, for the clips still there.
        previous["flagged_clips"] = [c for c in previous.get("flagged_clips", []) if c.get("id") in kept]
        report[SCORE_KEY] = previous
    files.atomic_write_text(out.root / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    files.atomic_write_text(out.state / "last_run.json", json.dumps(last_run, indent=2) + "\n", only_if_changed=False)
    return report


SCORE_KEY = "score"  # what `dataset score` (prepare --score) added to report.json


def _previous_scores(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(SCORE_KEY)
    except (OSError, ValueError):
        return None


def score_flags(dataset: Path) -> dict[str, list[str]]:
    """Clip id -> the flags `dataset score` gave it (report.json's score section), for sorting."""
    scores = _previous_scores(Path(dataset) / REPORT) or {}
    return {c["id"]: list(c.get("flags", [])) for c in scores.get("flagged_clips", []) if "id" in c}


def build_report(
    records: list[dict], clips: list[dict], transient: list[Rejection], options, n_train: int, n_val: int, check
) -> dict:
    """report.json: what the dataset holds, what was left out and why, what to look at."""
    rejections = [r.to_json() for r in transient]
    for record in records:
        if record.get("status") == "rejected":
            rejections.append(
                Rejection(
                    record["path"], record["reason"], record.get("detail", ""), record.get("seconds", 0.0)
                ).to_json()
            )
        rejections += record.get("rejected", [])
    rejections.sort(key=lambda r: (r["path"], r.get("start", -1.0), r["reason"]))
    by_reason: dict[str, dict] = {}
    for rejection in rejections:
        entry = by_reason.setdefault(rejection["reason"], {"count": 0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] = round(entry["seconds"] + rejection["seconds"], 3)
    durations = [clip["duration"] for clip in clips]
    flags = collections.Counter(flag for clip in clips for flag in clip["flags"])
    languages = collections.Counter(clip["language"] or "unknown" for clip in clips)
    sources = [
        {
            "path": r["path"],
            "sha256": r["sha256"],
            "status": r["status"],
            "reason": r.get("reason"),
            "duration": r.get("duration"),
            "clips": len(r.get("clips", [])),
            "seconds_kept": round(sum(c["duration"] for c in r.get("clips", [])), 3),
            "language": r.get("language"),
            "loudness_lufs": r.get("loudness_lufs"),
            "gain_db": r.get("gain_db"),
            "original_rate": r.get("original_rate"),
            "channels": r.get("channels"),
            "clipped_seconds": r.get("clipped_seconds"),
            "decode_warnings": r.get("decode_warnings") or [],
        }
        for r in records
    ]
    kept = sum(durations)
    report = {
        "settings": {
            "sample_rate": options.sample_rate,
            "min_seconds": options.min_seconds,
            "max_seconds": options.max_seconds,
            "loudness_lufs": options.loudness_lufs,
            "transcriber": options.transcriber,
            "whisper_model": options.whisper_model if options.transcriber == "whisper" else None,
            "language": options.language or "auto",
            "numbers_to_words": options.numbers_to_words,
            "val_fraction": options.val_fraction,
            "speaker": options.speaker,
        },
        "totals": {
            "sources": len(records) + sum(1 for r in transient),
            "sources_with_clips": sum(1 for r in records if r.get("clips")),
            "sources_rejected": sum(1 for r in records if r.get("status") == "rejected") + len(transient),
            "source_seconds": round(sum(r.get("duration") or 0.0 for r in records), 3),
            "clips": len(clips),
            "train_clips": n_train,
            "val_clips": n_val,
            "seconds_kept": round(kept, 3),
            "hours_kept": round(kept / 3600, 4),
            "seconds_rejected": round(sum(r["seconds"] for r in rejections), 3),
        },
        "clip_seconds": _duration_stats(durations),
        "rejections_by_reason": dict(sorted(by_reason.items())),
        "flags": dict(sorted(flags.items())),
        "languages": dict(sorted(languages.items())),
        "check": check.to_json(max_issues=100),
        "rejections": rejections,
        "sources": sources,
    }
    if options.speaker:
        report["speaker"] = speaker_summary(options.speaker, rejections, clips, records, check.to_json()["dataset"])
    if not options.language and len(set(languages) - {"unknown"}) > 1:
        report["mixed_languages"] = mixed_languages(languages, records)
    return report


def mixed_languages(languages: collections.Counter, records: list[dict]) -> dict:
    """report.json's `mixed_languages`, when languages were detected per file and differ: the
    majority (by clips), the files in the others, and how to keep one language."""
    majority = max(sorted(languages), key=lambda code: languages[code])
    others = sorted(r["path"] for r in records if r.get("clips") and r.get("language") != majority)
    return {
        "languages": dict(sorted(languages.items())),
        "majority": majority,
        "other_language_sources": others,
        "fix": f"a voice is trained on one language: rerun with --language {majority} and a new --out, "
        f"with the {len(others)} file(s) in other languages left out of INPUT (listed here), "
        "or prepare each language into its own dataset",
    }


BORDERLINE_SHOWN = 5


def speaker_summary(voice: str, rejections: list[dict], clips: list[dict], records: list[dict], dataset: str) -> dict:
    """report.json's `speaker`: the voice kept (and where to hear it, for auto), the estimated
    purity of the kept clips (their speech-weighted p_target), the seconds left out per reason (the
    sums of report.json's own rejection rows), and the decisions nearest the line, each with the
    command that overrules it."""
    from voicetune.data import speaker
    from voicetune.data.files import REMOVED_KEY

    left_out = [r for r in rejections if r["reason"] in speaker.REASONS]
    by_reason = {reason: sum(r["seconds"] for r in left_out if r["reason"] == reason) for reason in speaker.REASONS}
    judged = [c for c in clips if "p_target" in c]
    seconds = sum(c["duration"] for c in judged)
    aside = {c["id"] for r in records for c in r.get(REMOVED_KEY, [])}
    kept = {c["id"] for c in clips}
    decisions = [
        {
            "decision": "kept",
            "clip": c["id"],
            "path": c["source"],
            "start": c["start"],
            "end": c["end"],
            "p_target": c["p_target"],
            "overrule": f"voicetune dataset remove {dataset} {c['id']}",
        }
        for c in judged
    ] + [
        {
            "decision": "left out",
            "clip": r.get("clip"),
            "path": r["path"],
            "start": r["start"],
            "end": r["end"],
            "p_target": r["p_target"],
            "overrule": _restore_command(r, aside, dataset),
        }
        for r in left_out
        # A stretch whose clip a person restored is a kept clip now, a decision of its own above.
        if r["reason"] in speaker.JUDGED_REASONS and "p_target" in r and r.get("clip") not in kept
    ]
    stored = speaker.stored_target(Path(dataset) / ".voicetune")
    return {
        "voice": voice,
        "sample": stored.get("sample"),
        "same_voice": speaker.SAME_VOICE,
        "estimated_purity": round(sum(c["p_target"] * c["duration"] for c in judged) / seconds, 3) if seconds else None,
        "left_out": len(left_out),
        "seconds_left_out": round(sum(by_reason.values()), 3),
        "seconds_left_out_by_reason": {reason: round(value, 3) for reason, value in by_reason.items()},
        "borderline": sorted(decisions, key=lambda d: abs(d["p_target"] - 0.5))[:BORDERLINE_SHOWN],
        "most_like_the_voice_kept": sorted(left_out, key=lambda r: -r.get("similarity", 0.0))[:10],
    }


def _restore_command(row: dict, aside: set[str], dataset: str) -> str:
    """How a person overrules the filter's decision to leave a stretch out."""
    from voicetune.data import speaker

    if row.get("clip") in aside:
        return f"voicetune dataset restore {dataset} {row['clip']}"
    if row["p_target"] < speaker.BORDERLINE:
        return f"not set aside: judged another voice (p_target under {speaker.BORDERLINE})"
    return f"not restorable: {row['seconds']:.1f} s, too short for a clip of its own"


def speaker_lines(voice: dict) -> list[str]:
    """What the speaker filter did, in lines for a person (the summary printed and the studio)."""
    kept = "the voice that speaks most" if voice["voice"] == "auto" else "the voice of " + voice["voice"]
    sample = voice.get("sample")
    purity = voice.get("estimated_purity")
    lines = [
        f"speaker: kept {kept}"
        + (f" (hear it in {sample[0]} at {sample[1]:.1f}-{sample[2]:.1f} s)" if sample else "")
        + (f"; estimated purity of the kept clips {purity:.1%}" if purity is not None else "")
        + "; left out "
        + ", ".join(
            f"{reason} {seconds:.1f} s" for reason, seconds in voice.get("seconds_left_out_by_reason", {}).items()
        )
    ]
    if voice.get("borderline"):
        lines.append("  the decisions nearest the line (listen, and overrule with the command):")
        lines += [
            f"  {d['decision']} {d['path']} {d['start']:.1f}-{d['end']:.1f} s, p_target {d['p_target']:.2f}: {d['overrule']}"
            for d in voice["borderline"]
        ]
    return lines


def _histogram(durations: list[float]) -> tuple[list[float], list[int]]:
    if not durations:
        return [], []
    first = int(min(durations) / HISTOGRAM_BIN_SECONDS)
    last = int(max(durations) / HISTOGRAM_BIN_SECONDS) + 1
    edges = [round(i * HISTOGRAM_BIN_SECONDS, 3) for i in range(first, last + 1)]
    counts = [0] * (len(edges) - 1)
    for d in durations:
        counts[min(int(d / HISTOGRAM_BIN_SECONDS) - first, len(counts) - 1)] += 1
    return edges, counts


def _duration_stats(durations: list[float]) -> dict:
    edges, counts = _histogram(durations)
    if not durations:
        return {"min": None, "max": None, "mean": None, "median": None, "histogram": {"edges": [], "counts": []}}
    return {
        "min": round(min(durations), 3),
        "max": round(max(durations), 3),
        "mean": round(statistics.fmean(durations), 3),
        "median": round(statistics.median(durations), 3),
        "histogram": {"edges": edges, "counts": counts},
    }


def write_duration_histogram(durations: list[float], path: Path, min_seconds: float, max_seconds: float) -> None:
    """A PNG histogram of clip durations, with the bounds marked (matplotlib, Agg: no display)."""
    import io

    from voicetune.plotting import pyplot

    plt = pyplot()

    edges, counts = _histogram(durations)
    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    if counts:
        axes.bar(edges[:-1], counts, width=HISTOGRAM_BIN_SECONDS, align="edge", color="#4c72b0", edgecolor="white")
    for bound in (min_seconds, max_seconds):
        axes.axvline(bound, color="#c44e52", linestyle="--", linewidth=1)
    axes.set_xlabel("clip duration (s)")
    axes.set_ylabel("clips")
    total = sum(durations)
    axes.set_title(f"{len(durations)} clips, {total / 3600:.2f} h")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    files.atomic_write_bytes(path, buffer.getvalue())


def print_prepare_summary(result, console) -> None:
    """The printed summary: hours kept, clips, the split, rejections by reason, flags, the check."""
    from rich.markup import escape
    from rich.table import Table

    report = result.report
    totals = report["totals"]
    console.print(
        f"[bold]{escape(str(result.out_dir))}[/]: {totals['hours_kept']:.2f} h kept in {totals['clips']} clips "
        f"(train {totals['train_clips']}, val {totals['val_clips']}) from {totals['sources_with_clips']} of "
        f"{totals['sources']} files; this run prepared {result.processed_sources}, skipped {result.resumed_sources} "
        f"already done, in {result.elapsed_seconds:.1f} s with {result.workers} worker(s)"
    )
    if report["rejections_by_reason"]:
        table = Table(title="left out", title_justify="left", show_edge=False)
        table.add_column("reason")
        table.add_column("count", justify="right")
        table.add_column("seconds", justify="right")
        for reason, entry in report["rejections_by_reason"].items():
            table.add_row(reason, str(entry["count"]), f"{entry['seconds']:.1f}")
        console.print(table)
        for rejection in report["rejections"][:10]:
            where = f" {rejection['start']:.1f}-{rejection['end']:.1f} s" if "start" in rejection else ""
            console.print(
                f"  {rejection['path']}{where}: {rejection['reason']} ({rejection['detail']})",
                highlight=False,
                markup=False,
            )
        if len(report["rejections"]) > 10:
            console.print(f"  ... {len(report['rejections']) - 10} more in {REPORT}")
    if report.get("mixed_languages"):
        mixed = report["mixed_languages"]
        console.print(
            "warning: the clips are in "
            + str(len(mixed["languages"]))
            + " languages ("
            + ", ".join(f"{code} {n}" for code, n in mixed["languages"].items())
            + f"); {mixed['fix']}",
            highlight=False,
            markup=False,
            style="yellow",
        )
    if report.get("speaker"):
        for line in speaker_lines(report["speaker"]):
            console.print(line, highlight=False, markup=False)
    if report["flags"]:
        console.print(
            "flags: "
            + ", ".join(f"{flag} {count}" for flag, count in report["flags"].items())
            + f" (per clip in {MANIFEST})"
        )
    check = report["check"]
    verdict = "[green]ok[/]" if check["ok"] else f"[red]{check['errors']} errors[/]"
    console.print(f"check: {verdict}, {check['warnings']} warnings; details in {escape(str(result.out_dir / REPORT))}")
