"""`voicetune dataset check`: validate any LJSpeech-layout folder, ours or a user's.

Errors are what would break or poison training (a row whose wav is missing or unreadable, empty
text, a stereo file, a sample rate unlike the others, the same id twice, characters the model's
vocabulary lacks); warnings are what deserves a look (wavs no row names, clips outside the
duration range, text too long for its audio, the same audio twice).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voicetune import fsio
from voicetune.data import ljspeech
from voicetune.errors import UsageError

ERROR = "error"
WARNING = "warning"
MAX_CHARS_PER_SECOND = 25.0  # faster than anyone speaks: the text holds more than the audio
MIN_CHARS_PER_SECOND = 1.0  # slower: the audio holds more than the text


@dataclass(frozen=True)
class Issue:
    severity: str  # error | warning
    code: str  # a short name: missing_wav, empty_text, ...
    message: str
    item_id: str | None = None
    line: int | None = None


@dataclass
class CheckReport:
    dataset: str
    issues: list[Issue] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts_by_code(self) -> dict[str, int]:
        return dict(sorted(collections.Counter(f"{i.severity}:{i.code}" for i in self.issues).items()))

    def to_json(self, max_issues: int | None = None) -> dict:
        issues = self.issues if max_issues is None else self.issues[:max_issues]
        return {
            "dataset": self.dataset,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "by_code": self.counts_by_code(),
            "stats": self.stats,
            "issues": [{k: v for k, v in asdict(i).items() if v is not None} for i in issues],
        }


def read_vocabulary(path: Path) -> set[str]:
    """The characters a model can read: a vocab.txt with one token per line, or any text
    file whose characters are the set."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--vocab {path}: cannot read it ({err}); pass a UTF-8 text file") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    single = [line for line in lines if len(line) == 1]
    if lines and len(single) >= 0.8 * len(lines):
        return set(single)
    return set(text) - {"\n", "\r"}


