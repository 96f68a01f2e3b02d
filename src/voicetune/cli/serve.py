"""`voicetune serve`: an OpenAI-compatible speech API over trained voices."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import NFE_HELP, app


@app.command()
def serve(
    targets: list[Path] = typer.Argument(
        ..., metavar="TARGET...", help="runs, checkpoints or RUN/ready folders; each is a model named after its run"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; anything but loopback needs --api-key"),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port to listen on"),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="VOICETUNE_API_KEY", help="key clients send as Authorization: Bearer KEY"
    ),
    voice: list[str] = typer.Option(
        [], "--voice", help="NAME=WAV[:TRANSCRIPT], a voice every model speaks in (repeatable)"
    ),
    queue: int = typer.Option(
        8, "--queue", min=0, help="requests that may wait; more are answered 429 with Retry-After"
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="seconds a request may take, waiting included; then 504"),
    max_models: int = typer.Option(
        2, "--max-models", min=1, help="models kept loaded; the least recently used is unloaded"
    ),
    nfe: int | None = typer.Option(None, "--nfe", help=NFE_HELP),
    weights: str | None = typer.Option(
        None, "--weights", help="ema | raw (default: the weights each checkpoint's score chose)"
    ),
) -> None:
    """Serve trained voices over OpenAI's speech API (POST /v1/audio/speech)."""
    from voicetune.serve import run_server
    from voicetune.synthesis.inference import check_weights

    run_server(targets, host, port, api_key, voice, queue, timeout, max_models, nfe, check_weights(weights))
