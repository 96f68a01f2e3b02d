"""`voicetune eval` on a short f5-tiny run: every kept checkpoint scored, the same checkpoint scored
alike by two processes, an upstream weight file scored as step 0, the table and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import f5_train_args
from support.harness import cli_env, run_cli, voicetune, whisper_model_path

KEYS = {"checkpoint", "step", "wer", "cer", "similarity", "dnsmos", "score", "score_spread", "score_pairs", "pair_set"}
KEYS |= {"clips", "nfe", "best", "compared"}  # best and what comparing each row with the best found
TRAINED = {*KEYS, "weights", "scores"}  # a trained checkpoint: both weight sets scored, the chosen one at the top


@pytest.fixture(scope="module")
def f5_run(f5_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, run): f5-tiny, 4 updates, milestones at 2 and 4 (not scored while training)."""
    run = tmp_path_factory.mktemp("eval_run") / "run"
    voicetune(*f5_train_args(f5_corpus, run, 4, 2), check_exit=0, timeout=900)
    return f5_corpus, run


def test_eval_scores_every_checkpoint_alike_twice_and_upstream_files_as_step_0(f5_run, tmp_path):
    corpus, run = f5_run
    whisper = whisper_model_path()
    first = voicetune("eval", run, "--whisper-model", whisper, "--json", "--plot", tmp_path / "run.png", check_exit=0)
    rows = json.loads(first.stdout)
    assert [r["step"] for r in rows] == [2, 4] and all(set(r) == TRAINED for r in rows)
    assert [r["nfe"] for r in rows] == [16, 16]  # f5-tiny's own default (the real sizes: upstream's 32)
    assert [k for r in rows for k in TRAINED - {"compared"} if r[k] is None] == [], rows
    # compared by their paired takes: 2 held-out sentences x 2 seeds
    assert [r["best"] for r in rows].count(True) == 1
    compared = [r["compared"] for r in rows if r["compared"]]
    assert compared and all(c["pairs"] == 4 and c["text"].endswith("(paired, 4 pairs)") for c in compared)
    assert all(set(r["scores"]) == {"ema", "raw"} and r["score"] == r["scores"][r["weights"]]["score"] for r in rows)
    # Each clip's take check: a model 4 updates old says no word of its text, and the check says so.
    assert all(len(r["clips"]) == 2 and all("wer" in c["flags"] for c in r["clips"]) for r in rows)
    step4 = run / "checkpoints" / "step_00000004"
    second = voicetune(
        "eval",
        step4,
        run / "ready" / "model.safetensors",
        "--model",
        "f5-tiny",
        "--data",
        corpus,
        "--whisper-model",
        whisper,
        "--json",
        "--plot",
        tmp_path / "two.png",
        check_exit=0,
    )
    upstream, again = json.loads(second.stdout)
    assert upstream["step"] == 0 and upstream["checkpoint"].endswith("model.safetensors") and set(upstream) == KEYS
    ranked = ("best", "compared")  # against another set of rows
    assert {k: v for k, v in again.items() if k not in ranked} == {k: v for k, v in rows[1].items() if k not in ranked}
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_table_and_bad_targets(f5_run, tmp_path):
    corpus, run = f5_run
    # No --plot: the picture goes beside what was scored, not into the directory eval runs in.
    table = run_cli(
        "eval",
        run / "checkpoints" / "step_00000002",
        "--nfe",
        "4",
        "--whisper-model",
        whisper_model_path(),
        env=cli_env(COLUMNS="200"),
        cwd=tmp_path,
    )
    assert table.returncode == 0, table.stdout + table.stderr
    assert "real voice" in table.stdout and "step_00000002" in table.stdout and ", 4 sampling steps;" in table.stdout
    assert (run / "eval-cli.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "eval-cli.png" in table.stdout
    assert not (tmp_path / "eval.png").exists()
    missing = voicetune("eval", tmp_path / "nothing-here", check_exit=2)
    assert "not a run folder, a checkpoint directory or a weight file" in missing.stderr
    weights = voicetune("eval", run / "ready" / "model.safetensors", "--data", corpus, check_exit=2)
    assert "--model" in weights.stderr