def check_dataset(
    dataset_dir: Path,
    vocabulary: Iterable[str] | None = None,
    sample_rate: int | None = None,
    min_seconds: float = 1.0,
    max_seconds: float = 30.0,
    max_text_chars: int = 300,
    with_prepare_report: bool = True,
) -> CheckReport:
    """Check an LJSpeech-layout folder: metadata.csv rows against wavs/<id>.wav. With
    `with_prepare_report`, the stats also say what `voicetune prepare` left out (its report.json)."""
    import soundfile as sf

    root = Path(dataset_dir)
    if not root.is_dir():
        raise UsageError(f"DATASET {root}: no such folder; pass the folder that holds metadata.csv and wavs/")
    metadata = root / ljspeech.METADATA
    if not metadata.is_file():
        raise UsageError(
            f"DATASET {root}: no {ljspeech.METADATA} in it; pass a folder in LJSpeech layout (metadata.csv and wavs/)"
        )
    report = CheckReport(str(root))
    add = report.issues.append
    try:
        rows = ljspeech.read_metadata(metadata)
    except UnicodeDecodeError as err:
        add(
            Issue(
                ERROR,
                "metadata_encoding",
                f"{metadata.name} is not UTF-8 ({err.reason} at byte {err.start}); save it as UTF-8",
            )
        )
        rows = []
    vocab = set(vocabulary) if vocabulary is not None else None
    seen: dict[str, int] = {}
    rates: collections.Counter = collections.Counter()
    per_clip: list[tuple[ljspeech.MetadataRow, float, int, str]] = []  # row, seconds, rate, wav sha256
    out_of_vocab: collections.Counter = collections.Counter()
    referenced: set[Path] = set()
    for row in rows:
        clip_id = row.clip_id
        if row.columns < 2 or not clip_id:
            add(
                Issue(
                    ERROR,
                    "bad_row",
                    f"line {row.line_number}: expected id|text or id|text|normalized_text",
                    clip_id or None,
                    row.line_number,
                )
            )
            continue
        if clip_id in seen:
            add(
                Issue(
                    ERROR,
                    "duplicate_id",
                    f"id {clip_id} is on lines {seen[clip_id]} and {row.line_number}",
                    clip_id,
                    row.line_number,
                )
            )
            continue
        seen[clip_id] = row.line_number
        spoken = (
            row.normalized_text if row.normalized_text is not None and row.normalized_text.strip() else row.text
        ).strip()
        if not row.text.strip():
            add(Issue(ERROR, "empty_text", f"{clip_id}: the text is empty", clip_id, row.line_number))
        elif len(spoken) > max_text_chars:
            add(
                Issue(
                    WARNING,
                    "text_too_long",
                    f"{clip_id}: {len(spoken)} characters (more than {max_text_chars})",
                    clip_id,
                    row.line_number,
                )
            )
        if vocab is not None:
            missing = sorted(set(spoken) - vocab)
            if missing:
                out_of_vocab.update(missing)
                add(
                    Issue(
                        ERROR,
                        "out_of_vocabulary",
                        f"{clip_id}: characters not in the vocabulary: {''.join(missing)!r}",
                        clip_id,
                        row.line_number,
                    )
                )
        wav = (root / row.item_id) if "/" in row.item_id.replace("\\", "/") else root / ljspeech.WAVS / f"{clip_id}.wav"
        referenced.add(wav.resolve())
        if not wav.is_file():
            add(
                Issue(
                    ERROR,
                    "missing_wav",
                    f"{clip_id}: {wav.relative_to(root) if wav.is_relative_to(root) else wav} does not exist",
                    clip_id,
                    row.line_number,
                )
            )
            continue
        try:
            info = sf.info(str(wav))
        except Exception as err:  # noqa: BLE001 - whatever libsndfile says, the file is reported, not fatal
            add(
                Issue(
                    ERROR,
                    "unreadable_wav",
                    f"{clip_id}: {wav.name} cannot be read ({str(err)[:120]})",
                    clip_id,
                    row.line_number,
                )
            )
            continue
        seconds = info.frames / info.samplerate if info.samplerate else 0.0
        if info.frames == 0:
            add(Issue(ERROR, "empty_wav", f"{clip_id}: {wav.name} holds no audio", clip_id, row.line_number))
            continue
        if info.channels != 1:
            add(
                Issue(
                    ERROR,
                    "not_mono",
                    f"{clip_id}: {info.channels} channels; TTS training takes mono",
                    clip_id,
                    row.line_number,
                )
            )
        rates[info.samplerate] += 1
        if not min_seconds - 0.01 <= seconds <= max_seconds + 0.01:
            add(
                Issue(
                    WARNING,
                    "duration_out_of_range",
                    f"{clip_id}: {seconds:.2f} s, outside {min_seconds:g}-{max_seconds:g} s",
                    clip_id,
                    row.line_number,
                )
            )
        if spoken and seconds > 0:
            rate = len(spoken) / seconds
            if rate > MAX_CHARS_PER_SECOND:
                add(
                    Issue(
                        WARNING,
                        "text_too_long_for_audio",
                        f"{clip_id}: {rate:.0f} characters per second of audio",
                        clip_id,
                        row.line_number,
                    )
                )
            elif rate < MIN_CHARS_PER_SECOND and seconds > 2:
                add(
                    Issue(
                        WARNING,
                        "text_too_short_for_audio",
                        f"{clip_id}: {rate:.1f} characters per second of audio",
                        clip_id,
                        row.line_number,
                    )
                )
        per_clip.append((row, seconds, info.samplerate, fsio.sha256_file(wav)))
    if not rows:
        add(Issue(ERROR, "empty_dataset", f"{metadata.name} has no rows"))
    _check_rates(report, per_clip, rates, sample_rate)
    _check_duplicate_audio(report, per_clip)
    _check_extra_wavs(report, root, referenced)
    _check_splits(report, root, set(seen))
    seconds = [s for _, s, _, _ in per_clip]
    report.stats = {
        "rows": len(rows),
        "clips_with_audio": len(per_clip),
        "seconds": round(sum(seconds), 2),
        "hours": round(sum(seconds) / 3600, 4),
        "sample_rates": {str(k): v for k, v in sorted(rates.items())},
        "min_seconds": round(min(seconds), 3) if seconds else None,
        "max_seconds": round(max(seconds), 3) if seconds else None,
        "out_of_vocabulary": "".join(sorted(out_of_vocab)) if vocab is not None else None,
    }
    if with_prepare_report:
        report.stats["left_out"] = _left_out_by_prepare(root)
    return report


PREPARE_REPORT = "report.json"


def _left_out_by_prepare(root: Path) -> dict | None:
    """report.json's rejections by reason ({reason: {count, seconds}}), or None for a folder that
    `voicetune prepare` did not make."""
    import json

    try:
        return json.loads((root / PREPARE_REPORT).read_text(encoding="utf-8")).get("rejections_by_reason")
    except (OSError, ValueError, AttributeError):
        return None


