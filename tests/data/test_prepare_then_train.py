"""`voicetune prepare` with its defaults, then `voicetune train`: each model trains and validates
on what prepare made (the README's own path)."""

from __future__ import annotations

import json

import pytest

from support.harness import run_cli, xtts_args

XTTS_LIMIT_SECONDS = 255995 / 22050  # upstream XTTS leaves out longer audio


def finite_metric_rows(run):
    def refuse(constant):
        raise AssertionError(f"metrics.jsonl holds {constant}")

    return [json.loads(line, parse_constant=refuse) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_f5_uses_every_clip_prepare_makes_and_validates(prepared, tmp_path):
    assert prepared.result.returncode == 0, prepared.result.stderr
    run = tmp_path / "f5"
    result = run_cli(
        "train",
        "--data",
        prepared.dataset,
        "--run",
        run,
        "--model",
        "f5-tiny",
        "--max-updates",
        "3",
        "--save-every",
        "3",
        "--workers",
        "0",
        "--set",
        "samples=false",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "never used" not in result.stdout  # the default frame budget holds the longest clip
    val = [row["val/loss"] for row in finite_metric_rows(run) if "val/loss" in row]
    assert len(val) == 1 and val[0] > 0


@pytest.mark.slow
def test_xtts_trains_on_prepare_defaults_and_names_the_fix(prepared, tmp_path):
    too_long = [clip for clip in prepared.manifest() if clip["duration"] > XTTS_LIMIT_SECONDS]
    assert too_long, "prepare's defaults make clips longer than XTTS takes: the case under test"
    run = tmp_path / "xtts"
    result = run_cli(
        "train", *xtts_args(prepared.dataset, run, "--save-every", "3", "--set", "samples=false", max_updates=3)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"XTTS leaves out {len(too_long)} of" in result.stdout and "--for xtts" in result.stdout
    finite_metric_rows(run)
    manifest = json.loads((run / "checkpoints" / "step_00000003" / "manifest.json").read_text())
    assert manifest["metrics"]["train_loss"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("family, shortest, longest", [("xtts", 4.0, 11.5), ("chatterbox", 3.0, 20.0)])
def test_prepare_for_a_family_makes_clips_it_takes(family, shortest, longest, corpus, tmp_path):
    dataset = tmp_path / f"for_{family}"
    result = run_cli(
        "prepare", corpus["talk.mp3"].path, "--out", dataset, "--for", family, "--transcriber", "pocketsphinx"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    durations = [json.loads(line)["duration"] for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    assert durations and all(shortest - 1e-3 <= d <= longest + 1e-3 for d in durations), durations


def test_prepare_for_an_unknown_model_is_refused(tmp_path):
    result = run_cli("prepare", tmp_path, "--out", tmp_path / "out", "--for", "tacotron")
    assert result.returncode == 2
    assert "--for tacotron" in result.stderr and "xtts" in result.stderr
    assert not (tmp_path / "out").exists()
