"""Shared fixtures: real espeak-ng speech corpora and a driver for `voicetune` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
TOY_MODEL = "support.toy_adapter:create"


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


XTTS_STEPS = 60


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


def xtts_args(data: Path, run: Path, *extra: str, max_updates: int) -> list[str]:
    # --workers 0: clips are read in the training process; a new worker every epoch (3 batches
    # here) costs more than the reading on 2 cores.
    return ["--data", str(data), "--run", str(run), "--model", "xtts-tiny", "--max-updates", str(max_updates),
            "--batch-size", "4", "--workers", "0", *extra]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None,
            preexec_fn=None) -> subprocess.CompletedProcess:
    """Run `python -m voicetune ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "voicetune", *map(str, args)], env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, preexec_fn=preexec_fn)


class Training:
    """A `voicetune train` subprocess that a test can watch, signal and kill."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, log: Path | None = None):
        self.args = [str(a) for a in args]
        self.log = log
        self._out = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "voicetune", "train", *self.args],
                                     env=env or cli_env(), stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.log:
                self._out.close()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the process and its DataLoader workers."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


def wait_until(predicate, timeout: float = 120, interval: float = 0.02, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(interval)
    return False


def last_logged_step(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = [l for l in path.read_text().splitlines() if l.startswith('{"step"')]
    import json

    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except ValueError:
            continue
    return 0


def toy_args(data: Path, run: Path, *extra: str, max_updates: int = 60) -> list[str]:
    return ["--data", str(data), "--run", str(run), "--model", TOY_MODEL, "--max-updates", str(max_updates),
            "--batch-size", "4", "--workers", "1", *extra]


def load_tensors(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"
