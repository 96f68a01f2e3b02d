"""The README's path as a new user meets it: what used to crash or lose a run silently."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from support.harness import cli_env, run_cli, toy_args, xtts_args

FINISHED_CADENCE = ["--save-every", "5", "--last-every", "5"]


@pytest.fixture(scope="module")
def finished_run(toy_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    result = run_cli("train", *toy_args(toy_corpus, run, *FINISHED_CADENCE, max_updates=10))
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def strict_json(path: Path):
    """Parse as JSON that has no NaN or Infinity (what other tools, and the manifest writer, require)."""

    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def metric_rows(run: Path) -> list[dict]:
    rows = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rows.append(json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c))))
    return rows


def xtts_dataset_with_long_val_clips(xtts_corpus: Path, out: Path) -> Path:
    """The 14 short clips to train on, and a validation split of two 12+ s clips, longer than XTTS
    takes: what `prepare`'s 5-15 s defaults gave the user of the issue."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    shutil.copytree(xtts_corpus / "wavs", out / "wavs")
    train_rows = (xtts_corpus / "metadata.csv").read_text().splitlines()
    long = write_ljspeech_corpus(out.parent / "long", n_items=2, sample_rate=22050, sentences_per_item=5)
    val_rows = []
    for row in (long / "metadata.csv").read_text().splitlines():
        clip_id, *texts = row.split("|")
        audio, rate = sf.read(long / "wavs" / f"{clip_id}.wav")
        assert len(audio) / rate > 11.6, "the validation clips must be longer than XTTS's limit"
        shutil.copy(long / "wavs" / f"{clip_id}.wav", out / "wavs" / f"long_{clip_id}.wav")
        val_rows.append("|".join([f"long_{clip_id}", *texts]))
    (out / "metadata_train.csv").write_text("\n".join(train_rows) + "\n")
    (out / "metadata_val.csv").write_text("\n".join(val_rows) + "\n")
    (out / "metadata.csv").write_text("\n".join(train_rows + val_rows) + "\n")
    return out


def test_xtts_without_usable_validation_clips_trains_and_names_the_fix(xtts_corpus, tmp_path):
    data = xtts_dataset_with_long_val_clips(xtts_corpus, tmp_path / "data")
    run = tmp_path / "run"
    result = run_cli("train", *xtts_args(data, run, "--save-every", "4", "--set", "samples=false", max_updates=4))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--for xtts" in result.stdout  # the dropped clips are announced with the fix
    assert "validation is skipped" in result.stdout and "chosen by train_loss" in result.stdout
    assert not any("val/loss" in row for row in metric_rows(run))
    manifest = strict_json(run / "checkpoints" / "step_00000004" / "manifest.json")
    assert manifest["metrics"]["train_loss"] > 0 and "val_loss" not in manifest["metrics"]
    listed = run_cli("ckpt", "list", run, "--json")
    assert [c["name"] for c in json.loads(listed.stdout)["checkpoints"] if c["best"]] == ["step_00000004"]


