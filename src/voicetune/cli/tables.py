"""Rich tables shared by the ckpt commands and the demo."""

from __future__ import annotations

from voicetune.config import format_size
from voicetune.console import console


def print_checkpoint_table(rows, title: str, quarantined: list[str] | None = None) -> None:
    from rich.table import Table

    table = Table(title=title)
    scored = any("score" in r.metrics for r in rows)
    measures = [("val_loss", "val_loss", 4)] + ([("wer", "WER", 3), ("cer", "CER", 3), ("similarity", "similarity", 3),
                                                 ("dnsmos", "DNSMOS", 2), ("score", "score", 3)] if scored else [])
    for column in ("checkpoint", "step", "role", "state", "size", *(m[1] for m in measures), "best", "status"):
        table.add_column(column, justify="left" if column in ("checkpoint", "role", "state", "best", "status") else "right",
                         no_wrap=column != "status")
    for r in rows:
        status = {"ok": "[green]ok[/]", "unverified": "committed", "abandoned": "[dim]abandoned[/]"}.get(r.status, f"[red]{r.problem}[/]")
        values = [f"{r.metrics[key]:.{digits}f}" if r.metrics.get(key) is not None else "" for key, _, digits in measures]
        table.add_row(r.name, str(r.step if r.step is not None else "?"), r.role, r.kind, format_size(r.size_bytes),
                      *values, "[bold yellow]*[/]" if r.best else "", status)
    console.print(table)
    if quarantined:
        console.print(f"quarantined ({len(quarantined)}): {', '.join(quarantined)}")
