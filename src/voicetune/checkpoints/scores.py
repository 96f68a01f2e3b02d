"""RUN/eval.jsonl: the scores of a run's milestones, one JSON row per step (written by training's
milestone evaluation, `train.evaluator`).

A milestone's manifest holds its scores when they were measured before its commit. A milestone
that a stop reached during its scoring is committed without them, and a manifest is never
rewritten: the resumed run scores it first and its row here is where the score lives
(`CheckpointStore.scan` gives it to such a checkpoint's metrics, so that the best is chosen with
it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVAL_JSONL = "eval.jsonl"


def read_eval_rows(path: Path) -> list[dict[str, Any]]:
    """RUN/eval.jsonl: one row per scored milestone, the last row of a step counting."""
    rows: dict[int, dict[str, Any]] = {}
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a crash
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]
