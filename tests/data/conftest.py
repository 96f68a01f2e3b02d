"""Fixtures of the data tests: the speech corpus, the whisper model, one prepared dataset.

The corpus is built once per session and `prepared` runs `voicetune prepare` on it once, in a real
subprocess; tests that change a dataset work on a copy.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from real_speech import RealRecording, build_real_corpus
from speech_corpus import CorpusFile, build_corpus, require_tools

from support.harness import WHISPER_WORKERS, voicetune, whisper_model_path


@pytest.fixture(scope="session")
def whisper_model() -> Path:
    path = whisper_model_path()
    if not (path / "model.bin").is_file():
        pytest.fail(f"the whisper-base model is not at {path}: put it there or set VOICETUNE_WHISPER_MODEL")
    return path


@pytest.fixture(scope="session")
def espeak_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("espeak_cache")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, espeak_cache) -> dict[str, CorpusFile]:
    require_tools()
    return build_corpus(tmp_path_factory.mktemp("corpus") / "recordings", espeak_cache)


@pytest.fixture(scope="session")
def corpus_dir(corpus) -> Path:
    return corpus["talk.mp3"].path.parent


@dataclass
class Prepared:
    dataset: Path
    result: subprocess.CompletedProcess
    seconds: float
    corpus: dict[str, CorpusFile]

    def manifest(self) -> list[dict]:
        return [json.loads(line) for line in (self.dataset / "manifest.jsonl").read_text().splitlines()]

    def report(self) -> dict:
        return json.loads((self.dataset / "report.json").read_text())

    def recording_of(self, source: str):
        for corpus_file in self.corpus.values():
            if Path(source).resolve() == corpus_file.path.resolve():
                return corpus_file.recording
        raise KeyError(source)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, corpus, corpus_dir, whisper_model) -> Prepared:
    """The corpus prepared once with whisper-base (a real subprocess, default settings)."""
    dataset = tmp_path_factory.mktemp("prepared") / "dataset"
    started = time.perf_counter()
    result = voicetune(
        "prepare", corpus_dir, "--out", dataset, "--whisper-model", whisper_model, "--workers", WHISPER_WORKERS
    )
    return Prepared(dataset, result, time.perf_counter() - started, corpus)


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory) -> dict[str, RealRecording]:
    """Recorded human speech (Spanish, French, Italian prompts, hold music between some)."""
    return build_real_corpus(tmp_path_factory.mktemp("real_speech") / "recordings")


@pytest.fixture(scope="session")
def real_prepared(tmp_path_factory, real_corpus, whisper_model) -> Prepared:
    """The real-speech recordings prepared once with whisper-base, language detected per file."""
    folder = next(iter(real_corpus.values())).path.parents[1]
    dataset = tmp_path_factory.mktemp("real_prepared") / "dataset"
    started = time.perf_counter()
    result = voicetune(
        "prepare", folder, "--out", dataset, "--whisper-model", whisper_model, "--workers", WHISPER_WORKERS
    )
    return Prepared(dataset, result, time.perf_counter() - started, {})
