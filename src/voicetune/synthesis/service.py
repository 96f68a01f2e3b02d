"""Speech as a service: named models and voices, a bounded queue, one worker, time limits.

The library under `voicetune serve` (which only parses HTTP and answers): a test or another
program can drive it without a socket.

    SpeechService.submit   checks a request (model, voice, text, format, speed) and queues it;
                           a full queue is refused at once (QueueFull, with a retry delay)
    the worker             one synthesis at a time on the device: loads the model (kept in an
                           EnginePool), plans the text, streams encoded audio to the job's sink
    Job.cancel             stops the work within one layer call (a client that left); a job past
                           its time limit is cancelled by its own timer (`timed_out` is set)

Every failure of a job is reported to its sink, never raised in the worker: no request stops
the service.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from voicetune.errors import UsageError, VoicetuneError
from voicetune.faults import pause_point
from voicetune.synthesis.engine import (
    DEFAULT_VOICE,
    MAX_SPEED,
    MIN_SPEED,
    Cancelled,
    Engine,
    EnginePool,
    Plan,
    Voice,
    run_voices,
)
from voicetune.synthesis.formats import Encoder, available_formats

log = logging.getLogger("voicetune.serve")

MAX_INPUT_CHARS = 4096  # OpenAI's limit for `input`
# The names OpenAI's clients and the tools built on them send: served by the first model.
OPENAI_MODEL_NAMES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


class RequestError(VoicetuneError):
    """A request that cannot be served as written: `param` names the field, `status` the HTTP code."""

    exit_code = 2

    def __init__(self, message: str, param: str | None, status: int = 400, code: str = "invalid_value"):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


class QueueFull(VoicetuneError):
    def __init__(self, retry_after: int, waiting: int):
        super().__init__(f"the server is busy: {waiting} requests are waiting; retry in {retry_after} s")
        self.retry_after = retry_after


class Sink(Protocol):
    """Where a job's results go (called on the worker thread, in this order)."""

    def started(self, plan: Plan) -> None: ...
    def audio(self, data: bytes) -> None: ...
    def finished(self, error: BaseException | None) -> None: ...


@dataclass
class VoiceSpec:
    """A voice named on the command line: a reference clip and its transcript."""

    name: str
    path: Path
    text: str | None = None


@dataclass
class Job:
    model: str
    text: str
    voice: str
    fmt: str
    speed: float
    seed: int
    sink: Sink
    time_limit: float
    submitted: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    _timer: threading.Timer | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def _expire(self) -> None:
        self.timed_out = True
        self.cancelled.set()


