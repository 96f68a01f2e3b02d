"""Fixtures of the data tests: the speech corpus, the whisper model, one prepared dataset.

The corpus is built once per session and `prepared` runs `voicetune prepare` on it once, in a real
subprocess; tests that change a dataset work on a copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from speech_corpus import CorpusFile, build_corpus, require_tools

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS_DIR.parent
WHISPER_WORKERS = "2"  # the pool path, one thread per worker: the same results in every run


def whisper_model_path() -> Path:
    """The shared whisper-base CTranslate2 model: ../shared beside the repository, or
    $VOICETUNE_WHISPER_MODEL."""
    override = os.environ.get("VOICETUNE_WHISPER_MODEL")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2"


def voicetune(*args, env: dict | None = None, timeout: float = 600, check_exit: int | None = None) -> subprocess.CompletedProcess:
    """Run `python -m voicetune ARGS` with this checkout's code first on the path."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), full_env.get("PYTHONPATH", "")]))
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.setdefault("COLUMNS", "200")  # rich wraps at 80 columns when it is not on a terminal
    result = subprocess.run([sys.executable, "-m", "voicetune", *map(str, args)], env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    if check_exit is not None:
        assert result.returncode == check_exit, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


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
    result = voicetune("prepare", corpus_dir, "--out", dataset, "--whisper-model", whisper_model,
                       "--workers", WHISPER_WORKERS)
    return Prepared(dataset, result, time.perf_counter() - started, corpus)
