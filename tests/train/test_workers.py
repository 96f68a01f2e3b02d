"""DataLoader workers: cores minus one (at most 8) by default; a request above the cores is lowered."""

from __future__ import annotations

import logging
import os

from voicetune.train.batches import data_workers


def test_default_is_cores_minus_one_at_most_8_and_too_many_is_lowered_with_a_warning(caplog):
    cores = len(os.sched_getaffinity(0))
    assert data_workers(None) == max(0, min(8, cores - 1))
    assert data_workers(1) == 1
    caplog.set_level(logging.WARNING, logger="voicetune")
    assert data_workers(cores + 5) == max(0, min(8, cores - 1))
    assert any(f"--workers {cores + 5} is more than the {cores} cores" in r.getMessage() for r in caplog.records)
