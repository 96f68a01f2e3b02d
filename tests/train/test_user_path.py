"""The README's path as a new user meets it: what used to crash or lose a run silently."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import soundfile as sf

from support.harness import cli_env, run_cli, toy_args, xtts_args


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
    from voicetune.demo_corpus import write_ljspeech_corpus

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
    result = run_cli("train", *toy_args(toy_corpus, run, "--disk-budget", budget, "--save-every", "4",
                                        "--keep-last", "50", max_updates=12), env=cli_env())
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
