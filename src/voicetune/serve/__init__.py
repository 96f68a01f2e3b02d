"""`voicetune serve`: the speech server (OpenAI's /v1/audio/speech and friends), a face over
`voicetune.synthesis.service`."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from voicetune.errors import UsageError
from voicetune.net import is_loopback

log = logging.getLogger("voicetune.serve")


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if api_key is not None and len(api_key.strip()) < 8:
        raise UsageError("--api-key: use a key of 8 characters or more (e.g. `openssl rand -hex 24`)")
    if not is_loopback(host) and not api_key:
        raise UsageError(
            f"--host {host}: the server would be reachable from other machines without a key; add "
            "--api-key KEY (clients send Authorization: Bearer KEY), or keep 127.0.0.1 and reach it "
            "through `ssh -L 8000:127.0.0.1:8000 HOST`"
        )


def run_server(
    targets: list[Path],
    host: str,
    port: int,
    api_key: str | None,
    voices: list[str],
    max_queue: int,
    time_limit: float,
    max_models: int,
    nfe: int | None,
    weights: str | None = None,
) -> None:
    """Load the first model, then serve until interrupted."""
    import uvicorn

    from voicetune.console import attach_console_log
    from voicetune.serve.app import build_app
    from voicetune.synthesis.engine import checkpoint_target, model_name
    from voicetune.synthesis.service import SpeechService, parse_voice

    check_bind(host, api_key)
    attach_console_log()  # the server's stderr is its log: failed and cut requests, reloads
    if time_limit <= 0:
        raise UsageError(f"--timeout {time_limit}: give the most seconds a request may take (e.g. 300)")
    models: dict[str, Path] = {}
    for target in targets:
        path = checkpoint_target(Path(target))
        name = model_name(path)
        if name in models:
            raise UsageError(f"{target}: a second model named {name} (models are named after their run folder)")
        models[name] = path
    service = SpeechService(
        models,
        [parse_voice(v) for v in voices],
        max_queue=max_queue,
        time_limit=time_limit,
        max_loaded=max_models,
        nfe=nfe,
        weights=weights,
    )
    service.start(warm=True)
    # The socket listens before the address is printed: a program that waits for that line (a
    # script, a test, a supervisor) never meets a refused connection; early ones wait in the backlog.
    listening = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"voicetune serve: http://{shown}:{port}/v1  models: {', '.join(models)}  "
        f"voices: {', '.join(service.voice_names())}",
        flush=True,
    )
    try:
        config = uvicorn.Config(
            build_app(service, api_key), log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        _server_class()(config, service).run(sockets=[listening])
    finally:
        listening.close()
        service.close()


def _server_class():
    import asyncio

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, whose stop (SIGTERM, Ctrl-C) first cancels the requests in flight, so
        that their streams end within one layer call rather than after uvicorn's graceful wait, and
        which stops the speech worker before the process exits (uvicorn then re-raises the signal:
        a supervisor sees the server ended by it)."""

        def __init__(self, config, service):
            super().__init__(config)
            self.service = service

        def handle_exit(self, sig, frame) -> None:
            self.service.cancel_all()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            await asyncio.to_thread(self.service.close)

    return Server


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening (a port in use is a usage error naming --port)."""
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as err:
        listening.close()
        raise UsageError(
            f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); choose another port"
        ) from None
    listening.listen(128)
    return listening
