"""`voicetune studio`: the whole flow in a browser page, over the same library functions."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import app


@app.command()
def studio(
    workspace: Path = typer.Option(
        Path("voicetune-workspace"), "--workspace", help="folder for recordings, datasets, runs and exports"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; anything but loopback needs --auth"),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port to listen on"),
    auth: str | None = typer.Option(None, "--auth", help="USER:PASSWORD asked by the page"),
    max_upload: str = typer.Option("2G", "--max-upload", help="largest file an upload may be"),
) -> None:
    """Serve the studio: prepare data, train, pick checkpoints and synthesize from a browser."""
    from voicetune.studio.server import serve

    serve(workspace, host, port, auth, max_upload)
