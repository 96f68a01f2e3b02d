"""Identical inputs give identical scores, whatever the process scored before (issue 21, item 1).

A training process on one torch thread (`make test`'s workers set OMP_NUM_THREADS=1) that scored
its first milestone went on on two threads: loading whisper (CTranslate2) changed the OpenMP thread
count torch shares. The same checkpoint then sounded a little different in a resumed process, and
whisper heard it differently (CER 0.8958 vs 0.9792 at step 4 of the same run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.harness import REPO_ROOT, TESTS_DIR


def probe(folder, *flags: str) -> dict:
    folder.mkdir()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    out = folder / "probe.json"
    result = subprocess.run(
        [sys.executable, "-m", "support.eval_probe", str(out), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


def test_a_process_that_scored_before_scores_the_same_clip_identically(tmp_path):
    fresh = probe(tmp_path / "fresh")
    after_scoring = probe(tmp_path / "after_scoring", "--score-first")
    assert after_scoring["audio_sha256"] == fresh["audio_sha256"]
    assert after_scoring == fresh
    # the process trains on as many threads as it was started with, scored or not
    assert fresh["torch_threads_after"] == 1
