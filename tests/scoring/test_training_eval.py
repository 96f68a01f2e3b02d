"""Milestones of f5-tiny runs scored while training: eval rows at each milestone, best by score,
the same checkpoint scored identically after a resume, and early stop of a run whose score stalls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import f5_train_args, scoring_env
from support.harness import voicetune
from voicetune.checkpoints.store import CheckpointStore
from voicetune.evaluation import eval_set_for, resolve_targets
from voicetune.evaluation.kept import read_kept
from voicetune.train.evaluator import SCORE_RULE, read_eval_rows, row_info
from voicetune.train.reporting import read_metrics

MEASURES = ("wer", "cer", "similarity", "dnsmos", "score", "score_spread")
SCORED = (*MEASURES, "weights", "scores")  # what a milestone's manifest, eval row and `ckpt list --json` row carry
ONE_SENTENCE = ("--set", "eval_clips=1")  # one held-out sentence per milestone keeps the tests short


@pytest.fixture(scope="module")
def straight(f5_corpus, tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("scored_straight") / "run"
    result = voicetune(
        *f5_train_args(f5_corpus, run, 4, 2, *ONE_SENTENCE), env=scoring_env(), check_exit=0, timeout=900
    )
    return run, result.stdout


def test_every_milestone_is_scored_and_the_best_follows_the_score(straight):
    run, stdout = straight
    rows = read_eval_rows(run / "eval.jsonl")
    assert [r["step"] for r in rows] == [2, 4]
    assert [k for r in rows for k in SCORED if r[k] is None] == [], rows
    for row in rows:  # both weight sets heard, each sentence with two seeds; the chosen one's measures at the top
        assert set(row["scores"]) == {"ema", "raw"} and row["weights"] in ("ema", "raw")
        assert {k: row[k] for k in MEASURES} == {k: row["scores"][row["weights"]][k] for k in MEASURES}
        assert all(s[k] is not None for s in row["scores"].values() for k in MEASURES)
    assert stdout.count("eval step ") == 2 and "the real voice scores WER" in stdout and "x 2 seeds" in stdout
    listed = json.loads(voicetune("ckpt", "list", run, "--json", check_exit=0).stdout)["checkpoints"]
    milestones = {c["step"]: c for c in listed if c["role"] == "milestone"}
    for row in rows:
        assert {k: milestones[row["step"]][k] for k in SCORED} == {k: row[k] for k in SCORED}
        assert milestones[row["step"]]["metrics"]["scores"] == row["scores"]  # the manifest's
    # one best, the same from eval.jsonl (what training said) and from the manifests (ckpt list)
    standing = SCORE_RULE.standing([row_info(r) for r in rows])
    best_row = next(r for r in rows if r["step"] == standing.best.step)
    assert [c["step"] for c in listed if c["best"]] == [best_row["step"]]
    other = milestones[4 if best_row["step"] == 2 else 2]
    assert other["compared"] == standing.comparisons[other["name"]].to_json()
    assert other["compared"]["pairs"] == 2 and other["tie"] == (other["compared"]["verdict"] == "tie")
    assert f"best score {best_row['score']:.3f} at step {best_row['step']}" in stdout
    assert f"step {best_row['step']}\nweights {best_row['weights']}" in (run / "ready" / "SOURCE.txt").read_text()
    metrics = read_metrics(run / "metrics.jsonl")
    assert all(metrics[r["step"]]["eval/score"] == r["score"] for r in rows)  # what TensorBoard got
    stored = json.loads((run / "run.json").read_text())["eval_set"]
    assert stored["set"]["texts"] and stored["ceiling"]["similarity"] is not None
    # `voicetune eval RUN` says what the run said at its milestones: the stored set
    assert eval_set_for(resolve_targets([run]), None, [], 4, None, None, None).to_json() == stored["set"]
    assert (run / "eval.png").read_bytes()[:4] == b"\x89PNG"
    for row in rows:  # each milestone's sentences are kept, as scored, for the studio's A/B view
        kept = read_kept(run, row["step"])
        assert [s.text for s in kept.sentences] == stored["set"]["texts"] and kept.weights == row["weights"]
        assert all(s.audio.is_file() for s in kept.sentences)
        assert {k: kept.measures[k] for k in MEASURES} == {k: row[k] for k in MEASURES}
    assert not (run / "milestone-work.json").exists()  # said while the milestone worked, gone after
    table = voicetune("ckpt", "list", run, check_exit=0).stdout
    assert "score" in table and "DNSMOS" in table and "weights" in table


def test_a_resumed_run_scores_the_same_checkpoint_identically(straight, f5_corpus, tmp_path):
    run, _ = straight
    resumed = tmp_path / "run"
    voicetune(*f5_train_args(f5_corpus, resumed, 2, 2, *ONE_SENTENCE), env=scoring_env(), check_exit=0, timeout=900)
    second = voicetune(
        *f5_train_args(f5_corpus, resumed, 4, 2, *ONE_SENTENCE), env=scoring_env(), check_exit=0, timeout=900
    )
    assert (
        "resuming from" in second.stdout and "the real voice scores" not in second.stdout
    )  # the ceiling: once per run
    assert read_eval_rows(resumed / "eval.jsonl") == read_eval_rows(run / "eval.jsonl")
    # Scoring a milestone changes nothing in the training that follows: the same weights at step 4
    # (it once left the process on another number of torch threads; see test_identical_scores.py).
    assert weight_hashes(resumed, 4) == weight_hashes(run, 4)


def weight_hashes(run: Path, step: int) -> dict[str, str]:
    files = json.loads((run / "checkpoints" / f"step_{step:08d}" / "manifest.json").read_text())["files"]
    return {name: files[name]["sha256"] for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")}


def test_early_stop_ends_a_run_whose_score_stalls(f5_corpus, tmp_path):
    run = tmp_path / "run"
    # A learning rate of 1e-12 leaves the weights as they are: every milestone scores the same.
    result = voicetune(
        *f5_train_args(f5_corpus, run, 20, 1, *ONE_SENTENCE, "--lr", "1e-12", "--early-stop", "2"),
        env=scoring_env(),
        check_exit=0,
        timeout=900,
    )
    assert "early stop at step 3: the score has not improved for 2 milestones" in result.stdout, result.stdout
    rows = read_eval_rows(run / "eval.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    listed = json.loads(voicetune("ckpt", "list", run, "--json", check_exit=0).stdout)["checkpoints"]
    # the same takes at every milestone: the evidence cannot tell them from step 1's, not progress
    assert [c["compared"]["verdict"] for c in listed if c["step"] in (2, 3)] == ["tie", "tie"]
    last = max(listed, key=lambda c: c["step"])
    assert last["step"] == 3 and last["kind"] == "full"


def test_early_stop_without_scores_is_refused(f5_corpus, tmp_path):
    result = voicetune(*f5_train_args(f5_corpus, tmp_path / "run", 2, 1, "--early-stop", "2"), check_exit=2)
    assert "--early-stop 2: needs milestone scores" in result.stderr


def test_a_milestone_a_stop_cut_short_is_scored_first_after_the_resume(f5_corpus, tmp_path):
    import signal

    from support.harness import Training, cli_env, wait_until

    run, release = tmp_path / "run", tmp_path / "release"
    settings = scoring_env(VOICETUNE_PAUSE_AT=f"scoring:{release}")
    stopping = Training(
        f5_train_args(f5_corpus, run, 4, 2, *ONE_SENTENCE)[1:],
        env=cli_env(**{k: v for k, v in settings.items() if k.startswith("VOICETUNE_")}),
        log=tmp_path / "stopped.txt",
    )
    assert wait_until(Path(f"{release}.reached").exists, timeout=600, proc=stopping.proc), stopping.output()
    stopping.signal(signal.SIGTERM)  # while step 2 is being scored
    assert wait_until(lambda: "SIGTERM: stopping" in stopping.output(), proc=stopping.proc)
    release.write_text("go")
    assert stopping.wait(timeout=300) == 143, stopping.output()
    assert "scoring of step 2 cut short by the stop request" in stopping.output()
    manifest = run / "checkpoints" / "step_00000002" / "manifest.json"
    committed = manifest.read_bytes()
    assert "score" not in json.loads(committed)["metrics"] and read_eval_rows(run / "eval.jsonl") == []

    # A resume stopped while it scores that milestone ends where it resumed, before any update:
    # a later step saved would leave step 2 unscored for good.
    again_release = tmp_path / "release-again"
    again = Training(
        f5_train_args(f5_corpus, run, 4, 2, *ONE_SENTENCE)[1:],
        env=cli_env(**{**settings, "VOICETUNE_PAUSE_AT": f"scoring:{again_release}"}),
        log=tmp_path / "stopped-again.txt",
    )
    assert wait_until(Path(f"{again_release}.reached").exists, timeout=600, proc=again.proc), again.output()
    again.signal(signal.SIGTERM)  # while the resume scores step 2
    assert wait_until(lambda: "SIGTERM: stopping" in again.output(), proc=again.proc)
    again_release.write_text("go")
    assert again.wait(timeout=300) == 143, again.output()
    assert "stopped by SIGTERM at step 2 after a clean checkpoint" in again.output()
    assert max(c.step for c in CheckpointStore(run).scan()) == 2 and read_eval_rows(run / "eval.jsonl") == []

    every_update = ("--set", "log_every=1")  # a line per update: where the scoring came is seen
    resumed = voicetune(
        *f5_train_args(f5_corpus, run, 4, 2, *ONE_SENTENCE, *every_update), env=scoring_env(), timeout=900
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = resumed.stdout
    assert "step 2: scoring the milestone that the stop cut short" in out
    assert out.index("eval step 2:") < out.index("step 3/4")  # first, before any update
    assert manifest.read_bytes() == committed  # a committed manifest is never rewritten
    rows = read_eval_rows(run / "eval.jsonl")
    assert [r["step"] for r in rows] == [2, 4]
    listed = {c["step"]: c for c in json.loads(voicetune("ckpt", "list", run, "--json").stdout)["checkpoints"]}
    assert listed[2]["score"] == rows[0]["score"] and listed[2]["score_pairs"] == rows[0]["score_pairs"]
    standing = SCORE_RULE.standing([row_info(r) for r in rows])  # the best, reconsidered with step 2's score
    assert [s for s, c in listed.items() if c["best"]] == [standing.best.step]
