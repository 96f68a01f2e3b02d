"""Rich tables shared by the ckpt commands and the demo."""

from __future__ import annotations

from voicetune.config import format_size
from voicetune.console import console


def print_checkpoint_table(rows, title: str, quarantined: list[str] | None = None) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("checkpoint", "step", "role", "state", "size", "val_loss", "best", "status"):
        table.add_column(column, justify="right" if column in ("step", "size", "val_loss") else "left",
                         no_wrap=column != "status")
    for r in rows:
        val = r.metrics.get("val_loss")
        status = {"ok": "[green]ok[/]", "unverified": "committed", "abandoned": "[dim]abandoned[/]"}.get(r.status, f"[red]{r.problem}[/]")
        table.add_row(r.name, str(r.step if r.step is not None else "?"), r.role, r.kind, format_size(r.size_bytes),
                      f"{val:.4f}" if val is not None else "", "[bold yellow]*[/]" if r.best else "", status)
    console.print(table)
    if quarantined:
        console.print(f"quarantined ({len(quarantined)}): {', '.join(quarantined)}")
