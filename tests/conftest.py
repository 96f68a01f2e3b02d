"""Shared fixtures: real espeak-ng speech corpora and a driver for `voicetune` subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.harness import XTTS_STEPS, run_cli, xtts_args


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> Path:
    """16 espeak-ng clips at 16 kHz in LJSpeech layout (the toy model's data)."""
    from voicetune.demo_corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("toy_corpus"), n_items=16, sample_rate=16000)


@pytest.fixture(scope="session")
def xtts_corpus(tmp_path_factory) -> Path:
    """14 espeak-ng clips (2-3 s each) at 22.05 kHz, XTTS's rate, in LJSpeech layout."""
    from voicetune.demo_corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("xtts_corpus"), n_items=14, sample_rate=22050)


@pytest.fixture(scope="session")
def tiny_full_run(xtts_corpus, tmp_path_factory) -> Path:
    """xtts-tiny with its whole GPT trained for 60 updates; one sample prompt at the final milestone.
    (Shared by the XTTS adapter and LoRA tests.)"""
    run = tmp_path_factory.mktemp("xtts_full") / "run"
    result = run_cli("train", *xtts_args(xtts_corpus, run, "--save-every", str(XTTS_STEPS), "--last-every", "30",
                                         "--set", "max_sample_prompts=1", max_updates=XTTS_STEPS))
    assert result.returncode == 0, result.stdout + result.stderr
    (run / "stdout.txt").write_text(result.stdout)
    return run