class SpeechService:
    """Models by name, voices by name, and one worker speaking queued requests in order."""

    def __init__(
        self,
        models: dict[str, Path],
        voices: list[VoiceSpec] | None = None,
        max_queue: int = 8,
        time_limit: float = 300.0,
        max_loaded: int = 2,
        nfe: int | None = None,
        weights: str | None = None,
        pool: EnginePool | None = None,
    ):
        if not models:
            raise UsageError("name at least one run, checkpoint or RUN/ready folder to serve")
        self.models = dict(models)
        self.voices = {v.name: v for v in (voices or [])}
        self.max_queue = max(0, int(max_queue))
        self.time_limit = float(time_limit)
        self.nfe = nfe
        self.weights = weights
        self.pool = pool or EnginePool(max_loaded=max_loaded)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._voice_cache: dict[tuple[int, str], Voice] = {}
        self.counts = {"done": 0, "cancelled": 0, "timed_out": 0, "failed": 0, "refused": 0}
        self.running: Job | None = None
        self._seconds: list[float] = []  # recent job durations, for Retry-After
        self._worker = threading.Thread(target=self._work, name="speech-worker", daemon=True)

    # ---- setup ------------------------------------------------------------------------------------

    def start(self, warm: bool = True) -> None:
        """Start the worker; `warm`: load the first model and its voices now, so that a bad voice
        or checkpoint is said at start and the first request is fast."""
        if warm:
            name = next(iter(self.models))
            engine = self.engine(name)
            for voice in self.voice_names(name):
                self.voice(engine, voice)
        self._worker.start()

    def close(self) -> None:
        self._queue.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=60)

    # ---- names ------------------------------------------------------------------------------------

    def model_name(self, name: str) -> str:
        if name in self.models:
            return name
        if name in OPENAI_MODEL_NAMES:
            return next(iter(self.models))
        raise RequestError(
            f"model '{name}' is not served here; models: {', '.join(self.models)}", "model", 404, "model_not_found"
        )

    def voice_names(self, model: str | None = None) -> list[str]:
        """`default`, the --voice voices, then `model`'s run's own voices (RUN/voices/)."""
        own = run_voices(self.models[model]) if model in self.models else {}
        return list(dict.fromkeys([DEFAULT_VOICE, *self.voices, *own]))

    def engine(self, model: str) -> Engine:
        return self.pool.get(self.models[model], self.nfe, self.weights)

    def voice(self, engine: Engine, name: str) -> Voice:
        """The named voice read for `engine`'s model (kept: read once per loaded model)."""
        key = (id(engine), name)
        if key not in self._voice_cache:
            spec = self.voices.get(name)
            if spec is not None:
                voice = engine.voice(spec.path, spec.text, name=name, flag=f"--voice {name}")
            else:  # the run's own (RUN/voices/NAME.wav) or its default
                voice = engine.named_voice(name, flag="voice")
            self._voice_cache[key] = voice
        return self._voice_cache[key]

    # ---- requests ---------------------------------------------------------------------------------

    def check(self, model: str, text: str, voice: str, fmt: str, speed: float) -> str:
        """The served model's name for a request; RequestError naming the field at fault."""
        name = self.model_name(model)
        if not isinstance(text, str) or not text.strip():
            raise RequestError("input is empty: give the text to speak", "input")
        if len(text) > MAX_INPUT_CHARS:
            raise RequestError(
                f"input is {len(text)} characters; at most {MAX_INPUT_CHARS} are spoken per request "
                "(split it, or use `voicetune narrate` for long text)",
                "input",
            )
        if voice not in self.voice_names(name):
            raise RequestError(
                f"voice '{voice}' is not served here; voices: {', '.join(self.voice_names(name))}",
                "voice",
                400,
                "voice_not_found",
            )
        formats = available_formats()
        if fmt not in formats:
            raise RequestError(
                f"response_format '{fmt}' is not supported; use one of {', '.join(formats)}", "response_format"
            )
        if not (isinstance(speed, (int, float)) and MIN_SPEED <= speed <= MAX_SPEED):
            raise RequestError(f"speed {speed}: give a number from {MIN_SPEED} to {MAX_SPEED}", "speed")
        return name

    def submit(
        self,
        model: str,
        text: str,
        voice: str,
        fmt: str,
        speed: float,
        seed: int,
        sink: Sink,
        time_limit: float | None = None,
    ) -> Job:
        """Queue a checked request; QueueFull when `max_queue` requests already wait."""
        name = self.check(model, text, voice, fmt, speed)
        job = Job(name, text, voice, fmt, float(speed), int(seed), sink, time_limit or self.time_limit)
        with self._lock:
            if self._waiting + (self.running is not None) > self.max_queue:  # max_queue wait, one runs
                self.counts["refused"] += 1
                raise QueueFull(self._retry_after(), self._waiting)
            self._waiting += 1
        job._timer = threading.Timer(job.time_limit, job._expire)
        job._timer.daemon = True
        job._timer.start()
        self._queue.put(job)
        return job

    def _retry_after(self) -> int:
        recent = self._seconds[-20:]
        per_job = sum(recent) / len(recent) if recent else 5.0
        return max(1, math.ceil(per_job * (self._waiting + 1)))

    def health(self) -> dict:
        with self._lock:
            loaded = self.pool.loaded()
            names = [n for n, p in self.models.items() if any(k.split("@")[0] == str(p.resolve()) for k in loaded)]
            return {
                "status": "ok",
                "models": list(self.models),
                "loaded": names,
                "waiting": self._waiting,
                "running": self.running is not None,
                "max_queue": self.max_queue,
                **self.counts,
            }

    # ---- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._waiting -= 1
                self.running = job
            started = time.monotonic()
            error: BaseException | None = None
            try:
                self._run(job)
            except BaseException as exc:  # reported to the job's sink, never raised: the worker lives on
                error = exc
                if not isinstance(exc, (Cancelled, VoicetuneError)):
                    log.exception("request failed")
            finally:
                if job._timer is not None:
                    job._timer.cancel()
                with self._lock:
                    self.running = None
                    kind = (
                        "timed_out"
                        if job.timed_out
                        else "cancelled"
                        if job.cancelled.is_set()
                        else "failed"
                        if error
                        else "done"
                    )
                    self.counts[kind] += 1
                    if kind == "done":
                        self._seconds.append(time.monotonic() - started)
            try:
                job.sink.finished(error)
            except Exception:
                log.exception("a sink failed")

    def _run(self, job: Job) -> None:
        if job.cancelled.is_set():
            raise Cancelled("cancelled before it started")
        engine = self.engine(job.model)
        voice = self.voice(engine, job.voice)
        plan = engine.plan(job.text, voice, job.seed, job.speed)
        encoder: Encoder | None = None
        try:
            for piece in engine.stream(plan, voice, job.speed, cancel=job.cancelled):
                if encoder is None:  # started = the first audio is ready: errors before it keep their status
                    job.sink.started(plan)
                    encoder = Encoder(job.fmt, engine.sample_rate, job.sink.audio, streaming=True)
                encoder.write(piece)
                pause_point("speech_audio")  # tests: a request held running while its first audio is out
            if encoder is None:
                job.sink.started(plan)
                encoder = Encoder(job.fmt, engine.sample_rate, job.sink.audio, streaming=True)
            encoder.close()
        except BaseException:
            if encoder is not None:
                encoder.abort()
            raise


def parse_voice(text: str) -> VoiceSpec:
    """`NAME=WAV[:TRANSCRIPT]` (the transcript may hold colons; the path may not)."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise UsageError(
            f"--voice {text}: use NAME=WAV or NAME=WAV:TRANSCRIPT, e.g. --voice anna=anna.wav:'Hello there.'"
        )
    path, _, transcript = rest.partition(":")
    if not Path(path).is_file():
        raise UsageError(f"--voice {text}: {path} is not a file; give a wav of the voice (a few seconds)")
    return VoiceSpec(name.strip(), Path(path), transcript.strip() or None)


def job_sink(
    started: Callable[[Plan], None], audio: Callable[[bytes], None], finished: Callable[[BaseException | None], None]
) -> Sink:
    """A Sink of three callables."""

    @dataclass
    class _Sink:
        started: Callable[[Plan], None]
        audio: Callable[[bytes], None]
        finished: Callable[[BaseException | None], None]

    return _Sink(started, audio, finished)
