"""Helpers the tests share: drive `voicetune` subprocesses, watch runs, compare tensors.

Imported as `support.harness` (tests/ is on sys.path); fixtures stay in the conftest files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS_DIR.parent
TOY_MODEL = "support.toy_adapter:create"
XTTS_STEPS = 60
WHISPER_WORKERS = "2"  # the pool path, one thread per worker: the same results in every run


def whisper_model_path() -> Path:
    """The shared whisper-base CTranslate2 model: ../shared beside the repository, or
    $VOICETUNE_WHISPER_MODEL."""
    override = os.environ.get("VOICETUNE_WHISPER_MODEL")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2"


def voicetune(
    *args, env: dict | None = None, timeout: float = 600, check_exit: int | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m voicetune ARGS` with this checkout's code first on the path."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), full_env.get("PYTHONPATH", "")]))
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.setdefault("COLUMNS", "200")  # rich wraps at 80 columns when it is not on a terminal
    full_env.setdefault("VOICETUNE_EVALUATE", "false")  # see cli_env
    result = run_cli(*args, env=full_env, timeout=timeout)
    if check_exit is not None:
        assert result.returncode == check_exit, (
            f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def xtts_args(data: Path, run: Path, *extra: str, max_updates: int, model: str = "xtts-tiny") -> list[str]:
    """`train` arguments for a tiny model trained in fixed batches of 4 clips (xtts-tiny, or
    `model`: chatterbox-tiny trains the same way on the same corpus)."""
    # --workers 0: clips are read in the training process; a new worker every epoch (3 batches
    # here) costs more than the reading on 2 cores.
    return [
        "--data",
        str(data),
        "--run",
        str(run),
        "--model",
        model,
        "--max-updates",
        str(max_updates),
        "--batch-size",
        "4",
        "--workers",
        "0",
        *extra,
    ]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    # Milestone scoring (synthesis, whisper, DNSMOS) is tested in tests/scoring, which turns it on;
    # elsewhere it would only slow runs down (best is then chosen by val_loss, as before).
    env.setdefault("VOICETUNE_EVALUATE", "false")
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None, preexec_fn=None
) -> subprocess.CompletedProcess:
    """Run `python -m voicetune ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "voicetune", *map(str, args)],
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        preexec_fn=preexec_fn,
    )


class Training:
    """A `voicetune train` subprocess that a test can watch, signal and kill."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, log: Path | None = None):
        self.args = [str(a) for a in args]
        self.log = log
        self._out = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicetune", "train", *self.args],
            env=env or cli_env(),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

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
    from voicetune.demo import last_logged_step as from_metrics

    return from_metrics(run / "metrics.jsonl")


def toy_args(data: Path, run: Path, *extra: str, max_updates: int = 60) -> list[str]:
    return [
        "--data",
        str(data),
        "--run",
        str(run),
        "--model",
        TOY_MODEL,
        "--max-updates",
        str(max_updates),
        "--batch-size",
        "4",
        "--workers",
        "1",
        *extra,
    ]


def load_tensors(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def assert_ranks_agree(run: Path, world: int = 2) -> None:
    """Every checkpoint of `run` records each rank's weights digest, all equal, and equal to the
    digest of the weights it saved."""
    from voicetune.checkpoints.store import CheckpointStore
    from voicetune.train.distributed import weights_digest

    store = CheckpointStore(run)
    checkpoints = store.scan()
    assert checkpoints
    for ckpt in checkpoints:
        assert store.verify(ckpt).problem is None
        digests = ckpt.manifest["rank_weights_sha256"]
        assert digests.keys() == {f"rank{r}" for r in range(world)}
        assert set(digests.values()) == {weights_digest(load_tensors(ckpt.path / "model.safetensors"))}


def printed_resume_command(output: str) -> list[str]:
    """The resume command a stopped `voicetune train` printed (the line after "to resume, ..."),
    as arguments for `run_cli`."""
    import shlex

    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if "to resume, " in line)
    command = shlex.split(lines[at + 1])
    assert command[:2] == ["voicetune", "train"], lines[at : at + 2]
    return command[1:]
