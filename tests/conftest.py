"""Shared fixtures: real espeak-ng speech corpora and a driver for `voicetune` subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.harness import XTTS_STEPS, run_cli, xtts_args

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on two cores: one torch thread each (two threads per
    # worker would wait for each other while the other worker is busy).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A worker starts with COLUMNS=80 LINES=24, not the terminal's: the commands' tables would be
    # squeezed (support.harness gives them 200 columns when nothing else is set).
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

# Files that share a session fixture taking tens of seconds to build (the speech corpus prepared
# with whisper, the real-speech recordings, xtts-tiny's trained run): under `pytest -n` each group
# runs in one worker, so the fixture is built once (see pytest_xdist_make_scheduler).
SHARED_SETUP = {
    "speech-data": ("tests/data/",),
    "xtts-run": ("tests/models/test_xtts_adapter.py", "tests/models/test_lora.py"),
    "f5-voice": ("tests/serve/", "tests/synthesis/", "tests/models/test_chatterbox_adapter.py"),
}


# The longest files and groups, longest first (measured with `make test`, a minute or more down to
# about 20 s on 2 cores): handed out first, so that the two workers finish together on short files.
# A stale list costs only balance.
LONG_FIRST = (
    "tests/data/",
    "tests/serve/",
    "tests/synthesis/",
    "tests/models/test_xtts_adapter.py",
    "tests/models/test_lora.py",
    "tests/models/test_f5_training.py",
    "tests/train/test_ranks.py",
    "tests/scoring/test_eval.py",
    "tests/train/test_resume.py",
    "tests/scoring/test_training_eval.py",
    "tests/scoring/test_choosing_weights.py",
    "tests/studio/test_studio_browser.py",
    "tests/train/test_user_path.py",
    "tests/train/test_multinode.py",
    "tests/test_docs_examples.py",
    "tests/train/test_run_control.py",
    "tests/test_demo.py",
    "tests/models/test_xtts_new_language.py",
    "tests/train/test_timelines.py",
    "tests/scoring/test_dataset_score.py",
    "tests/models/test_f5_adapter.py",
    "tests/train/test_preemption.py",
    "tests/train/test_plan.py",
    "tests/scoring/test_identical_scores.py",
    "tests/train/test_oom.py",
)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike: the collections must match

        def rank(item) -> int:
            path = os.path.relpath(item.path, config.rootpath)
            return next((i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)), len(LONG_FIRST))

        items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two workers (pytest-xdist); a file's tests stay in one worker (its module
    fixtures are built once) and the files of a SHARED_SETUP group share one. Groups are handed
    out in collection order (LONG_FIRST first)."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class SharedSetupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((group for group, prefixes in SHARED_SETUP.items() if path.startswith(prefixes)), path)

    return SharedSetupScheduling(config, log)


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> Path:
    """16 espeak-ng clips at 16 kHz in LJSpeech layout (the toy model's data)."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("toy_corpus"), n_items=16, sample_rate=16000)


@pytest.fixture(scope="session")
def xtts_corpus(tmp_path_factory) -> Path:
    """14 espeak-ng clips (2-3 s each) at 22.05 kHz, XTTS's rate, in LJSpeech layout."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("xtts_corpus"), n_items=14, sample_rate=22050)


@pytest.fixture(scope="session")
def tiny_full_run(xtts_corpus, tmp_path_factory) -> Path:
    """xtts-tiny with its whole GPT trained for 60 updates; one sample prompt at the final milestone.
    (Shared by the XTTS adapter and LoRA tests.)"""
    run = tmp_path_factory.mktemp("xtts_full") / "run"
    result = run_cli(
        "train",
        *xtts_args(
            xtts_corpus,
            run,
            "--save-every",
            str(XTTS_STEPS),
            "--last-every",
            "30",
            "--set",
            "max_sample_prompts=1",
            max_updates=XTTS_STEPS,
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (run / "stdout.txt").write_text(result.stdout)
    return run


@pytest.fixture(scope="session")
def f5_voice_run(tmp_path_factory) -> Path:
    """f5-tiny trained for 2 updates on 14 espeak-ng clips (the last 2 held out): a run the synthesis
    engine, `serve` and `narrate` load. Its default voice is its dataset's first 2-12 s clip."""
    from support.speech_server import train_tiny_f5

    return train_tiny_f5(tmp_path_factory.mktemp("f5_voice"))


@pytest.fixture(scope="session")
def xtts_voice_run(tmp_path_factory) -> Path:
    """xtts-tiny trained for 2 updates on 14 espeak-ng clips: the XTTS run the synthesis engine and
    `serve` load beside f5_voice_run (the tests of a promise every family keeps take both)."""
    from support.speech_server import train_tiny_xtts

    return train_tiny_xtts(tmp_path_factory.mktemp("xtts_voice"))


@pytest.fixture(scope="session")
def chatterbox_voice_run(tmp_path_factory) -> Path:
    """chatterbox-tiny trained for 2 updates on 14 espeak-ng clips: the Chatterbox run of the tests
    of a promise every family keeps, and of its export."""
    from support.speech_server import train_tiny_chatterbox

    return train_tiny_chatterbox(tmp_path_factory.mktemp("chatterbox_voice"))
