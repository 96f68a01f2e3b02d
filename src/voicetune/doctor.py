"""Environment checks behind `voicetune doctor`."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import dataclass

PACKAGES = (
    "torch",
    "torchaudio",
    "torchcodec",
    "accelerate",
    "safetensors",
    "peft",
    "faster-whisper",
    "silero-vad",
    "transformers",
)
TOOLS = {
    "ffmpeg": "decoding mp3/m4a/video (apt install ffmpeg)",
    "espeak-ng": "the demo corpus and test speech (apt install espeak-ng)",
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def run_checks() -> list[Check]:
    checks = []
    from voicetune.models.registry import UPSTREAM_PACKAGES

    for pkg in (*PACKAGES, *UPSTREAM_PACKAGES.values()):
        try:
            checks.append(Check(pkg, True, importlib.metadata.version(pkg)))
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(pkg, False, "not installed: run `make install`"))
    for tool, why in TOOLS.items():
        path = shutil.which(tool)
        checks.append(Check(tool, path is not None, path or f"missing, needed for {why}"))
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            checks.append(Check("gpu", True, ", ".join(names)))
        else:
            checks.append(Check("gpu", True, f"none: training runs on {os.cpu_count()} CPU cores (slow but works)"))
    except Exception as err:  # noqa: BLE001 - a broken torch install is exactly what doctor must report
        checks.append(Check("gpu", False, f"torch failed to load: {err}"))
    free = shutil.disk_usage(".").free
    checks.append(Check("disk", free > 5 * 1024**3, f"{free / 1024**3:.1f} GiB free here"))
    return checks


def print_report(checks: list[Check]) -> None:
    from rich.table import Table

    from voicetune.console import console

    table = Table(title="voicetune doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]problem[/]", c.detail)
    console.print(table)
