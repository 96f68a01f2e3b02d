"""Serving the studio: safe defaults first (loopback, no share link, uploads capped, workspace only)."""

from __future__ import annotations

import os
from pathlib import Path

from voicetune.net import is_loopback
from voicetune.studio.workspace import Workspace, check_bind, upload_limit_bytes


def serve(workspace: Path, host: str, port: int, auth: str | None, max_upload: str) -> None:
    """Build the studio over `workspace` and serve it until interrupted."""
    credentials = check_bind(host, auth)
    limit = upload_limit_bytes(max_upload)
    ws = Workspace.open(workspace)
    # Gradio's own telemetry and update check would call out; a studio stays on this machine.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Uploads land in the workspace's cache, not in a shared /tmp.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(ws.root / ".studio-cache"))
    from voicetune.studio.app import THEME, build_app

    app = build_app(ws, limit, reachable_from_others=not is_loopback(host))
    app.queue(default_concurrency_limit=1)
    print(
        f"voicetune studio: http://{host if ':' not in host else f'[{host}]'}:{port}  (workspace {ws.root})", flush=True
    )
    app.launch(
        server_name=host,
        server_port=port,
        auth=credentials,
        share=False,
        max_file_size=limit,
        allowed_paths=[str(ws.root)],
        show_error=True,
        inbrowser=False,
        quiet=True,
        ssr_mode=False,
        theme=THEME,
        footer_links=[],
    )
