"""Two timelines in one run folder, and a dataset that changes under a run.

Going back to an older checkpoint of the same run (with another learning rate) moves the
abandoned future aside; a crash in the new branch then resumes the branch, never the future it
left, and ends bit for bit where the branch trained without a kill ends. A resume over a changed
dataset is refused, naming what changed and the two ways on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from support.harness import Training, assert_same_tensors, load_tensors, run_cli, toy_args, wait_until
from voicetune.checkpoints.store import CheckpointStore

# Explicit warmup and a constant rate: the schedule then does not depend on --max-updates, so a
# branch started from a run to 10 is the same branch as one started from step 10 of a run to 30.
# No samples at milestones (their mel pictures cost a training process more than its updates).
NO_SAMPLES = ["--set", "samples=false"]
SCHEDULE = ["--save-every", "10", "--last-every", "5", "--warmup-updates", "3", "--set", "decay=constant", *NO_SAMPLES]
BRANCH_LR = ["--lr", "0.001"]


def final(run: Path, step: int) -> Path:
    return next(c.path for c in CheckpointStore(run).scan() if c.step == step)


def test_a_crash_after_going_back_resumes_the_new_branch_not_the_abandoned_future(toy_corpus, tmp_path):
    run = tmp_path / "run"
    first = run_cli("train", *toy_args(toy_corpus, run, *SCHEDULE, max_updates=30))
    assert first.returncode == 0, first.stderr
    future = {c.name: c.manifest["session"] for c in CheckpointStore(run).scan() if c.step > 10}
    assert set(future) == {"step_00000020", "step_00000030"}

    # Back to step 10 with another learning rate; killed (-9) once the branch has saved step 15.
    back = run / "checkpoints" / "step_00000010"
    branch = Training(
        toy_args(toy_corpus, run, *SCHEDULE, *BRANCH_LR, "--resume", back, max_updates=30), log=tmp_path / "branch.log"
    )
    assert wait_until(
        lambda: any(c.step == 15 for c in CheckpointStore(run).scan()), interval=0.005, proc=branch.proc
    ), branch.output()
    branch.kill_group()
    store = CheckpointStore(run)
    saved15 = next(c for c in store.scan() if c.step == 15)
    assert saved15.manifest["parent"] == "step_00000010"
    assert saved15.manifest["session"] not in set(future.values())
    abandoned = {c.name: c.manifest["session"] for c in store.scan_abandoned()}
    assert abandoned == future  # the future left behind, moved whole, untouched
    listed = json.loads(run_cli("ckpt", "list", run, "--json", "--all").stdout)["checkpoints"]
    assert {r["name"].split("/")[-1] for r in listed if r["status"] == "abandoned"} == set(future)

    # A plain restart (a scheduler's requeue) continues the branch.
    resumed = run_cli("train", *toy_args(toy_corpus, run, *SCHEDULE, *BRANCH_LR, max_updates=30))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {saved15.path} at step 15" in resumed.stdout

    # The same branch trained without a kill, in a fresh folder.
    fresh = tmp_path / "fresh"
    assert run_cli("train", *toy_args(toy_corpus, fresh, *SCHEDULE, max_updates=10)).returncode == 0
    straight = run_cli("train", *toy_args(toy_corpus, fresh, *SCHEDULE, *BRANCH_LR, max_updates=30))
    assert straight.returncode == 0, straight.stderr
    assert not (fresh / "abandoned").exists()
    for component in ("model", "ema", "optimizer", "rng"):
        assert_same_tensors(
            load_tensors(final(fresh, 30) / f"{component}.safetensors"),
            load_tensors(final(run, 30) / f"{component}.safetensors"),
        )

    pruned = run_cli("ckpt", "prune", run, "--abandoned")
    assert pruned.returncode == 0 and "step_00000030" in pruned.stdout
    assert CheckpointStore(run).scan_abandoned() == []


def test_a_changed_dataset_is_refused_with_the_two_ways_on(toy_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_corpus, data)
    run = tmp_path / "run"
    assert run_cli("train", *toy_args(data, run, "--save-every", "5", *NO_SAMPLES, max_updates=10)).returncode == 0
    saved = json.loads((final(run, 10) / "loop.json").read_text())
    rows = (data / "metadata.csv").read_text().splitlines()
    (data / "metadata.csv").write_text("\n".join(rows[:-2]) + "\n")  # two clips fewer

    refused = run_cli("train", *toy_args(data, run, "--save-every", "5", *NO_SAMPLES, max_updates=15))
    assert refused.returncode == 2, refused.stderr
    message = refused.stderr
    assert "the dataset changed since step_00000010 was saved" in message
    assert f"{saved['data']['description']} -> " in message and "content fingerprint" in message
    assert "--data-changed restart-epoch" in message and "--init-from" in message
    assert [c.step for c in CheckpointStore(run).scan()] == [5, 10]  # nothing written

    going_on = run_cli(
        "train",
        *toy_args(data, run, "--save-every", "5", *NO_SAMPLES, "--data-changed", "restart-epoch", max_updates=15),
    )
    assert going_on.returncode == 0, going_on.stderr
    epoch = saved["state"]["epoch"] + 1
    assert f"epoch {epoch} starts over the new data" in going_on.stdout
    after = json.loads((final(run, 15) / "loop.json").read_text())
    assert after["data"]["fingerprint"] != saved["data"]["fingerprint"]
    assert after["state"]["step"] == 15 and after["state"]["epoch"] >= epoch
    # AdamW went on from step 10's state (15 steps counted), not from scratch (5).
    steps = {float(v) for k, v in load_tensors(final(run, 15) / "optimizer.safetensors").items() if k.endswith("/step")}
    assert steps == {15.0}
