"""The language a run takes from its dataset (data/language.py): a table of what the dataset
records, what --language says, and what the run trains in, or the refusal a person reads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from voicetune.data.language import choose_language, dataset_languages, stale_language_warning
from voicetune.errors import UsageError

DATA = Path("datasets/me")


@pytest.mark.parametrize(
    "given, recorded, mismatch, code, source",
    [
        (None, {"es": 40}, "refuse", "es", "dataset"),  # the README's quick path: no flag
        ("es", {"es": 40}, "refuse", "es", "--language"),
        (None, {}, "refuse", "en", "default"),  # a plain LJSpeech folder
        ("ka", {}, "refuse", "ka", "--language (the dataset records none)"),
        ("es", {"es": 30, "en": 2}, "refuse", "es", "--language"),  # naming one of several
        # Whisper's guess on a few short clips: 3 of 69 real Spanish prompts came out as Italian
        (None, {"es": 66, "it": 3}, "refuse", "es", "the dataset's: 66 of 69 clips; also detected it (3 clips)"),
        ("en", {"es": 40}, "ok", "en", "--language, the dataset's being es (40 clips); --language-mismatch ok"),
    ],
)
def test_the_run_takes_the_dataset_s_language_unless_told_otherwise(given, recorded, mismatch, code, source):
    language = choose_language(given, Counter(recorded), mismatch, DATA)
    assert (language.code, language.source) == (code, source)


@pytest.mark.parametrize(
    "given, recorded, says",
    [
        ("en", {"es": 40}, ["--language en", "es (40 clips)", "--language-mismatch ok", "leave --language out"]),
        (None, {"es": 30, "en": 10}, ["several languages", "es (30 clips), en (10 clips)", "--language CODE"]),
        (None, {"es": 17, "pt": 2}, ["several languages", "es (17 clips), pt (2 clips)", "--language CODE"]),
    ],
)
def test_a_contradiction_is_refused_naming_both_and_the_fix(given, recorded, says):
    with pytest.raises(UsageError) as refused:
        choose_language(given, Counter(recorded), "refuse", DATA)
    assert all(part in str(refused.value) for part in says), str(refused.value)


def write_dataset(folder: Path, told: str | None, clips: list[str | None]) -> Path:
    (folder / ".voicetune").mkdir(parents=True)
    (folder / ".voicetune" / "settings.json").write_text(json.dumps({"language": told or "auto"}))
    (folder / "manifest.jsonl").write_text(
        "".join(json.dumps({"id": i, "language": c}) + "\n" for i, c in enumerate(clips))
    )
    return folder


def test_what_prepare_was_told_wins_over_what_it_detected(tmp_path):
    assert dataset_languages(write_dataset(tmp_path / "a", "pt", ["es", "pt", "pt"])) == Counter({"pt": 3})
    assert dataset_languages(write_dataset(tmp_path / "b", None, ["es", "es", "it", None])) == Counter(es=2, it=1)
    assert dataset_languages(tmp_path / "plain") == Counter()


def test_an_old_run_whose_language_contradicts_its_dataset_is_named_with_the_fix(tmp_path):
    dataset = write_dataset(tmp_path / "data", None, ["es"] * 4)
    run = tmp_path / "run"
    run.mkdir()
    old = {"config": {"language": "en", "data": str(dataset)}}  # before runs recorded "language"
    (run / "run.json").write_text(json.dumps(old))
    warning = stale_language_warning(run, "run runs/me")
    assert warning is not None and "trained as 'en'" in warning and "--language es" in warning
    # A newer run records where its language came from: a mismatch there was asked for.
    (run / "run.json").write_text(json.dumps({**old, "language": {"code": "en", "from": "--language-mismatch ok"}}))
    assert stale_language_warning(run, "run runs/me") is None
    (run / "run.json").write_text(json.dumps({"config": {"language": "es", "data": str(dataset)}}))
    assert stale_language_warning(run, "run runs/me") is None
