"""A trained f5-tiny run and a real `voicetune serve` subprocess for the synthesis and server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from support.harness import cli_env, run_cli

MODEL = "anna"
NFE = "4"  # sampling steps for tests: the same code path as 32, in an eighth of the time


def train_tiny_f5(root: Path) -> Path:
    """ROOT/anna = f5-tiny after 2 updates on an espeak-ng corpus at 22.05 kHz."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    corpus = write_ljspeech_corpus(root / "corpus", n_items=14, sample_rate=22050)
    rows = (corpus / "metadata.csv").read_text().splitlines()
    (corpus / "metadata_train.csv").write_text("\n".join(rows[:-2]) + "\n")
    (corpus / "metadata_val.csv").write_text("\n".join(rows[-2:]) + "\n")
    run = root / MODEL  # served as the model "anna", the name the guide's examples use
    result = run_cli(
        "train",
        "--data",
        corpus,
        "--run",
        run,
        "--model",
        "f5-tiny",
        "--max-updates",
        "2",
        "--save-every",
        "2",
        "--last-every",
        "2",
        "--batch-frames",
        "700",
        "--workers",
        "1",
        "--set",
        "max_sample_prompts=0",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def train_tiny_xtts(root: Path) -> Path:
    """ROOT/run = xtts-tiny after 2 updates on an espeak-ng corpus at 22.05 kHz (a run the synthesis
    engine and `serve` load, as train_tiny_f5's)."""
    from support.harness import xtts_args
    from voicetune.demo.corpus import write_ljspeech_corpus

    corpus = write_ljspeech_corpus(root / "corpus", n_items=14, sample_rate=22050)
    run = root / "run"
    args = xtts_args(
        corpus, run, "--save-every", "2", "--last-every", "2", "--set", "max_sample_prompts=0", max_updates=2
    )
    result = run_cli("train", *args, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def train_tiny_chatterbox(root: Path) -> Path:
    """ROOT/run = chatterbox-tiny after 2 updates on an espeak-ng corpus (as train_tiny_xtts's)."""
    from support.harness import xtts_args
    from voicetune.demo.corpus import write_ljspeech_corpus

    corpus = write_ljspeech_corpus(root / "corpus", n_items=14, sample_rate=22050)
    run = root / "run"
    args = xtts_args(
        corpus,
        run,
        "--save-every",
        "2",
        "--last-every",
        "2",
        "--set",
        "max_sample_prompts=0",
        max_updates=2,
        model="chatterbox-tiny",
    )
    result = run_cli("train", *args, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SpeechServer:
    """`voicetune serve ARGS` on a free port of 127.0.0.1, ready once it printed its address."""

    def __init__(self, *args, log: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicetune", "serve", *map(str, args), "--port", str(self.port)],
            env=env or cli_env(),
            stdout=subprocess.PIPE,
            stderr=self._out,
            start_new_session=True,
        )
        for line in self.proc.stdout:  # the address line is printed once the first model is loaded
            self._out.write(line)
            if line.startswith(b"voicetune serve:"):
                break
        else:
            raise AssertionError(f"the server exited ({self.proc.wait()}) before serving:\n{self.output()}")
        self._drain = threading.Thread(target=self._copy_output, daemon=True)
        self._drain.start()

    def _copy_output(self) -> None:
        for line in self.proc.stdout:
            self._out.write(line)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=30).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._drain.join(timeout=30)
        self._out.close()
