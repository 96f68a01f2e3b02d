"""`voicetune demo`: the guarantees, shown on a real (tiny) training run in a few minutes.

1. Speak a small corpus with espeak-ng (LJSpeech layout), unless it is already there.
2. Train a tiny model with frequent checkpoints in a subprocess, and SIGKILL it mid-run.
3. Show the checkpoints the kill left, resume with the very same command, finish.
4. Print the checkpoint table, where the samples are, and the TensorBoard command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from voicetune.console import console
from voicetune.demo.corpus import write_ljspeech_corpus
from voicetune.errors import VoicetuneError
from voicetune.models.registry import DEFAULT_MODEL

# Milestones halfway (500) and at the end. A milestone's scoring (8 takes said and heard by
# whisper, the speaker encoder and DNSMOS) took 11.6 s on an idle 2-core machine and must cost at
# most 0.15 of the training between milestones (issue 29); f5-tiny makes 5.0-5.5 updates/s there
# (bench/eval_cost.py): every 80 updates, as before, scoring took longer than the training (1.20),
# every 300 still 0.19-0.21, every 500 0.12-0.13. The kill comes after the first milestone.
DEMO_MAX_UPDATES = 1000
DEMO_KILL_AT_STEP = 650


@dataclass(frozen=True)
class DemoPlan:
    out: Path
    model: str = DEFAULT_MODEL
    clips: int = 32
    max_updates: int = DEMO_MAX_UPDATES
    save_every: int = DEMO_MAX_UPDATES // 2
    last_every: int = 10
    kill_at_step: int = DEMO_KILL_AT_STEP
    sample_rate: int = 24000

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def run(self) -> Path:
        return self.out / "run"

    def train_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "voicetune",
            "train",
            "--data",
            str(self.data),
            "--run",
            str(self.run),
            "--model",
            self.model,
            "--max-updates",
            str(self.max_updates),
            "--save-every",
            str(self.save_every),
            "--last-every",
            str(self.last_every),
            "--keep-last",
            "2",
            "--set",
            "log_every=5",
            "--sample-text",
            "A voice trained on a laptop, killed and resumed.",
        ]


def run_demo(plan: DemoPlan) -> None:
    from voicetune.checkpoints.maintenance import list_checkpoints
    from voicetune.cli.tables import print_checkpoint_table

    console.rule("[bold]voicetune demo")
    console.print(f"1. a speech corpus spoken by espeak-ng: {plan.data}")
    write_ljspeech_corpus(plan.data, n_items=plan.clips, sample_rate=plan.sample_rate)
    if plan.run.exists():
        shutil.rmtree(plan.run)  # every demo starts a new run

    command = plan.train_command()
    shown = " ".join(f'"{a}"' if " " in a else a for a in command[2:])
    console.print(f"2. training {plan.model}; it will be killed with SIGKILL at step {plan.kill_at_step}:\n   {shown}")
    first = _start(command)
    killed_at = _wait_for_step(first, plan.run, plan.kill_at_step)
    if killed_at is None:
        raise VoicetuneError(
            f"the demo's training stopped on its own (exit {first.returncode}); see {plan.run}/train.log"
        )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    console.print(f"[bold red]   killed -9 at step {killed_at}[/], in the middle of training")

    rows, quarantined = list_checkpoints(plan.run)
    print_checkpoint_table(rows, "3. what the kill left (every checkpoint committed whole, or not at all)", quarantined)
    console.print("4. the same command again resumes from the newest valid full-state checkpoint:")
    second = _start(command)
    if second.wait() != 0:
        raise VoicetuneError(f"the resumed training failed (exit {second.returncode}); see {plan.run}/train.log")

    rows, quarantined = list_checkpoints(plan.run)
    print_checkpoint_table(rows, f"checkpoints of {plan.run}", quarantined)
    samples = sorted(p for p in (plan.run / "samples").glob("step_*") if p.is_dir())
    console.print(f"samples ({len(samples)} sets, generated and reference wavs + mel images): {plan.run / 'samples'}")
    if samples:
        console.print("   newest: " + ", ".join(p.name for p in sorted(samples[-1].iterdir())))
    console.print(f"losses per update: {plan.run / 'metrics.jsonl'}")
    console.print(f"TensorBoard: tensorboard --logdir {plan.run / 'tensorboard'}")
    console.print(f"verify every file of every checkpoint: voicetune ckpt verify {plan.run}")


def _start(command: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Own process group, so that the kill takes the DataLoader workers too, as a real crash would.
    return subprocess.Popen(command, env=env, start_new_session=True)


def _wait_for_step(proc: subprocess.Popen, run: Path, step: int, timeout: float = 1800) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        current = last_logged_step(run / "metrics.jsonl")
        if current >= step:
            return current
        time.sleep(0.1)
    return None


def last_logged_step(metrics: Path) -> int:
    """The step of the last complete line of a run's metrics.jsonl (0 when there is none yet)."""
    if not metrics.is_file():
        return 0
    for line in reversed(metrics.read_text(errors="replace").splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0
