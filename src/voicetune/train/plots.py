"""Pictures of a run's curves: training and validation loss (and scores, when eval wrote them)."""

from __future__ import annotations

import io
from pathlib import Path

from voicetune.data import files
from voicetune.train.reporting import read_metrics

# metrics.jsonl keys drawn, with their labels; eval scores join when the scoring stage logs them.
CURVES = {"train/loss": "train loss", "val/loss": "validation loss"}


def write_loss_plot(run: Path, png: Path) -> bool:
    """Draw RUN/metrics.jsonl's loss curves into `png` (atomically); False when nothing is logged yet."""
    from voicetune.plotting import pyplot

    plt = pyplot()

    records = read_metrics(Path(run) / "metrics.jsonl")
    series = {}
    for key, label in CURVES.items():
        points = [(step, r[key]) for step, r in sorted(records.items()) if isinstance(r.get(key), (int, float))]
        if points:
            series[label] = points
    if not series:
        return False
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=100)
    for label, points in series.items():
        steps, values = zip(*points)
        axes.plot(steps, values, label=label, marker="o" if len(points) < 20 else None, linewidth=1.2)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # updates are whole: no tick at 2.5
    axes.set_xlabel("update")
    axes.set_ylabel("loss")
    axes.set_title("loss", fontsize=10, loc="left")  # a margin above the top tick label, and what it shows
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    files.atomic_write_bytes(Path(png), buffer.getvalue())
    return True