def _check_rates(report: CheckReport, per_clip, rates: collections.Counter, expected: int | None) -> None:
    reference = expected or (rates.most_common(1)[0][0] if rates else None)
    for row, _, rate, _ in per_clip:
        if reference and rate != reference:
            why = f"--sample-rate {expected}" if expected else f"the other clips' {reference} Hz"
            report.issues.append(
                Issue(ERROR, "sample_rate", f"{row.clip_id}: {rate} Hz, unlike {why}", row.clip_id, row.line_number)
            )


def _check_duplicate_audio(report: CheckReport, per_clip) -> None:
    first_with: dict[str, str] = {}
    for row, _, _, digest in per_clip:
        if digest in first_with:
            report.issues.append(
                Issue(
                    WARNING,
                    "duplicate_audio",
                    f"{row.clip_id}: the same audio as {first_with[digest]}",
                    row.clip_id,
                    row.line_number,
                )
            )
        else:
            first_with[digest] = row.clip_id


def _check_extra_wavs(report: CheckReport, root: Path, referenced: set[Path]) -> None:
    wavs = root / ljspeech.WAVS
    if wavs.is_dir():
        for wav in sorted(wavs.glob("*.wav")):
            if wav.resolve() not in referenced:
                report.issues.append(Issue(WARNING, "extra_wav", f"wavs/{wav.name} is not in metadata.csv", wav.stem))


def _check_splits(report: CheckReport, root: Path, ids: set[str]) -> None:
    splits = {}
    for name in (ljspeech.METADATA_TRAIN, ljspeech.METADATA_VAL):
        path = root / name
        if path.is_file():
            try:
                splits[name] = [row.clip_id for row in ljspeech.read_metadata(path)]
            except UnicodeDecodeError:
                report.issues.append(Issue(ERROR, "metadata_encoding", f"{name} is not UTF-8"))
    for name, split_ids in splits.items():
        for clip_id in sorted(set(split_ids) - ids):
            report.issues.append(Issue(ERROR, "split_unknown_id", f"{name}: {clip_id} is not in metadata.csv", clip_id))
    if len(splits) == 2:
        train, val = (set(v) for v in splits.values())
        for clip_id in sorted(train & val):
            report.issues.append(
                Issue(
                    ERROR,
                    "split_overlap",
                    f"{clip_id} is in both {ljspeech.METADATA_TRAIN} and {ljspeech.METADATA_VAL}",
                    clip_id,
                )
            )
        for clip_id in sorted(ids - train - val):
            report.issues.append(Issue(WARNING, "not_in_split", f"{clip_id} is in neither split file", clip_id))


def print_check_report(report: CheckReport, as_json: bool = False, per_code: int = 5) -> None:
    """Print the report: JSON on stdout, or a summary and the first issues of each kind."""
    import json

    from rich.markup import escape

    from voicetune.console import console

    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return
    stats = report.stats
    rates = ", ".join(f"{rate} Hz" for rate in stats.get("sample_rates", {})) or "no audio"
    console.print(
        f"[bold]{escape(report.dataset)}[/]: {stats.get('rows', 0)} rows, {stats.get('clips_with_audio', 0)} with audio, "
        f"{stats.get('hours', 0):.2f} h, {rates}"
    )
    if stats.get("left_out"):
        console.print(
            "left out by prepare: "
            + ", ".join(f"{reason} {v['count']} ({v['seconds']:.0f} s)" for reason, v in stats["left_out"].items())
            + f"; each one, with its reason (and similarity to the voice kept), in {PREPARE_REPORT}",
            highlight=False,
            markup=False,
        )
    shown: collections.Counter = collections.Counter()
    for issue in report.issues:
        shown[issue.code] += 1
        if shown[issue.code] <= per_code:
            colour = "red" if issue.severity == ERROR else "yellow"
            console.print(f"  [{colour}]{issue.severity}[/] {issue.code}: {escape(issue.message)}", highlight=False)
    for code, count in shown.items():
        if count > per_code:
            console.print(f"  ... {count - per_code} more {code}")
    verdict = "[green]ok[/]" if report.ok else "[red]not ok[/]"
    console.print(f"{verdict}: {len(report.errors)} errors, {len(report.warnings)} warnings")
