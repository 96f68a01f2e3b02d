"""The language a dataset records, and the language a run takes from it.

`prepare` writes the language it was told (`.voicetune/settings.json`) or detected per clip
(`manifest.jsonl`); the dataset carries that fact into every run trained on it (DESIGN.md, style
14). `train` takes it when `--language` is left out and refuses a `--language` that contradicts it,
so that a Spanish voice is never trained, scored and spoken as English by a forgotten flag.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from voicetune.errors import UsageError

FALLBACK_LANGUAGE = "en"  # a plain LJSpeech folder records no language
MISMATCH_OK = "ok"
# A language that holds this share of a dataset's clips is the dataset's: prepare detects each
# file's language, and Whisper takes a few short clips of one language for a neighbour (3 of 69
# real Spanish prompts came out as Italian). Below it, the dataset is mixed and the run must name one.
DOMINANT_SHARE = 0.9
# Where the language of a run made before runs took their dataset's came from (its run.json
# records none): train's old default, whatever the dataset was.
EARLIER_DEFAULT = "the run's, from an earlier voicetune whose default was en"


def dataset_languages(dataset: Path) -> Counter[str]:
    """Clips per language as `prepare` recorded them: the language it was told for the whole
    dataset, else each clip's detected one (manifest.jsonl); empty when the folder records none."""
    dataset = Path(dataset)
    settings = dataset / ".voicetune" / "settings.json"
    manifest = dataset / "manifest.jsonl"
    clips: Counter[str] = Counter()
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                language = json.loads(line).get("language") if line.strip() else None
            except ValueError:
                continue
            if isinstance(language, str) and language:
                clips[language] += 1
    try:
        told = json.loads(settings.read_text(encoding="utf-8")).get("language")
    except (OSError, ValueError, AttributeError):
        told = None
    if isinstance(told, str) and told and told != "auto":
        return Counter({told: sum(clips.values()) or 1})
    return clips


def dataset_language(dataset: Path) -> str | None:
    """The dataset's language (its most common one when it holds several), or None."""
    languages = dataset_languages(dataset)
    return languages.most_common(1)[0][0] if languages else None


@dataclass(frozen=True)
class RunLanguage:
    """The language a run trains, scores and speaks in, and where it came from (run.json)."""

    code: str
    source: str  # "dataset", "--language", "--language (--language-mismatch ok)", "default"

    def describe(self) -> str:
        return {
            "dataset": f"{self.code} (the dataset's)",
            "--language": f"{self.code} (--language, as the dataset)",
            "default": f"{self.code} (the dataset records no language; give --language to change it)",
        }.get(self.source, f"{self.code} ({self.source})")


def choose_language(given: str | None, recorded: Counter[str], mismatch: str, dataset: Path | None) -> RunLanguage:
    """The run's language from `--language` (None when left out) and the dataset's `recorded`
    languages (clips per language). A contradiction is refused unless `mismatch` is "ok"."""
    shares = ", ".join(f"{code} ({count} clips)" for code, count in recorded.most_common())
    if given is None:
        if not recorded:
            return RunLanguage(FALLBACK_LANGUAGE, "default")
        (code, count), *others = recorded.most_common()
        total = sum(recorded.values())
        if others and count >= DOMINANT_SHARE * total:
            also = ", ".join(f"{c} ({n} clips)" for c, n in others)
            return RunLanguage(code, f"the dataset's: {count} of {total} clips; also detected {also}")
        if others:
            raise UsageError(
                f"--data {dataset}: its clips are in several languages: {shares}; name the one to train "
                "with --language CODE (or prepare one dataset per language)"
            )
        return RunLanguage(code, "dataset")
    if not recorded or given in recorded:
        return RunLanguage(given, "--language" if recorded else "--language (the dataset records none)")
    if mismatch == MISMATCH_OK:
        return RunLanguage(given, f"--language, the dataset's being {shares}; --language-mismatch ok")
    raise UsageError(
        f"--language {given}: the dataset {dataset} is {shares}, as `prepare` recorded it; leave --language "
        f"out to train in its language, or add --language-mismatch ok to train its clips as {given}"
    )


def stale_language_warning(run: Path, what: str) -> str | None:
    """One line for a run made before runs took their dataset's language (its run.json records no
    "language"), whose training language contradicts its dataset's: what goes wrong and the fix.
    None for a newer run (a contradiction there was asked for) or when they agree or are unknown."""
    try:
        info = json.loads((Path(run) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = info.get("config") or {}
    trained, dataset = config.get("language"), config.get("data")
    recorded_source = (info.get("language") or {}).get("from")
    if recorded_source not in (None, EARLIER_DEFAULT) or not trained or not dataset or not Path(dataset).is_dir():
        return None
    recorded = dataset_languages(Path(dataset))
    if not recorded or trained in recorded:
        return None
    theirs = recorded.most_common(1)[0][0]
    return (
        f"{what} was trained as '{trained}' but its dataset {dataset} is '{theirs}': it is scored and "
        f"its text read as '{trained}'; resume it once with `voicetune train --data {dataset} --run {run} "
        f"--language {theirs}` to train, score and speak it as '{theirs}'"
    )
