"""`voicetune plan`: what a run will take, checked against what a real run takes, and the batch it
suggests against the memory it is given."""

from __future__ import annotations

import json

import pytest

from support.harness import TOY_MODEL, cli_env, run_cli, toy_args, xtts_args
from voicetune.checkpoints.store import CheckpointStore
from voicetune.config import TrainConfig, format_size, parse_size
from voicetune.train.plan import make_plan

BIG = {"VOICETUNE_TOY_HIDDEN": "512"}  # checkpoints of megabytes: JSON side files are noise


@pytest.mark.parametrize("model", [TOY_MODEL, "chatterbox-tiny"])
def test_plan_json_predicts_the_checkpoints_and_train_prints_the_same_plan(model, toy_corpus, tmp_path):
    run = tmp_path / "run"
    cadence = ("--save-every", "4", "--last-every", "3", "--milestone-state", "weights")
    if model == TOY_MODEL:
        args = toy_args(toy_corpus, run, *cadence, max_updates=6)
    else:  # a real family: only T3 is checkpointed, S3Gen and the voice encoder stay as built
        args = xtts_args(toy_corpus, run, *cadence, "--set", "samples=false", max_updates=6, model=model)
    planned = run_cli("plan", *args, "--json", env=cli_env(**BIG))
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert {
        "parameters",
        "trainable_parameters",
        "checkpoint_bytes",
        "projected_disk_bytes",
        "peak_memory_bytes",
        "estimate",
    } <= plan.keys()
    assert not (run / "checkpoints").exists(), "plan must not train or write checkpoints"

    trained = run_cli("train", *args, env=cli_env(**BIG))
    assert trained.returncode == 0, trained.stderr + trained.stdout
    stored = {c.kind: c.size_bytes for c in CheckpointStore(run).scan()}  # a weights milestone (4), a full one (6)
    assert stored.keys() == {"full", "weights"}
    for kind in ("full", "weights"):
        assert abs(plan["checkpoint_bytes"][kind] - stored[kind]) <= 0.02 * stored[kind], (kind, plan, stored)
    assert plan["projected_disk_bytes"] >= sum(stored.values())
    assert f"{plan['trainable_parameters']:,} trainable parameters of {plan['parameters']:,}" in trained.stdout
    assert f"projected peak disk use {format_size(plan['projected_disk_bytes'])}" in trained.stdout


@pytest.fixture(scope="module")
def f5_plans():
    """f5-tiny planned for a 1 GiB card with and without each memory lever."""

    def plan(**settings):
        budget = parse_size("1G")
        return make_plan(TrainConfig.resolve({"model": "f5-tiny", "max_updates": 100, **settings}), gpu_memory=budget)

    return {
        "base": plan(),
        "checkpointing": plan(gradient_checkpointing=True),
        "adamw8bit": plan(optimizer="adamw8bit"),
        "lora": plan(lora_rank=4),
        "fp32": plan(mixed_precision="no"),
    }


def test_the_suggested_batch_fits_the_budget_and_one_step_more_does_not(f5_plans):
    plan = f5_plans["base"]
    assert plan.memory.source == "formula" and plan.to_json()["estimate"] == "formula"
    assert plan.precision == "bf16"  # auto, planned for a GPU
    largest = plan.max_batch
    assert largest and largest % 100 == 0
    budget = parse_size("1G")
    at = lambda frames: plan.memory.fixed_bytes + plan.memory.per_unit_bytes * frames  # noqa: E731
    assert at(largest) <= budget < at(largest + 100)
    assert plan.to_json()["max_batch_frames"] == largest


def test_each_memory_lever_lowers_the_peak_and_lora_shrinks_checkpoints(f5_plans):
    base = f5_plans["base"]
    # f5-tiny has 4 blocks: checkpointing keeps one block's activations and the text encoder's
    assert f5_plans["checkpointing"].memory.per_unit_bytes < base.memory.per_unit_bytes / 1.5
    assert f5_plans["checkpointing"].max_batch > base.max_batch
    assert f5_plans["adamw8bit"].memory.fixed_bytes < base.memory.fixed_bytes
    assert f5_plans["fp32"].memory.per_unit_bytes > base.memory.per_unit_bytes
    lora = f5_plans["lora"]
    assert lora.trainable_parameters < base.trainable_parameters / 10
    assert lora.parameters > base.parameters  # the frozen model plus the adapters
    assert "lora" in lora.checkpoint_bytes and "lora" not in base.checkpoint_bytes
    assert lora.checkpoint_bytes["full"] < base.checkpoint_bytes["full"] / 10
    assert lora.memory.fixed_bytes < base.memory.fixed_bytes


def test_a_bad_gpu_memory_is_refused_with_exit_2(toy_corpus, tmp_path):
    result = run_cli("plan", *toy_args(toy_corpus, tmp_path / "run"), "--gpu-memory", "lots")
    assert result.returncode == 2
    assert "--gpu-memory" in result.stderr and "'lots' is not a size" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_of_f5_v1_base_needs_no_weights_and_says_where_they_come_from(tmp_path):
    """Offline, with an empty Hugging Face cache: the plan comes from the architecture and the
    vocabulary file (the package's, or --vocab), and downloads nothing."""
    hf_home = tmp_path / "hf"
    env = cli_env(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home))
    planned = run_cli("plan", "--model", "f5-v1-base", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["parameters"] > 300_000_000  # the released Base, not a stand-in
    assert plan["weights"].startswith("hf://SWivid/F5-TTS/F5TTS_v1_Base/") and "downloaded" in plan["weights"]
    assert plan["checkpoint_bytes"]["weights"] >= 8 * plan["parameters"]  # fp32 weights and their EMA
    assert not [p for p in hf_home.rglob("*") if p.is_file()], "plan must not download"

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([" ", *"abcdefghijklmnopqrstuvwxyz"]) + "\n", encoding="utf-8")
    small = run_cli(
        "plan", "--model", "f5-v1-base", "--vocab", str(vocab), "--pretrained", str(tmp_path / "mine.pt"), env=env
    )
    assert small.returncode == 0, small.stderr
    assert f"weights: {tmp_path / 'mine.pt'} (no such file: `voicetune train` will need it)" in small.stdout
    count = int(small.stdout.split(" trainable parameters")[0].split(": ")[-1].replace(",", ""))
    assert count < plan["parameters"]  # the text embedding has a row per token of the given vocabulary


def test_plan_of_the_released_chatterbox_needs_no_weights_and_gives_its_memory(tmp_path):
    """Offline, with an empty Hugging Face cache: T3, S3Gen and the voice encoder at their released
    sizes (built on the meta device), the from_local files named, and a batch for a 24 GiB card."""
    from voicetune.train.auto_settings import size_estimate

    hf_home = tmp_path / "hf"
    env = cli_env(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home))
    planned = run_cli("plan", "--model", "chatterbox", "--gpu-memory", "24G", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    estimate = size_estimate("chatterbox")  # the studio's auto settings agree with the plan
    assert (plan["parameters"], plan["trainable_parameters"]) == (estimate.parameters, estimate.trainable)
    assert plan["weights"].startswith("hf://ResembleAI/chatterbox (") and "t3_cfg.safetensors" in plan["weights"]
    memory = plan["memory"]
    assert memory["unit"] == "items" and plan["max_batch_size"] >= 1
    fits = memory["fixed_bytes"] + memory["per_unit_bytes"] * plan["max_batch_size"]
    assert fits <= parse_size("24G") < fits + memory["per_unit_bytes"]
    assert not [p for p in hf_home.rglob("*") if p.is_file()], "plan must not download"