def test_disk_budget_that_cannot_hold_a_checkpoint_is_refused_at_start(toy_corpus, tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", *toy_args(toy_corpus, run, "--disk-budget", "1K", max_updates=12))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--disk-budget 1K" in result.stderr and "give at least --disk-budget" in result.stderr
    assert not run.exists()  # a refused command leaves nothing behind


def test_run_whose_final_save_is_skipped_exits_non_zero_and_says_so(toy_corpus, tmp_path):
    refused = run_cli("train", *toy_args(toy_corpus, tmp_path / "probe", "--disk-budget", "1K", max_updates=12))
    least = int(re.search(r"give at least --disk-budget (\d+)K", refused.stderr).group(1))
    run = tmp_path / "run"
    # Room for two and a half checkpoints, and retention told to keep every milestone: the third
    # save (the final one) cannot fit.
    budget = f"{least * 5 // 4}K"
    result = run_cli(
        "train",
        *toy_args(toy_corpus, run, "--disk-budget", budget, "--save-every", "4", "--keep-last", "50", max_updates=12),
        env=cli_env(),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "final step 12 was NOT saved" in result.stderr and "step_00000008" in result.stderr
    assert "done:" not in result.stdout
    listed = json.loads(run_cli("ckpt", "list", run, "--json").stdout)["checkpoints"]
    assert [c["step"] for c in listed] == [4, 8]
    assert "Traceback" not in result.stderr


def test_an_unexpected_error_lands_in_the_run_log(toy_corpus, tmp_path):
    """A crash inside a run (here: a clip that is not audio) is one line on the terminal that
    points to the run's train.log, which holds the traceback."""
    data = tmp_path / "data"
    shutil.copytree(toy_corpus, data)
    first = sorted((data / "wavs").glob("*.wav"))[0]
    first.write_bytes(b"not a wav file at all")
    run = tmp_path / "run"
    result = run_cli("train", *toy_args(data, run, max_updates=4))
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(run / "train.log") in result.stderr
    assert "Traceback (most recent call last)" in (run / "train.log").read_text()


# ---- flags, help and settings -------------------------------------------------------------------


def test_train_help_shows_defaults_required_options_and_no_type_tags():
    text = run_cli("train", "--help", env=cli_env(COLUMNS="250")).stdout
    assert "<str>" not in text and "<bool>" not in text and "<int>" not in text

    def line(flag):
        return next(row for row in text.splitlines() if f" {flag} " in row or f" {flag}," in row)

    assert "[required]" in line("--data") and "[required]" in line("--run,--run-dir")
    assert "[default: 1000]" in line("--save-every") and "[default: 3]" in line("--keep-last")
    assert "--vocab" in text and "--settings" in text


def test_train_settings_lists_every_key_and_unknown_keys_point_there(toy_corpus, tmp_path):
    from voicetune.config import TrainConfig

    listed = run_cli("train", "--settings", env=cli_env(COLUMNS="250")).stdout
    rows = {row.split("│")[1].strip() for row in listed.splitlines() if row.count("│") >= 3}
    assert set(TrainConfig.model_fields) <= rows
    assert "0.9999" in next(row for row in listed.splitlines() if "│ ema_decay " in row)
    bad = run_cli("train", *toy_args(toy_corpus, tmp_path / "run", "--set", "ema_decy=0.9"))
    assert bad.returncode == 2 and "ema_decy" in bad.stderr and "voicetune train --settings" in bad.stderr


def test_vocab_flag_reaches_the_model(toy_corpus, tmp_path):
    result = run_cli(
        "train",
        "--data",
        toy_corpus,
        "--run",
        tmp_path / "run",
        "--model",
        "f5-tiny",
        "--vocab",
        tmp_path / "missing_vocab.txt",
        "--max-updates",
        "1",
    )
    assert result.returncode == 2 and f"--vocab {tmp_path / 'missing_vocab.txt'}: no such file" in result.stderr


# ---- exit codes and what a refused command leaves -----------------------------------------------


def test_run_naming_a_file_is_a_usage_error(toy_corpus, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = run_cli("train", *toy_args(toy_corpus, target, max_updates=2))
    assert result.returncode == 2 and f"--run {target}: is a file" in result.stderr
    assert target.read_text() == "mine" and "Traceback" not in result.stderr


def test_env_file_may_hold_other_variables_and_names_unknown_settings(toy_corpus, tmp_path):
    (tmp_path / ".env").write_text("VOICETUNE_VOCOS=/nowhere\nHF_TOKEN=hf_x\nVOICETUNE_SAVE_EVERY=2\n")
    result = run_cli("train", *toy_args(toy_corpus, tmp_path / "run", max_updates=2), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step_00000002 committed (milestone" in result.stdout  # VOICETUNE_SAVE_EVERY applied
    (tmp_path / ".env").write_text("VOICETUNE_SAVE_EVRY=2\n")
    bad = run_cli("train", *toy_args(toy_corpus, tmp_path / "run2", max_updates=2), cwd=tmp_path)
    assert bad.returncode == 2 and "VOICETUNE_SAVE_EVRY in .env" in bad.stderr
    assert not (tmp_path / "run2").exists()


def test_prepare_without_audio_says_so_and_creates_nothing(tmp_path):
    inputs = tmp_path / "recordings"
    inputs.mkdir()
    (inputs / "notes.pdf").write_bytes(b"%PDF-1.4")
    result = run_cli("prepare", inputs, "--out", tmp_path / "dataset", "--transcriber", "none")
    assert result.returncode == 2 and "found no audio or video file" in result.stderr
    assert not (tmp_path / "dataset").exists()


def test_failed_export_leaves_no_folder(finished_run, tmp_path):
    out = tmp_path / "export"
    damaged = tmp_path / "run"
    shutil.copytree(finished_run, damaged)
    for weights in (damaged / "checkpoints").glob("*/ema.safetensors"):
        weights.write_bytes(weights.read_bytes()[:-8])  # every checkpoint fails verification
    result = run_cli("ckpt", "export", damaged, "--format", "safetensors", "--out", out)
    assert result.returncode != 0
    assert not out.exists()


def test_synthesize_checks_its_arguments_before_loading_a_model(finished_run, tmp_path):
    damaged = tmp_path / "run"
    shutil.copytree(finished_run, damaged)
    for weights in (damaged / "checkpoints").glob("*/model.safetensors"):
        weights.write_bytes(b"")  # loading would fail on these: the --ref error must come first
    result = run_cli(
        "synthesize",
        "--checkpoint",
        damaged,
        "--text",
        "Hello.",
        "--ref",
        tmp_path / "missing.wav",
        "--out",
        tmp_path / "out.wav",
    )
    assert result.returncode == 2 and "--ref" in result.stderr and "missing.wav" in result.stderr
    assert "checkpoint" not in result.stderr.split("--ref", 1)[0]


def test_unreachable_hub_fails_in_one_line(toy_corpus, tmp_path):
    # Nothing listens on port 9 of this machine: the hub is unreachable, as on an offline box.
    result = run_cli(
        "train",
        "--data",
        toy_corpus,
        "--run",
        tmp_path / "run",
        "--model",
        "f5-v1-base",
        "--max-updates",
        "1",
        env=cli_env(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf")),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot be reached" in lines[0] and "hf download SWivid/F5-TTS" in lines[0]


# ---- time spent where the user wants it ---------------------------------------------------------


def test_rerunning_a_finished_run_redoes_nothing(finished_run, toy_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name not in ("train.log", "LOCK")}
    info = json.loads((run / "run.json").read_text())
    steps = info["sessions"][-1]
    result = run_cli("train", *toy_args(toy_corpus, run, *FINISHED_CADENCE, max_updates=10))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the run is complete" in result.stdout and "samples of step" not in result.stdout
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name not in ("train.log", "LOCK")}
    assert after == before  # no samples, no export, no checkpoint, no new session written
    assert json.loads((run / "run.json").read_text())["sessions"][-1] == steps


def test_eta_counts_milestones_apart():
    from voicetune.train.reporting import Reporter

    reporter = Reporter(Path("."), Path("."), Path("."), 0, 100, 10, enabled=False, save_every=25)
    reporter._rate = 2.0  # updates per second, milestone work excluded
    assert reporter.eta(50) == "00:00:25"  # no milestone measured yet
    reporter.milestone_done(10.0, 50)
    # 50 updates at 2/s, and the milestones of steps 75 and 100 at 10 s each
    assert reporter.eta(50) == "00:00:45 (milestones 00:00:20 of it)"


def test_the_eta_of_the_last_step_waits_for_the_last_milestone():
    from voicetune.train.reporting import Reporter

    # issue 29: 45 updates, a milestone every 15; the last one was scored for 3 minutes at "ETA 00:00:00"
    reporter = Reporter(Path("."), Path("."), Path("."), 0, 45, 1, enabled=False, save_every=15)
    reporter._rate = 1.0
    reporter.milestone_done(150.0, 15)
    reporter.milestone_done(180.0, 30)  # the last milestone's time counts, not the mean
    assert reporter.eta(44) == "00:03:01 (milestones 00:03:00 of it)"
    assert reporter.eta(45) == "00:03:00 (milestones 00:03:00 of it)"  # its milestone is still to come
    reporter.milestone_done(170.0, 45)
    assert reporter.eta(45) == "00:00:00"


def test_every_commit_is_shown_and_samples_keep_to_their_budget(toy_corpus, tmp_path):
    result = run_cli(
        "train",
        *toy_args(
            toy_corpus,
            tmp_path / "run",
            "--save-every",
            "3",
            "--sample-text",
            "a second prompt",
            "--set",
            "sample_budget_seconds=0.001",
            max_updates=6,
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "checkpoint step_00000003 committed" in result.stdout and "checkpoint step_00000006 committed" in result.stdout
    )
    assert "samples of step 3: 1 of 2 prompts left out after 0 s" in result.stdout
    assert "milestone validation and samples took" in result.stdout


def test_resume_hint_repeats_the_command_as_given(toy_corpus, tmp_path):
    import shlex
    import signal

    from support.harness import Training, last_logged_step, wait_until

    config = tmp_path / "settings.toml"
    config.write_text("keep_last = 2\n")
    args = toy_args(toy_corpus, tmp_path / "run", "--config", config, "--last-every", "5", max_updates=100_000)
    training = Training(args, log=tmp_path / "out.log")
    assert wait_until(lambda: last_logged_step(tmp_path / "run") >= 3, proc=training.proc)
    training.signal(signal.SIGTERM)
    assert training.wait() == 143
    assert shlex.join(["voicetune", "train", *map(str, args)]) in training.output()


def test_third_party_hints_are_silenced_in_the_cli():
    """bitsandbytes logs a hint about an optional CPU kernel on every XTTS command (on CPUs with
    AVX512-BF16). A command that logs it the way bitsandbytes does shows nothing under
    `voicetune`, while the same line outside the CLI reaches stderr."""
    import subprocess
    import sys

    emit = "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('Failed to load CPU gemm_4bit_forward')"
    inside = f"import logging; from voicetune import cli; cli.app.command('emit')(lambda: {emit}); cli.main(['emit'])"
    outside = f"import logging; {emit}"
    shown = subprocess.run([sys.executable, "-c", outside], env=cli_env(), capture_output=True, text=True)
    assert "gemm_4bit_forward" in shown.stderr
    quiet = subprocess.run([sys.executable, "-c", inside], env=cli_env(), capture_output=True, text=True)
    assert quiet.returncode == 0 and "gemm_4bit_forward" not in quiet.stderr, quiet.stderr
