"""Rich tables shared by the ckpt commands and the demo."""

from __future__ import annotations

from voicetune.checkpoints.maintenance import comparison_lines
from voicetune.config import format_size
from voicetune.console import console


def print_checkpoint_table(rows, title: str, quarantined: list[str] | None = None) -> None:
    from rich import box
    from rich.table import Table

    # Rules under the header only: 15 columns' borders would cost a terminal 30 characters.
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    scored = any("score" in r.metrics for r in rows)
    measures = [("val_loss", "val_loss", 4)] + (
        [
            ("wer", "WER", 3),
            ("cer", "CER", 3),
            ("similarity", "similarity", 3),
            ("dnsmos", "DNSMOS", 2),
            ("score", "score", 3),
            ("score_spread", "spread", 3),
        ]
        if scored
        else []
    )
    for column in (
        "checkpoint",
        "step",
        "role",
        "state",
        "size",
        *(m[1] for m in measures),
        *(("weights",) if scored else ()),
        "best",
        "status",
    ):
        table.add_column(
            column,
            justify="left" if column in ("checkpoint", "role", "state", "best", "status", "weights") else "right",
            no_wrap=column != "status",
        )
    for r in rows:
        status = {"ok": "[green]ok[/]", "unverified": "committed", "abandoned": "[dim]abandoned[/]"}.get(
            r.status, f"[red]{r.problem}[/]"
        )
        values = [f"{r.metrics[key]:.{digits}f}" if _number(r.metrics.get(key)) else "" for key, _, digits in measures]
        best = "[bold yellow]* best[/]" if r.best else (f"tie with {r.tied_with}" if r.tie else "")
        table.add_row(
            r.name,
            str(r.step if r.step is not None else "?"),
            r.role,
            r.kind,
            format_size(r.size_bytes),
            *values,
            *((weights_cell(r.metrics),) if scored else ()),
            best,
            status,
        )
    console.print(table)
    compared = comparison_lines(rows)
    if compared:
        console.print(
            "compared with the best (score difference ± its standard error, on the same sentences and seeds):"
        )
        for line in compared:
            console.print(f"  {line}")
    if any(r.tie for r in rows):
        console.print(
            "tie: the evidence cannot tell it from the best (see docs/choosing-the-voice.md); "
            "the earlier checkpoint stays best"
        )
    if quarantined:
        console.print(f"quarantined ({len(quarantined)}): {', '.join(quarantined)}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def weights_cell(metrics: dict) -> str:
    """The weights a score chose, and the score of the other set: "raw (ema 0.412)"."""
    chosen = metrics.get("weights")
    if not chosen:
        return ""
    others = [
        f"{name} {scores['score']:.3f}"
        for name, scores in (metrics.get("scores") or {}).items()
        if name != chosen and isinstance(scores, dict) and _number(scores.get("score"))
    ]
    return f"{chosen} ({', '.join(others)})" if others else chosen
