"""Configuration sources, resume modes, --init-from lineage, architecture checks and the ckpt commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.harness import cli_env, run_cli, toy_args
from voicetune.checkpoints.store import CheckpointStore
from voicetune.config import TrainConfig
from voicetune.errors import UsageError


def test_config_precedence_defaults_toml_dotenv_env_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "train.toml"
    toml.write_text("max_updates = 111\nsave_every = 11\nkeep_last = 5\nlr = 0.5\n")
    (tmp_path / ".env").write_text("VOICETUNE_SAVE_EVERY=22\nVOICETUNE_KEEP_LAST=6\n")
    monkeypatch.setenv("VOICETUNE_KEEP_LAST", "7")
    config = TrainConfig.resolve({"lr": 0.25, "seed": None}, toml_file=toml)
    assert config.max_updates == 111  # TOML over default
    assert config.save_every == 22  # .env over TOML
    assert config.keep_last == 7  # environment over .env
    assert config.lr == 0.25  # flag over everything
    assert config.seed == 0  # a flag given as None is not a value
    assert config.last_every == 100  # default


@pytest.mark.parametrize(
    "flags, words",
    [
        ({"mixed_precision": "fp8"}, ["mixed_precision", "--mixed-precision", "'auto'", "'bf16'", "fp8"]),
        ({"keep_last": 0}, ["keep_last", "greater than or equal to 1"]),
        ({"disk_budget": "lots"}, ["disk_budget", "500M"]),
    ],
)
def test_a_wrong_value_names_the_field_and_what_is_allowed(flags, words):
    with pytest.raises(UsageError) as err:
        TrainConfig.resolve(flags)
    for word in words:
        assert word in str(err.value)


def test_unknown_toml_key_and_missing_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("max_updatez = 3\n")
    with pytest.raises(UsageError, match="unknown setting 'max_updatez'"):
        TrainConfig.resolve({}, toml_file=bad)
    with pytest.raises(UsageError, match="no such file"):
        TrainConfig.resolve({}, toml_file=tmp_path / "nope.toml")


def test_cli_errors_exit_2_without_traceback(toy_corpus, tmp_path):
    result = run_cli("train", *toy_args(toy_corpus, tmp_path / "run", "--mixed-precision", "fp8"))
    assert result.returncode == 2
    assert "mixed_precision" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("train", "--data", tmp_path / "nowhere", "--run", tmp_path / "run")
    assert missing.returncode == 2 and "--data" in missing.stderr and "voicetune prepare" in missing.stderr
    unknown = run_cli("train", *toy_args(toy_corpus, tmp_path / "run"), "--model", "f5-huge")
    assert unknown.returncode == 2 and "unknown model" in unknown.stderr


@pytest.fixture(scope="module")
def short_run(toy_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("short") / "run"
    result = run_cli(
        "train",
        *toy_args(toy_corpus, run, "--save-every", "10", "--last-every", "5", "--keep-last", "2", max_updates=30),
    )
    assert result.returncode == 0, result.stderr
    return run


def test_resume_modes(toy_corpus, short_run, tmp_path):
    empty = tmp_path / "empty"
    latest = run_cli("train", *toy_args(toy_corpus, empty, "--resume", "latest"))
    assert latest.returncode == 2 and "no valid full-state checkpoint" in latest.stderr
    never = run_cli("train", *toy_args(toy_corpus, short_run, "--resume", "never"))
    assert never.returncode == 2 and "already holds checkpoints" in never.stderr
    bogus = run_cli("train", *toy_args(toy_corpus, tmp_path / "r", "--resume", tmp_path / "nope"))
    assert bogus.returncode == 2 and "no such checkpoint" in bogus.stderr


def test_resume_from_an_explicit_older_checkpoint_protects_it_from_retention(toy_corpus, short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    oldest = min(CheckpointStore(run).scan(), key=lambda c: c.step)
    result = run_cli(
        "train",
        *toy_args(
            toy_corpus,
            run,
            "--save-every",
            "10",
            "--last-every",
            "5",
            "--keep-last",
            "1",
            "--resume",
            oldest.path,
            max_updates=50,
        ),
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming from {oldest.path} at step {oldest.step}" in result.stdout
    assert oldest.name in {c.name for c in CheckpointStore(run).scan()}


def test_init_from_starts_at_zero_with_lineage_and_checks_architecture(toy_corpus, short_run, tmp_path):
    run = tmp_path / "child"
    result = run_cli("train", *toy_args(toy_corpus, run, "--init-from", short_run, max_updates=5))
    assert result.returncode == 0, result.stderr
    assert "new run from the weights of" in result.stdout
    info = json.loads((run / "run.json").read_text())
    parent = json.loads((short_run / "run.json").read_text())
    assert info["lineage"]["init_from_run"] == parent["id"] and info["id"] != parent["id"]
    assert info["sessions"][0]["start_step"] == 0
    # Rerunning the same command resumes the child run instead of starting over.
    again = run_cli("train", *toy_args(toy_corpus, run, "--init-from", short_run, max_updates=8))
    assert "resuming from" in again.stdout and again.returncode == 0
    wide = run_cli(
        "train",
        *toy_args(toy_corpus, tmp_path / "wide", "--init-from", short_run, max_updates=5),
        env=cli_env(VOICETUNE_TOY_HIDDEN="32"),
    )
    assert wide.returncode == 2 and "architecture differs in hidden" in wide.stderr  # bad input
    assert not (tmp_path / "wide").exists()  # a refused command leaves nothing behind


def test_resume_with_another_architecture_names_the_field(toy_corpus, short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    result = run_cli("train", *toy_args(toy_corpus, run, max_updates=40), env=cli_env(VOICETUNE_TOY_HIDDEN="32"))
    assert result.returncode == 2  # bad input: the command names another model than the run's
    assert "hidden: checkpoint 64, now 32" in result.stderr


def test_ckpt_list_verify_prune(short_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    listed = json.loads(run_cli("ckpt", "list", run, "--json").stdout)
    names = [c["name"] for c in listed["checkpoints"]]
    assert names == ["step_00000020", "step_00000030"] and sum(c["best"] for c in listed["checkpoints"]) == 1
    assert run_cli("ckpt", "verify", run).returncode == 0
    victim = run / "checkpoints" / "step_00000020" / "ema.safetensors"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    bad = run_cli("ckpt", "verify", run)
    assert bad.returncode == 1 and "INVALID step_00000020: ema.safetensors" in bad.stderr
    report = json.loads(run_cli("ckpt", "verify", run / "checkpoints" / "step_00000020", "--json").stdout)
    assert report["valid"] is False and "sha256" in report["checkpoints"][0]["problem"]
    assert run_cli("ckpt", "verify", run / "checkpoints" / "step_00000030").returncode == 0
    dry = run_cli("ckpt", "prune", run, "--keep-last", "1", "--dry-run")
    kept_best = next(c["name"] for c in listed["checkpoints"] if c["best"])
    assert "would remove" in dry.stdout or "nothing" in dry.stdout
    run_cli("ckpt", "prune", run, "--keep-last", "1")
    remaining = {c.name for c in CheckpointStore(run).scan()}
    assert kept_best in remaining and "step_00000030" in remaining
    assert run_cli("ckpt", "list", tmp_path / "nothing").returncode == 2


def test_training_ends_with_the_best_checkpoint_exported_to_ready(short_run):
    from support.harness import load_tensors

    source = (short_run / "ready" / "SOURCE.txt").read_text().split("\n")[0]
    best = next(c for c in json.loads(run_cli("ckpt", "list", short_run, "--json").stdout)["checkpoints"] if c["best"])
    assert Path(source).name == best["name"]
    exported = load_tensors(short_run / "ready" / "model.safetensors")
    ema = load_tensors(Path(source) / "ema.safetensors")
    assert exported.keys() == ema.keys()
    assert all((exported[k] == ema[k]).all() for k in ema)  # the EMA weights are what is exported
