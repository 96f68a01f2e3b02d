"""The speech server's HTTP face: OpenAI's /v1/audio/speech and friends over a SpeechService.

It parses requests, calls the service and answers; the work (models, voices, queue, time limits,
synthesis, encoding) is in `voicetune.synthesis.service`. Every error is answered in OpenAI's
shape, {"error": {"message", "type", "param", "code"}}, with the status a client expects.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Send

from voicetune.errors import VoicetuneError
from voicetune.synthesis.engine import Cancelled, describe_characters
from voicetune.synthesis.formats import MEDIA_TYPES
from voicetune.synthesis.service import QueueFull, RequestError, SpeechService, job_sink

log = logging.getLogger("voicetune.serve")

MAX_BODY_BYTES = 64 * 1024  # 4096 characters of 4 bytes each, the other fields and JSON's quoting
STREAM_FORMATS = ("audio", "sse")
DEFAULT_FORMAT = "mp3"  # OpenAI's default


def error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status, headers=headers
    )


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _TooLarge()
    return bytes(body)


def _field(data: dict, name: str, kind: type | tuple, default: Any = ..., what: str = "a string") -> Any:
    if name not in data or data[name] is None:
        if default is ...:
            raise RequestError(f"'{name}' is required", name, code="missing_required_parameter")
        return default
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RequestError(f"'{name}' must be {what}, not {json.dumps(value)[:40]}", name, code="invalid_type")
    return value


def parse_speech_request(body: bytes) -> dict[str, Any]:
    """OpenAI's fields of /v1/audio/speech, checked for type; unknown fields are ignored."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(
            'the body is not JSON; send {"model": ..., "input": ..., "voice": ...} with Content-Type: application/json',
            None,
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object with model, input and voice", None, code="invalid_json")
    voice = data.get("voice")
    if isinstance(voice, dict):  # OpenAI also takes {"id": "..."} for custom voices
        voice = voice.get("id")
        data = {**data, "voice": voice}
    stream_format = _field(data, "stream_format", str, "audio")
    if stream_format not in STREAM_FORMATS:
        raise RequestError(f"stream_format '{stream_format}': use audio or sse", "stream_format")
    return {
        "model": _field(data, "model", str),
        "text": _field(data, "input", str),
        "voice": _field(data, "voice", str),
        "fmt": _field(data, "response_format", str, DEFAULT_FORMAT),
        "speed": float(_field(data, "speed", (int, float), 1.0, "a number")),
        "seed": int(_field(data, "seed", int, 0, "an integer")),
        "stream_format": stream_format,
    }


