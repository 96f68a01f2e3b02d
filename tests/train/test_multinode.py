"""Beyond one machine: `voicetune train` under torchrun and accelerate launch with two nodes,
simulated on this machine (two launcher invocations with --nnodes 2 on 127.0.0.1, gloo). The run
folder is shared, as on a cluster; rank 0 of the whole job writes; SIGTERM to both launchers stops
the job at one update with a clean checkpoint, and the resume ends bit for bit where a straight
run ends. Two validation clips in batches of 2 make one validation batch, which the two ranks
cannot share (the job hung at its first milestone after a resume, issue 20); every checkpoint
records both ranks' weights digests, equal."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.harness import (
    assert_ranks_agree,
    assert_same_tensors,
    cli_env,
    last_logged_step,
    load_tensors,
    toy_args,
    wait_until,
)
from voicetune.checkpoints.store import CheckpointStore
from voicetune.train.reporting import read_metrics

N = 60
# No samples at milestones: rank 0's mel pictures would cost the job more than its updates.
CADENCE = ["--save-every", "20", "--last-every", "5", "--batch-size", "2", "--set", "samples=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(corpus: Path, run: Path, max_updates: int = N, *extra: str) -> list[str]:
    # --run-dir: torchrun's own parser would take --run for its --run-path.
    args = toy_args(corpus, run, *CADENCE, *extra, max_updates=max_updates)
    return ["--run-dir" if a == "--run" else a for a in args]


def torchrun_nodes(
    corpus: Path, run: Path, logs: Path, max_updates: int = N, *extra: str, env: dict[str, str] | None = None
) -> list[subprocess.Popen]:
    """Two torchrun 'nodes' of one process each, as two machines would start them."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "-m",
                "voicetune",
                "train",
                *train_args(corpus, run, max_updates, *extra),
            ],
            env=env or cli_env(),
            stdout=open(logs / f"node{rank}.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for rank in range(2)
    ]


def wait_all(nodes: list[subprocess.Popen], timeout: float = 600) -> list[int]:
    return [node.wait(timeout) for node in nodes]


def final_dir(run: Path) -> Path:
    return max(CheckpointStore(run).scan(), key=lambda c: c.step).path


@pytest.mark.slow
def test_two_torchrun_nodes_train_stop_on_sigterm_and_resume_exactly(toy_corpus, tmp_path):
    straight = tmp_path / "straight"
    assert wait_all(torchrun_nodes(toy_corpus, straight, tmp_path / "straight_logs")) == [0, 0], (
        tmp_path / "straight_logs" / "node0.log"
    ).read_text()[-3000:]
    rng = json.loads((final_dir(straight) / "rng.json").read_text())
    assert rng.keys() == {"rank0", "rank1"}  # one job of two ranks, rank 0 of the whole job wrote
    assert (straight / "train.rank1.log").is_file() and not (straight / "train.rank0.log").exists()

    run = tmp_path / "run"
    nodes = torchrun_nodes(toy_corpus, run, tmp_path / "logs")
    assert wait_until(lambda: last_logged_step(run) >= 25, proc=nodes[0])
    for node in nodes:
        node.send_signal(signal.SIGTERM)
    codes = wait_all(nodes)
    assert all(code != 0 for code in codes)  # non-zero, so a scheduler restarts the job
    log0 = (tmp_path / "logs" / "node0.log").read_text()
    assert "stopped by SIGTERM" in log0 and "after a clean checkpoint" in log0
    assert "rerun the launch command (torchrun / accelerate launch) on every node with the same voicetune part" in log0
    stopped_at = last_logged_step(run)
    store = CheckpointStore(run)
    assert final_dir(run).name == f"step_{stopped_at:08d}"
    assert all(store.verify(c).problem is None for c in store.scan())

    assert wait_all(torchrun_nodes(toy_corpus, run, tmp_path / "logs")) == [0, 0]
    assert "resuming from" in (tmp_path / "logs" / "node0.log").read_text()
    assert_ranks_agree(straight)
    assert_ranks_agree(run)
    a, b = final_dir(straight), final_dir(run)
    assert a.name == b.name == f"step_{N:08d}"
    for component in ("model", "ema", "optimizer", "rng"):
        assert_same_tensors(load_tensors(a / f"{component}.safetensors"), load_tensors(b / f"{component}.safetensors"))
    la, lb = read_metrics(straight / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert [la[s]["train/loss"] for s in range(1, N + 1)] == [lb[s]["train/loss"] for s in range(1, N + 1)]


@pytest.mark.slow
def test_a_stalled_node_ends_the_job_through_the_watchdog_and_the_same_commands_resume(toy_corpus, tmp_path):
    run, logs = tmp_path / "run", tmp_path / "logs"
    # Global rank 1 (the second node) never leaves validation at the first milestone (step 20).
    stall = cli_env(VOICETUNE_PAUSE_AT=f"validation@1:{tmp_path / 'never'}")
    nodes = torchrun_nodes(toy_corpus, run, logs, 20, "--collective-timeout", "10s", env=stall)
    assert all(code != 0 for code in wait_all(nodes)), (logs / "node0.log").read_text()[-3000:]
    log = (run / "train.log").read_text()
    for rank in (0, 1):
        header = log[log.index(f"==== rank {rank} of 2") :].splitlines()[0]
        assert "phase 'validation' at step 20" in header
    assert "in pause_point" in log[log.index("==== rank 1 of 2") :].split("==== end of rank 1")[0]
    assert final_dir(run).name == "step_00000015"  # the last rolling checkpoint stands

    assert wait_all(torchrun_nodes(toy_corpus, run, logs, 20, "--collective-timeout", "10s")) == [0, 0]
    assert "resuming from" in (logs / "node0.log").read_text() and final_dir(run).name == "step_00000020"
    assert_ranks_agree(run)


@pytest.mark.slow
def test_two_accelerate_launch_nodes_train_one_job(toy_corpus, tmp_path):
    run, port = tmp_path / "run", free_port()
    accelerate = Path(sys.executable).with_name("accelerate")
    nodes = [
        subprocess.Popen(
            [
                str(accelerate),
                "launch",
                "--multi_gpu",
                "--num_processes",
                "2",
                "--num_machines",
                "2",
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                str(port),
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                "-m",
                "voicetune",
                "train",
                *train_args(toy_corpus, run, max_updates=10),
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:]
    assert json.loads((final_dir(run) / "rng.json").read_text()).keys() == {"rank0", "rank1"}
    assert "done: 10 updates" in outputs[0]
