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
the service. A model whose last requests all failed with a server error is reloaded once by
itself (`ModelHealth`); `health()` says what the next request would meet.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from voicetune.errors import UsageError, VoicetuneError
from voicetune.faults import fault_seconds, pause_point
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
# OpenAI's voices, which the same tools send: each reaches the model's default voice, unless the
# model has a voice of that name (--voice alloy=..., RUN/voices/alloy.wav).
OPENAI_VOICE_NAMES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
FAILURES_BEFORE_RELOAD = 3  # a model whose last 3 requests all failed with a server error is reloaded


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
class ModelHealth:
    """What the next request to one model would meet, from how its requests ended.

    ok        its last request succeeded, or fewer than `limit` failed in a row
    degraded  its last `limit` requests all failed with a server error (`error`, the last): it is
              reloaded once; a success makes it ok again
    failed    the reload failed, or the reloaded model failed `limit` more in a row: its requests
              are refused (503) until the server restarts

    Requests that were cancelled, timed out or refused as bad input say nothing about the model."""

    limit: int = FAILURES_BEFORE_RELOAD
    status: str = "ok"
    error: str | None = None
    failures: int = 0  # server errors in a row
    reloads: int = 0
    reloaded: bool = False  # reloaded since its last success

    def succeeded(self) -> None:
        if self.status != "failed":
            self.status, self.error, self.failures, self.reloaded = "ok", None, 0, False

    def failed_with(self, error: BaseException) -> bool:
        """Count a server error; True when the model is to be reloaded now."""
        if self.status == "failed":
            return False
        self.failures += 1
        self.error = f"{type(error).__name__}: {error}"
        if self.failures < self.limit:
            return False
        if self.reloaded:
            self.status = "failed"
            self.error = f"still failing after a reload: {self.error}"
            return False
        self.status = "degraded"
        return True

    def reload_done(self, error: BaseException | None) -> None:
        self.reloads += 1
        self.reloaded, self.failures = True, 0
        if error is not None:
            self.status, self.error = "failed", f"the reload failed: {type(error).__name__}: {error}"

    def as_dict(self) -> dict:
        return {"status": self.status, "error": self.error, "reloads": self.reloads}


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
        # Voices read per loaded engine; an engine unloaded (or reloaded) takes its voices with it.
        self._voice_cache: weakref.WeakKeyDictionary[Engine, dict[str, Voice]] = weakref.WeakKeyDictionary()
        self.counts = {"done": 0, "cancelled": 0, "timed_out": 0, "failed": 0, "refused": 0}
        self.model_health = {name: ModelHealth() for name in self.models}
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
        """Cancel the running and waiting requests (each ends within one layer call) and stop the worker."""
        self.cancel_all()
        self._queue.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=60)

    def cancel_all(self) -> None:
        """Cancel every request running or waiting (the server is stopping)."""
        with self._lock:
            jobs = [self.running, *list(self._queue.queue)]
        for job in jobs:
            if job is not None:
                job.cancel()

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

    def voice_for(self, model: str, name: str) -> str | None:
        """The voice a requested name reaches on `model`: its own voice of that name, else the
        default for one of OpenAI's names; None when neither."""
        if name in self.voice_names(model):
            return name
        return DEFAULT_VOICE if name in OPENAI_VOICE_NAMES else None

    def voice_list(self) -> list[dict]:
        """Every voice name a request may give, with the models that serve it and the voice it
        reaches on each (OpenAI's names reach `default` unless a model has its own of that name)."""
        names = dict.fromkeys([*(v for m in self.models for v in self.voice_names(m)), *OPENAI_VOICE_NAMES])
        listed = []
        for name in names:
            reaches = {m: v for m in self.models if (v := self.voice_for(m, name)) is not None}
            listed.append({"id": name, "name": name, "models": list(reaches), "reaches": reaches})
        return listed

    def engine(self, model: str) -> Engine:
        return self.pool.get(self.models[model], self.nfe, self.weights)

    def voice(self, engine: Engine, name: str) -> Voice:
        """The named voice read for `engine`'s model (kept: read once per loaded model)."""
        read = self._voice_cache.setdefault(engine, {})
        if name not in read:
            spec = self.voices.get(name)
            if spec is not None:
                read[name] = engine.voice(spec.path, spec.text, name=name, flag=f"--voice {name}")
            else:  # the run's own (RUN/voices/NAME.wav) or its default
                read[name] = engine.named_voice(name, flag="voice")
        return read[name]

    # ---- requests ---------------------------------------------------------------------------------

    def check(self, model: str, text: str, voice: str, fmt: str, speed: float) -> tuple[str, str]:
        """The served model's name and the voice the request reaches; RequestError naming the field
        at fault."""
        name = self.model_name(model)
        health = self.model_health[name]
        if health.status == "failed":
            raise RequestError(
                f"model '{name}' failed and is out of service ({health.error}); restart the server "
                "(the server log has the details)",
                "model",
                503,
                "model_failed",
            )
        if not isinstance(text, str) or not text.strip():
            raise RequestError("input is empty: give the text to speak", "input")
        if len(text) > MAX_INPUT_CHARS:
            raise RequestError(
                f"input is {len(text)} characters; at most {MAX_INPUT_CHARS} are spoken per request "
                "(split it, or use `voicetune narrate` for long text)",
                "input",
            )
        reached = self.voice_for(name, voice) if isinstance(voice, str) else None
        if reached is None:
            raise RequestError(
                f"voice '{voice}' is not served here; voices: {', '.join(self.voice_names(name))} "
                f"(and OpenAI's {', '.join(OPENAI_VOICE_NAMES)}, which reach default)",
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
        return name, reached

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
        name, voice = self.check(model, text, voice, fmt, speed)
        # tests: one request's time limit made short (it is then held at a stall until the limit)
        limit = fault_seconds("time_limit", time_limit or self.time_limit)
        job = Job(name, text, voice, fmt, float(speed), int(seed), sink, limit)
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
        """What the next request would meet: `status` ok, degraded (a model failing; being or
        having been reloaded) or failed (a model out of service), and each model's own."""
        with self._lock:
            loaded = self.pool.loaded()
            names = [n for n, p in self.models.items() if any(k.split("@")[0] == str(p.resolve()) for k in loaded)]
            states = {name: h.status for name, h in self.model_health.items()}
            status = next((s for s in ("failed", "degraded") if s in states.values()), "ok")
            return {
                "status": status,
                "model_health": {name: h.as_dict() for name, h in self.model_health.items()},
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
                    reload = self._judge(job.model, kind, error)
            try:
                job.sink.finished(error)
            except Exception:
                log.exception("a sink failed")
            if reload:
                self._reload(job.model)

    def _judge(self, model: str, kind: str, error: BaseException | None) -> bool:
        """Record how a request ended in its model's health; True when the model is to be reloaded."""
        health = self.model_health[model]
        if kind == "done":
            health.succeeded()
        elif kind == "failed" and error is not None and not _bad_input(error):
            return health.failed_with(error)
        return False

    def _reload(self, model: str) -> None:
        """The model loaded again from its checkpoint, once, after its requests kept failing."""
        health = self.model_health[model]
        log.warning("model %s: its last %d requests failed (%s); reloading it", model, health.limit, health.error)
        error: BaseException | None = None
        try:
            self.pool.reload(self.models[model], self.nfe, self.weights)
        except Exception as exc:  # the model is out of service; the server goes on with the others
            error = exc
            log.exception("model %s: the reload failed", model)
        with self._lock:
            health.reload_done(error)

    def _run(self, job: Job) -> None:
        if job.cancelled.is_set():
            raise Cancelled("cancelled before it started")
        engine = self.engine(job.model)
        voice = self.voice(engine, job.voice)
        plan = engine.plan(job.text, voice, job.seed, job.speed, quick_start=True)  # a listener waits
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


def _bad_input(error: BaseException) -> bool:
    """An error of the request itself (answered 4xx), not of the model."""
    return isinstance(error, VoicetuneError) and error.exit_code == 2


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
