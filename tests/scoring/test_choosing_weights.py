"""Which weights a checkpoint is heard with, and which checkpoint is best, on real speech: both the
EMA and the raw weights are scored at every milestone and the better is chosen, exported and
synthesized; a later milestone within the spread of the best is a tie and the earlier stays best."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import f5_train_args, scoring_env
from support.harness import voicetune
from voicetune.train.evaluator import read_eval_rows

ONE_SENTENCE = ("--set", "eval_clips=1")
# The slowest EMA there is: it starts averaging at once (ema_update_after=0) but moves only every
# 1000th update, so for the first 1000 updates it holds the weights the run started from (random
# for f5-tiny from scratch). ema_decay has no say this early: the EMA's warm-up schedule keeps its
# decay below 0.91 for the first 40 updates whatever the cap.
SLOW_EMA = ("--set", "ema_update_after=0", "--set", "ema_update_every=1000")


def listed(run: Path) -> dict[int, dict]:
    rows = json.loads(voicetune("ckpt", "list", run, "--json", check_exit=0).stdout)["checkpoints"]
    return {r["step"]: r for r in rows if r["role"] == "milestone"}


@pytest.fixture(scope="module")
def raw_ahead(f5_corpus, tmp_path_factory) -> Path:
    """40 updates at lr 2e-3: the raw weights have learned something; the EMA is still the start."""
    run = tmp_path_factory.mktemp("raw_ahead") / "run"
    voicetune(
        *f5_train_args(f5_corpus, run, 40, 40, *ONE_SENTENCE, *SLOW_EMA, "--lr", "2e-3"),
        env=scoring_env(),
        check_exit=0,
        timeout=900,
    )
    return run


def test_raw_weights_that_score_better_are_chosen(raw_ahead):
    [row] = read_eval_rows(raw_ahead / "eval.jsonl")
    raw, ema = row["scores"]["raw"], row["scores"]["ema"]
    assert raw["score"] - ema["score"] > max(raw["score_spread"], ema["score_spread"]), row  # better beyond the spread
    assert row["weights"] == "raw" and row["score"] == raw["score"] and row["score_spread"] == raw["score_spread"]
    milestone = listed(raw_ahead)[40]
    assert milestone["weights"] == "raw" and milestone["best"]
    assert milestone["metrics"]["scores"] == row["scores"]  # the manifest keeps both scores
    table = voicetune("ckpt", "list", raw_ahead, check_exit=0).stdout
    assert f"raw (ema {ema['score']:.3f})" in table  # the weights chosen, and the other set's score


def test_the_chosen_raw_weights_are_exported_and_spoken(raw_ahead, tmp_path):
    checkpoint = raw_ahead / "checkpoints" / "step_00000040"
    raw, ema = load_file(checkpoint / "model.safetensors"), load_file(checkpoint / "ema.safetensors")
    differing = next(k for k in ema if not ema[k].equal(raw[k]))
    assert "weights raw" in (raw_ahead / "ready" / "SOURCE.txt").read_text()

    def exported(*weights: str) -> dict:
        out = tmp_path / ("export-" + "-".join(weights or ("default",)))
        voicetune("ckpt", "export", raw_ahead, "--format", "safetensors", "--out", out, *weights, check_exit=0)
        return load_file(out / "model.safetensors")

    assert exported()[differing].equal(raw[differing])  # what the score chose
    assert exported("--weights", "ema")[differing].equal(ema[differing])  # what the user names
    refused = voicetune(
        "ckpt",
        "export",
        raw_ahead,
        "--format",
        "safetensors",
        "--out",
        tmp_path / "x",
        "--weights",
        "best",
        check_exit=2,
    )
    assert "--weights best: choose ema or raw" in refused.stderr and not (tmp_path / "x").exists()

    eval_set = json.loads((raw_ahead / "run.json").read_text())["eval_set"]["set"]
    said = {}
    for weights in ((), ("--weights", "raw"), ("--weights", "ema")):
        out = tmp_path / f"said{len(said)}.wav"
        voicetune(
            "synthesize",
            "--checkpoint",
            raw_ahead,
            "--text",
            "One two three.",
            "--ref",
            eval_set["ref_audio"],
            "--ref-text",
            eval_set["ref_text"],
            "--out",
            out,
            *weights,
            check_exit=0,
        )
        said[weights] = out.read_bytes()
    assert said[()] == said[("--weights", "raw")] != said[("--weights", "ema")]


def test_a_tie_within_the_spread_keeps_the_earlier_best(f5_corpus, tmp_path):
    run = tmp_path / "run"
    # A learning rate of 1e-6 moves the weights a little each update: the scores of the three
    # milestones differ by far less than what another seed changes (the spread). The EMA copies
    # the weights at every update (ema_update_every=1, within ema_update_after), so the milestone's
    # score is the weights' that move.
    voicetune(
        *f5_train_args(
            f5_corpus, run, 3, 1, *ONE_SENTENCE, "--lr", "1e-6", "--set", "keep_last=5", "--set", "ema_update_every=1"
        ),
        env=scoring_env(),
        check_exit=0,
        timeout=900,
    )
    rows = read_eval_rows(run / "eval.jsonl")
    first, later = rows[0], rows[1:]
    higher = [r for r in later if r["score"] > first["score"]]
    assert higher, f"no later milestone scored above the first, so no tie is tested: {rows}"
    for row in later:
        assert abs(row["score"] - first["score"]) <= max(row["score_spread"], first["score_spread"]), rows
    milestones = listed(run)
    assert [s for s, c in milestones.items() if c["best"]] == [1]  # higher, but not beyond the spread
    assert all(milestones[r["step"]]["tie"] and milestones[r["step"]]["tied_with"] == 1 for r in later)
    table = voicetune("ckpt", "list", run, check_exit=0).stdout
    assert "tie with 1" in table and "the earlier checkpoint stays best" in table
    assert "step 1\n" in (run / "ready" / "SOURCE.txt").read_text()
