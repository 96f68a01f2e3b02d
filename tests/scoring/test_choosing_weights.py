"""Which weights a checkpoint is heard with, and which checkpoint is best, on real speech: both the
EMA and the raw weights are scored at every milestone and the better is chosen, exported and
synthesized; a later milestone the paired evidence cannot tell from the best is a tie and the
earlier stays best, until a second milestone in a row is ahead of it."""

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
    # better on both takes of the same sentence with the same seeds (each scored on its own)
    assert all(r > e for r, e in zip(raw["score_pairs"], ema["score_pairs"])), row
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


def test_a_milestone_the_evidence_cannot_tell_from_the_best_keeps_it_until_a_second_one_is_ahead(f5_corpus, tmp_path):
    run = tmp_path / "run"
    # A learning rate of 1e-6 moves the weights a little each update: the scores of the milestones
    # differ by far less than the noise of their paired takes. The EMA copies the weights at every
    # update (ema_update_every=1, within ema_update_after), so the milestone's score is the weights'
    # that move. Two milestones first, then a resume to a third.
    args = ("--lr", "1e-6", "--set", "keep_last=5", "--set", "ema_update_every=1", *ONE_SENTENCE)
    voicetune(*f5_train_args(f5_corpus, run, 2, 1, *args), env=scoring_env(), check_exit=0, timeout=900)
    first, second = read_eval_rows(run / "eval.jsonl")
    assert second["score"] > first["score"], f"step 2 is not ahead of step 1, so nothing is tested: {first} {second}"
    assert len(second["score_pairs"]) == 2  # one sentence x two seeds, each pair scored on its own
    milestones = listed(run)
    assert [s for s, c in milestones.items() if c["best"]] == [1]  # ahead on average, not beyond the noise
    assert milestones[2]["tied_with"] == 1 and milestones[2]["compared"]["verdict"] == "tie"
    table = voicetune("ckpt", "list", run, check_exit=0).stdout
    assert "step 2: cannot be told from step 1: +" in table and "(paired, 2 pairs)" in table
    assert "tie with 1" in table and "the earlier checkpoint stays best" in table
    assert "step 1\n" in (run / "ready" / "SOURCE.txt").read_text()

    voicetune(*f5_train_args(f5_corpus, run, 3, 1, *args), env=scoring_env(), check_exit=0, timeout=900)
    third = read_eval_rows(run / "eval.jsonl")[2]
    assert third["score"] > first["score"], f"step 3 is not ahead of step 1, so no trend is tested: {third}"
    milestones = listed(run)
    assert [s for s, c in milestones.items() if c["best"]] == [3]  # the second milestone in a row ahead
    assert milestones[3]["compared"]["text"].startswith("ahead of step 1: +")
    assert milestones[3]["compared"]["text"].endswith("at two milestones in a row")
    assert "step 3\n" in (run / "ready" / "SOURCE.txt").read_text()
