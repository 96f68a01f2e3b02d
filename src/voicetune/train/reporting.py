"""What a run shows: TensorBoard, metrics.jsonl, train.log lines, the progress bar, sample files.

Only rank 0 reports. What it writes is for people, so it degrades instead of dying: a full disk or
an I/O error on metrics.jsonl, TensorBoard events or sample files prints one loud line per sink
and training goes on (checkpoints have their own guard); a line says when the sink works again.

metrics.jsonl has one JSON line per update (exact float reprs, so a resumed
run's losses can be compared bit for bit with an uninterrupted one); after a resume, the lines of
updates that were lost in the crash appear twice and the later one counts.

`Throughput` gives the update and frame rates of the log, milestone time left out.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from rich.progress import TaskID

from voicetune import fsio
from voicetune.console import console, is_interactive, progress_bar
from voicetune.models.base import SampleAudio

if TYPE_CHECKING:
    from voicetune.config import TrainConfig

log = logging.getLogger("voicetune.train")

MILESTONE_WORK = "milestone-work.json"  # what the milestone in progress is doing (for the studio)


class Reporter:
    def __init__(
        self,
        run_path: Path,
        tensorboard_dir: Path,
        metrics_path: Path,
        start_step: int,
        max_updates: int,
        log_every: int,
        enabled: bool = True,
        save_every: int | None = None,
    ):
        self.enabled = enabled
        self.save_every = save_every
        self._milestones: list[float] = []  # seconds of each milestone's validation, samples and scores
        self._rate: float | None = None
        self.log_every = log_every
        self.max_updates = max_updates
        self.start_step = start_step
        self._writer = None
        self._metrics: TextIO | None = None
        self._progress = None
        self._task: TaskID | None = None
        self._interactive = is_interactive()
        self._metrics_path = metrics_path
        self._work_path = Path(run_path) / MILESTONE_WORK
        self._work_since: float | None = None
        self._work_step: int | None = None  # the milestone at work (or last at work)
        self._milestone_step: int | None = None  # the last milestone done
        self._failing: set[str] = set()
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        def open_tensorboard() -> None:
            # purge_step hides events a crashed session logged after the checkpoint we resume from.
            self._writer = SummaryWriter(str(tensorboard_dir), purge_step=start_step if start_step else None)

        self._guarded("TensorBoard", open_tensorboard)
        self._guarded("metrics.jsonl", self._open_metrics)
        # A session killed mid-milestone left its last words: this session has not said them.
        self._guarded(MILESTONE_WORK, lambda: self._work_path.unlink(missing_ok=True))
        if self._interactive:
            self._progress = progress_bar(own_eta=True)
            self._progress.start()
            self._task = self._progress.add_task("training", total=max_updates, completed=start_step, status="", eta="")

    def update(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._rate = scalars.get("perf/updates_per_s") or self._rate
        if "perf/updates_per_s" in scalars and self._rate:
            scalars["perf/eta_s"] = round(self._eta_parts(step)[0], 1)  # the studio shows the same ETA
        self._write_metrics(step, scalars)
        self._tensorboard(
            lambda w: [w.add_scalar(k, v, step) for k, v in scalars.items() if v is not None and np.isfinite(v)]
        )
        status = f"loss {scalars.get('train/loss', float('nan')):.4f}  lr {scalars.get('train/lr', 0):.2e}"
        eta = self.eta(step)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, status=status, eta=eta)
        if step % self.log_every == 0 or step == self.max_updates:
            rate = scalars.get("perf/updates_per_s")
            line = f"step {step}/{self.max_updates}  {status}  grad-norm {scalars.get('train/grad_norm', float('nan')):.3f}"
            if rate:
                line += f"  {rate:.2f} updates/s  ETA {eta}"
            log.info(line)
            if not self._interactive:
                console.print(line)

    def milestone_done(self, seconds: float, step: int | None = None) -> None:
        """The milestone of `step` (validation, samples, scores) took `seconds`: the ETA counts
        the milestones to come at the last one's time."""
        self._milestones.append(seconds)
        self._milestone_step = step
        if self._work_since is not None:
            self._work_since = None
            self._guarded(MILESTONE_WORK, lambda: self._work_path.unlink(missing_ok=True))

    def working(self, step: int, what: str) -> None:
        """Milestone work in progress ("scoring 3 of 8 takes (ema, seed 2)"): one line
        `step 45: scoring 3 of 8 takes (ema, seed 2)` on the console and in train.log, in the
        progress bar with the ETA, and in RUN/milestone-work.json with the ETA for a page that
        follows the run (the studio): updates stand still meanwhile, and it shows why."""
        if not self.enabled:
            return
        if self._work_since is None:
            self._work_since = time.time()
        self._work_step = step
        line = milestone_line(step, what)
        log.info(line)
        eta = self.eta(step)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, status=line, eta=eta)
        elif not self._interactive:
            console.print(line)
        record = {
            "step": step,
            "work": what,
            "line": line,
            "since": self._work_since,
            "now": time.time(),
            "eta_s": self.eta_seconds(step),
        }
        self._guarded(MILESTONE_WORK, lambda: fsio.atomic_write_json(self._work_path, record))

    def eta_seconds(self, step: int) -> float | None:
        """Seconds left: the updates at the measured update rate (milestone work excluded from
        it), plus the milestones still to come, each as long as the last one took (the one in
        progress: what is left of that); None before the update rate is measured."""
        return None if not self._rate else self._eta_parts(step)[0]

    def _eta_parts(self, step: int) -> tuple[float, float]:
        """(all, milestones of it) in seconds; the update rate is known."""
        assert self._rate
        updates = (self.max_updates - step) / self._rate
        last = self._milestones[-1] if self._milestones else None
        if not self.save_every or last is None:
            return updates, 0.0
        # Milestones after `step`, and the one at `step` itself until it is done.
        remaining = self.max_updates // self.save_every - step // self.save_every
        at_step = step % self.save_every == 0 and self._milestone_step != step
        milestones = remaining * last
        if at_step and self._work_since is not None and self._work_step == step:
            milestones += max(0.0, last - (time.time() - self._work_since))
        elif at_step:
            milestones += last
        return updates + milestones, milestones

    def eta(self, step: int) -> str:
        """Time left (`eta_seconds`), the milestones' part shown on its own."""
        if not self._rate:
            return "-"
        total, milestones = self._eta_parts(step)
        text = _eta(total)
        return f"{text} (milestones {_eta(milestones)} of it)" if milestones >= 1 else text

    def scalars(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._tensorboard(lambda w: [w.add_scalar(k, v, step) for k, v in scalars.items()])
        self._write_metrics(step, scalars)

    def _open_metrics(self) -> None:
        self._metrics = open(self._metrics_path, "a", encoding="utf-8")

    def _write_metrics(self, step: int, scalars: dict[str, float]) -> None:
        line = json.dumps({"step": step, **{k: _plain(v) for k, v in scalars.items()}}) + "\n"

        def write() -> None:
            if self._metrics is None:
                self._open_metrics()
            assert self._metrics is not None
            self._metrics.write(line)
            self._metrics.flush()

        self._guarded("metrics.jsonl", write)

    def _tensorboard(self, action) -> None:
        if self._writer is not None:
            self._guarded("TensorBoard", lambda: action(self._writer))

    def _guarded(self, sink: str, action) -> None:
        """Run a write for people; on an I/O error say so once (loudly) and go on."""
        try:
            action()
        except Exception as err:
            if sink not in self._failing:
                self._failing.add(sink)
                log.exception("writing %s failed", sink)
                self.say(
                    f"WRITING {sink} FAILED: {type(err).__name__}: {err}. Training goes on without it "
                    f"(checkpoints are not affected); free disk space to get it back",
                    logging.ERROR,
                )
            return
        if sink in self._failing:
            self._failing.discard(sink)
            self.say(f"{sink} is written again")

    def say(self, message: str, level: int = logging.INFO) -> None:
        """A line for the person watching (and the log)."""
        log.log(level, message)
        if not self.enabled:
            return
        style = {logging.WARNING: "yellow", logging.ERROR: "bold red"}.get(level)
        text = f"[{style}]{message}[/]" if style else message
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            console.print(text)

    def samples(self, step: int, samples: list[SampleAudio], out_dir: Path) -> None:
        """Write generated and reference wavs (+ mel PNGs) and log them to TensorBoard as audio and images."""
        if not self.enabled or not samples:
            return

        def write() -> None:
            with fsio.atomic_dir(out_dir) as tmp:
                self._write_samples(step, samples, tmp)

        self._guarded("samples", write)
        self._tensorboard(lambda w: w.flush())

    def _write_samples(self, step: int, samples: list[SampleAudio], tmp: Path) -> None:
        import soundfile as sf

        for sample in samples:
            # An untrained model's waveform can exceed full scale: clip, as the wav file would anyway.
            gen = np.clip(np.asarray(sample.generated, dtype=np.float32).reshape(-1), -1, 1)
            sf.write(tmp / f"{sample.name}_gen.wav", gen, sample.sample_rate, subtype="PCM_16")
            self._tensorboard(
                lambda w, name=sample.name, audio=gen, rate=sample.sample_rate: w.add_audio(
                    f"samples/{name}/generated", audio, step, sample_rate=rate
                )
            )
            if sample.reference is not None:
                ref = np.clip(np.asarray(sample.reference, dtype=np.float32).reshape(-1), -1, 1)
                sf.write(tmp / f"{sample.name}_ref.wav", ref, sample.sample_rate, subtype="PCM_16")
                self._tensorboard(
                    lambda w, name=sample.name, audio=ref, rate=sample.sample_rate: w.add_audio(
                        f"samples/{name}/reference", audio, step, sample_rate=rate
                    )
                )
            mel = sample.extras.get("mel")
            if mel is not None:
                figure = mel_figure(np.asarray(mel), f"{sample.name} step {step}")
                figure.savefig(tmp / f"{sample.name}_mel.png", dpi=80)
                self._tensorboard(
                    lambda w, name=sample.name, picture=figure: w.add_figure(f"samples/{name}/mel", picture, step)
                )
            (tmp / f"{sample.name}.txt").write_text(sample.text + "\n", encoding="utf-8")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._writer is not None:
            self._tensorboard(lambda w: w.close())
            self._writer = None
        if self._metrics is not None:
            self._guarded("metrics.jsonl", self._metrics.close)
            self._metrics = None


def mel_figure(mel: np.ndarray, title: str):
    """A mel spectrogram (mels x frames) as a matplotlib figure."""
    from voicetune.plotting import pyplot

    plt = pyplot()

    if mel.ndim == 3:
        mel = mel[0]
    if mel.shape[0] > mel.shape[1]:  # frames x mels -> mels x frames
        mel = mel.T
    figure, axis = plt.subplots(figsize=(8, 3))
    axis.imshow(mel, origin="lower", aspect="auto", interpolation="none")
    axis.set_title(title)
    axis.set_xlabel("frame")
    axis.set_ylabel("mel bin")
    figure.tight_layout()
    return figure


def milestone_line(step: int, what: str) -> str:
    """What milestone work says, on the console, in train.log and in the studio alike."""
    return f"step {step}: {what}"


def read_milestone_work(run: Path) -> dict[str, Any] | None:
    """What a run's milestone in progress is doing ({step, work, line, since, eta_s}), or None."""
    try:
        record = json.loads((Path(run) / MILESTONE_WORK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("work") else None


def read_metrics(path: Path) -> dict[int, dict[str, Any]]:
    """metrics.jsonl -> {step: last record of that step} (a resume rewrites lost steps)."""
    records: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run may be cut
                    continue
                records.setdefault(record["step"], {}).update(record)
    return records


def _plain(value: Any) -> Any:
    # JSON has no NaN or inf: a non-finite value is written as null (the loss line says it).
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f} days"


class Throughput:
    """Updates and frames per second between log lines, for the log and TensorBoard; time spent
    on milestone work (validation, samples) is left out of the rates."""

    def __init__(self, step: int, config: TrainConfig):
        self.config = config
        self.session_step, self.session_time = step, time.monotonic()
        self.last_step, self.last_time = step, self.session_time
        self.frames = 0.0
        self.paused = self.paused_since_log = self.last_pause = 0.0

    def pause(self, seconds: float) -> None:
        self.last_pause = seconds
        self.paused += seconds
        self.paused_since_log += seconds

    def add(self, step: int, scalars: dict[str, float]) -> dict[str, float]:
        self.frames += scalars.pop("frames")
        if step % self.config.log_every == 0 or step == self.config.max_updates:
            now = time.monotonic()
            elapsed = max(now - self.last_time - self.paused_since_log, 1e-9)
            scalars["perf/updates_per_s"] = (step - self.last_step) / elapsed
            scalars["perf/frames_per_s"] = self.frames / elapsed
            import torch  # here: read_metrics' users (the studio, `voicetune status`) load no torch

            if torch.cuda.is_available():
                scalars["perf/gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
            self.last_step, self.last_time, self.frames, self.paused_since_log = step, now, 0.0, 0.0
        return scalars

    def session_seconds(self) -> float:
        return time.monotonic() - self.session_time

    def session_rate(self, step: int) -> float:
        return (step - self.session_step) / max(self.session_seconds() - self.paused, 1e-9)