def build_app(service: SpeechService, api_key: str | None = None, max_body: int = MAX_BODY_BYTES) -> ASGIApp:
    """The ASGI app of `voicetune serve` over a started `service`."""

    async def speech(request: Request) -> Response:
        media_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media_type != "application/json":
            return error(
                415,
                f"the body is {media_type}; send JSON with Content-Type: application/json",
                None,
                "unsupported_media_type",
            )
        try:
            fields = parse_speech_request(await _read_body(request, max_body))
        except _TooLarge:
            return error(
                413,
                f"the body is larger than {max_body} bytes; input holds at most 4096 characters",
                None,
                "request_too_large",
            )
        except ClientDisconnect:
            return Response(status_code=400)
        except RequestError as err:
            return error(err.status, str(err), err.param, err.code)
        stream_format = fields.pop("stream_format")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        sink = job_sink(lambda plan: put("started", plan), lambda data: put("audio", data), lambda err: put("end", err))
        try:
            job = service.submit(sink=sink, **fields)
        except RequestError as err:
            return error(err.status, str(err), err.param, err.code)
        except QueueFull as full:
            return error(
                429, str(full), None, "queue_full", "rate_limit_error", headers={"Retry-After": str(full.retry_after)}
            )

        # Until the first audio is ready, an error can still be a status code; a client that
        # leaves meanwhile cancels the job (afterwards the streaming response watches for it).
        disconnected = asyncio.ensure_future(_wait_disconnect(request))
        first = asyncio.ensure_future(events.get())
        try:
            await asyncio.wait({first, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not first.done():
                first.cancel()
            disconnected.cancel()
        if not first.done() or first.cancelled():
            job.cancel()
            return Response(status_code=499)
        kind, value = first.result()
        if kind == "end":
            return _error_of(value, job)
        plan = value
        headers = {
            "X-Voicetune-Model": job.model,
            "X-Voicetune-Chunks": str(len(plan.chunks)),
            "Cache-Control": "no-store",
        }
        if plan.unsayable:
            headers["X-Voicetune-Unsayable"] = describe_characters(plan.unsayable, shown=False)
        if plan.unread:  # numbers the normalizer left in digits: read digit by digit, or skipped
            headers["X-Voicetune-Unread"] = ", ".join(plan.unread)

        async def body():
            done = False
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "audio":
                        if stream_format == "sse":
                            event = {"type": "speech.audio.delta", "audio": base64.b64encode(value).decode()}
                            yield f"data: {json.dumps(event)}\n\n".encode()
                        else:
                            yield value
                        continue
                    done = True
                    if value is not None:  # cut short after the first audio (time limit, failure, stop)
                        log.warning(
                            "request of %s ended after its first audio: %s; its connection is closed without "
                            "the final chunk, so that the client sees an error, not a short file",
                            job.model,
                            value,
                        )
                        raise _CutShort
                    if stream_format == "sse":  # no usage: the model counts no tokens OpenAI would bill
                        yield f"data: {json.dumps({'type': 'speech.audio.done'})}\n\n".encode()
                    return
            finally:
                if not done:  # the client left (or the server stops): the work stops too
                    job.cancel()

        media = "text/event-stream" if stream_format == "sse" else MEDIA_TYPES[fields["fmt"]]
        return _SpeechResponse(body(), media_type=media, headers=headers)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "voicetune"} for name in service.models
                ],
            }
        )

    async def voices(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": service.voice_list()})

    async def health(request: Request) -> Response:
        state = service.health()  # failed: a model is out of service, and a load balancer should know
        return JSONResponse(state, status_code=503 if state["status"] == "failed" else 200)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", None, code)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc)
        return error(
            500, f"internal error: {type(exc).__name__}; the server log has the details", None, "internal_error"
        )

    app = Starlette(
        routes=[
            Route("/v1/audio/speech", speech, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/audio/voices", voices, methods=["GET"]),
            Route("/v1/voices", voices, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},  # type: ignore[dict-item]  # starlette types handlers by the base Exception
    )
    return BearerAuth(app, api_key) if api_key else app


class _CutShort(Exception):
    """The speech ended in an error after its status (200) and first audio were sent."""


class _SpeechResponse(StreamingResponse):
    """A stream of speech that, when the speech ends in an error after its first audio, ends
    without its final (empty) chunk: the server closes the connection ("ASGI callable returned
    without completing response" in its log) and every HTTP client reports an incomplete body.
    Ended cleanly, a WAV or MP3 cut after its first sentence would look whole to the client (its
    status is 200 and a streamed WAV states no length), and a time limit or a failure would go
    unnoticed."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except _CutShort:
            return


def _error_of(err: BaseException | None, job) -> Response:
    if isinstance(err, Cancelled) and job.timed_out:
        return error(
            504,
            f"the request ran past its time limit of {job.time_limit:g} s and was cancelled; "
            "send shorter input, or start the server with a larger --timeout",
            None,
            "timeout",
        )
    if isinstance(err, Cancelled):  # neither the client (gone) nor a time limit: the server stops
        return error(503, "the request was cancelled: the server is stopping; send it again", None, "server_stopping")
    if isinstance(err, RequestError):
        return error(err.status, str(err), err.param, err.code)
    if isinstance(err, VoicetuneError) and err.exit_code == 2:
        return error(400, str(err), None, "invalid_value")
    return error(500, f"synthesis failed: {type(err).__name__}: {err}", None, "synthesis_failed")


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next message is that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class BearerAuth:
    """Every path but /health asks for `Authorization: Bearer KEY`, compared in constant time."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.key):
                response = error(
                    401,
                    "missing or wrong API key: send Authorization: Bearer KEY (the server's --api-key)",
                    None,
                    "invalid_api_key",
                    "authentication_error",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
