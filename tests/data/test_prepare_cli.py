"""`voicetune prepare` end to end on real speech in mixed formats, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from speech_corpus import word_edits, words_for_wer

from support.harness import REPO_ROOT, WHISPER_WORKERS, voicetune

# Measured with whisper-base int8 on this corpus (espeak-ng speech, an 8 kHz phone recording
# among it): about 0.15 over all clips. The bound leaves room for thread-count differences
# and catches what matters: words given to the wrong clip, or lost.
MAX_CORPUS_WER = 0.25
MAX_CLIP_WER = 0.8
CUT_TOLERANCE = 0.02  # seconds: where a word starts or ends is known to a few milliseconds


def tree_bytes(folder: Path, skip=(".voicetune/last_run.json",)) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and str(p.relative_to(folder)) not in skip
    }


@pytest.mark.slow
def test_prepare_keeps_clips_and_exits_0(prepared):
    assert prepared.result.returncode == 0, prepared.result.stderr
    assert "clips" in prepared.result.stdout and "h kept" in prepared.result.stdout
    report = prepared.report()
    assert report["totals"]["clips"] >= 15
    # Every readable recording with enough speech gave clips.
    with_clips = {Path(s["path"]).name for s in report["sources"] if s["clips"]}
    assert with_clips == {"talk.mp3", "run_on.flac", "call.wav", "studio.wav", "interview.mp4", "note.opus"}
    print(f"\nprepare: {report['totals']['source_seconds']:.0f} s of audio in {prepared.seconds:.1f} s")


@pytest.mark.slow
def test_clip_durations_stay_within_bounds(prepared):
    for clip in prepared.manifest():
        audio, rate = sf.read(prepared.dataset / "wavs" / f"{clip['id']}.wav")
        assert 5.0 - 1e-3 <= len(audio) / rate <= 15.0 + 1e-3, clip
        assert abs(len(audio) / rate - clip["duration"]) < 1e-3


@pytest.mark.slow
def test_no_clip_starts_or_ends_inside_a_word(prepared):
    """Every cut lies in a pause the recording was built with, or between two run-on words."""
    forced = 0
    for clip in prepared.manifest():
        zones = prepared.recording_of(clip["source"]).no_cut_zones()
        for edge in (clip["start"], clip["end"]):
            inside = [z for z in zones if z[0] + CUT_TOLERANCE < edge < z[1] - CUT_TOLERANCE]
            assert not inside, f"{clip['id']} cut at {edge:.3f} s inside speech {inside}"
        forced += "forced_cut" in clip["flags"]
    assert forced >= 2, "the run-on recording has more speech without a pause than one clip holds"


@pytest.mark.slow
def test_whisper_transcripts_match_the_spoken_text(prepared):
    edits = words = 0
    for clip in prepared.manifest():
        reference = words_for_wer(prepared.recording_of(clip["source"]).text_between(clip["start"], clip["end"]))
        hypothesis = words_for_wer(clip["text"])
        clip_edits = word_edits(reference, hypothesis)
        assert clip_edits / len(reference) <= MAX_CLIP_WER, (clip["id"], reference, hypothesis)
        edits += clip_edits
        words += len(reference)
    wer = edits / words
    print(f"\nwhisper-base word error rate: {wer:.3f} ({edits} edits / {words} words)")
    assert wer <= MAX_CORPUS_WER


@pytest.mark.slow
def test_dataset_files_are_complete_and_consistent(prepared):
    dataset = prepared.dataset
    manifest = prepared.manifest()
    ids = [clip["id"] for clip in manifest]
    rows = [line.split("|") for line in (dataset / "metadata.csv").read_text(encoding="utf-8").splitlines()]
    assert [r[0] for r in rows] == ids and all(len(r) == 3 and r[1] for r in rows)
    train = [line.split("|")[0] for line in (dataset / "metadata_train.csv").read_text().splitlines()]
    val = [line.split("|")[0] for line in (dataset / "metadata_val.csv").read_text().splitlines()]
    assert sorted(train + val) == sorted(ids) and not set(train) & set(val) and val
    assert {c["id"] for c in manifest if c["split"] == "val"} == set(val)
    for clip in manifest:
        info = sf.info(dataset / "wavs" / f"{clip['id']}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        assert set(clip) >= {
            "id",
            "source",
            "start",
            "end",
            "duration",
            "text",
            "asr_confidence",
            "loudness_lufs",
            "flags",
        }
        assert (
            abs(clip["loudness_lufs"] - (-23.0)) < 1.0 or clip["peak_dbfs"] > -1.1
        )  # on target, or held by the peak guard
        assert 0 < clip["asr_confidence"] <= 1
    assert sorted(p.stem for p in (dataset / "wavs").glob("*.wav")) == sorted(ids)
    assert (dataset / "durations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = prepared.report()
    assert report["totals"]["clips"] == len(ids)
    assert abs(report["totals"]["seconds_kept"] - sum(c["duration"] for c in manifest)) < 0.01
    assert report["check"]["ok"] and report["check"]["errors"] == 0
    assert sum(report["clip_seconds"]["histogram"]["counts"]) == len(ids)


@pytest.mark.slow
def test_bad_files_are_reported_with_reasons(prepared):
    reasons = {(Path(r["path"]).name, r["reason"]) for r in prepared.report()["rejections"]}
    assert ("corrupt.mp3", "unreadable") in reasons
    assert ("silence.wav", "silent") in reasons
    assert ("short.wav", "too_short") in reasons
    assert ("cover.jpg", "not_audio") in reasons
    assert not any(name == "talk.txt" for name, _ in reasons)  # a companion text file is not a rejection
    assert "unreadable" in prepared.result.stdout and "silent" in prepared.result.stdout


@pytest.mark.slow
def test_rerun_changes_nothing(prepared, corpus_dir, whisper_model):
    before = tree_bytes(prepared.dataset)
    result = voicetune(
        "prepare",
        corpus_dir,
        "--out",
        prepared.dataset,
        "--whisper-model",
        whisper_model,
        "--workers",
        WHISPER_WORKERS,
        check_exit=0,
    )
    assert tree_bytes(prepared.dataset) == before
    last_run = json.loads((prepared.dataset / ".voicetune" / "last_run.json").read_text())
    # Only the corrupt file is tried again (a decoder might have been installed since).
    assert last_run["processed_sources"] == 1 and last_run["transcribed_seconds"] == 0
    assert last_run["resumed_sources"] == 8
    assert "skipped 8 already done" in result.stdout


@pytest.mark.slow
def test_new_recording_is_added_without_touching_the_others(prepared, corpus, whisper_model, tmp_path, espeak_cache):
    from voicetune.demo.recordings import build_recording, talk_plan

    dataset = tmp_path / "dataset"
    shutil.copytree(prepared.dataset, dataset)
    before = tree_bytes(dataset / "wavs")
    val_before = set((dataset / "metadata_val.csv").read_text().splitlines())
    new = tmp_path / "more" / "new_take.wav"
    new.parent.mkdir()
    recording = build_recording(talk_plan(4, [0.5], first=7), cache_dir=espeak_cache)
    sf.write(new, recording.samples, recording.sample_rate)
    inputs = [f.path for f in corpus.values()] + [new]
    result = voicetune(
        "prepare", *inputs, "--out", dataset, "--whisper-model", whisper_model, "--workers", "1", check_exit=0
    )
    last_run = json.loads((dataset / ".voicetune" / "last_run.json").read_text())
    assert last_run["processed_sources"] == 2  # the new take, and the corrupt file tried again
    after = tree_bytes(dataset / "wavs")
    assert {k: v for k, v in after.items() if k in before} == before
    added = set(after) - set(before)
    assert added and all(name.startswith("new_take_") for name in added), result.stdout
    # The split is decided per clip id: adding clips moves no old clip between train and val.
    old_ids = {name[:-4] for name in before}
    val_after = {row for row in (dataset / "metadata_val.csv").read_text().splitlines() if row.split("|")[0] in old_ids}
    assert val_after == val_before


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_dataset(prepared, corpus, whisper_model, tmp_path):
    """kill -9 in the middle of a prepare, rerun: the result is what an uninterrupted run made."""
    inputs = [corpus[name].path for name in ("studio.wav", "note.opus", "interview.mp4")]
    dataset = tmp_path / "dataset"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicetune",
            "prepare",
            *map(str, inputs),
            "--out",
            str(dataset),
            "--whisper-model",
            str(whisper_model),
            "--workers",
            WHISPER_WORKERS,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    records = dataset / ".voicetune" / "sources"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (records.is_dir() and any(records.glob("*.json"))):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the worker processes too
    process.wait()
    done_before_kill = len(list(records.glob("*.json")))
    assert 1 <= done_before_kill < 3, "the kill should land between the first and the last source"
    result = voicetune(
        "prepare",
        *inputs,
        "--out",
        dataset,
        "--whisper-model",
        whisper_model,
        "--workers",
        WHISPER_WORKERS,
        check_exit=0,
    )
    assert f"skipped {done_before_kill} already done" in result.stdout
    resumed = tree_bytes(dataset / "wavs")
    reference = {
        name: data
        for name, data in tree_bytes(prepared.dataset / "wavs").items()
        if name.startswith(("studio_", "note_", "interview_"))
    }
    assert resumed == reference
    assert not list(dataset.rglob(".tmp-*"))


@pytest.mark.slow
def test_ctrl_c_stops_the_files_in_progress_and_the_same_command_finishes(real_corpus, whisper_model, tmp_path):
    """Ctrl-C while files are prepared side by side: prepare says how to go on and exits 130 without
    running the files in progress to their end (each thread stops after its current batch), keeps
    only whole files, leaves no temporary file; the same command then prepares the rest."""
    folder = next(iter(real_corpus.values())).path.parents[1]
    dataset = tmp_path / "dataset"
    command = ["prepare", str(folder), "--out", str(dataset), "--whisper-model", str(whisper_model), "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    process = subprocess.Popen(
        [sys.executable, "-m", "voicetune", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    records = dataset / ".voicetune" / "sources"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (records.is_dir() and any(records.glob("*.json"))):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130 and "run the same command again" in stderr, stderr
    # The longest file was in progress and the next one had just started when the first file was
    # done: running the files in progress to their end would record three of the four.
    done = len(list(records.glob("*.json")))
    assert 1 <= done <= 2, f"{done} files recorded: the files in progress ran on after Ctrl-C"
    assert not list(dataset.rglob(".tmp-*"))
    result = voicetune(*command, check_exit=0)
    assert f"skipped {done} already done" in result.stdout
    assert len(list(records.glob("*.json"))) == len(real_corpus)


def test_other_settings_on_an_existing_dataset_is_exit_2(tmp_path, corpus, whisper_model):
    dataset = tmp_path / "dataset"
    voicetune("prepare", corpus["silence.wav"].path, "--out", dataset, "--whisper-model", whisper_model, check_exit=1)
    result = voicetune(
        "prepare",
        corpus["silence.wav"].path,
        "--out",
        dataset,
        "--whisper-model",
        whisper_model,
        "--sample-rate",
        "22050",
        check_exit=2,
    )
    assert "--sample-rate 24000 (now 22050)" in result.stderr
    assert "Traceback" not in result.stderr


def test_out_folder_with_other_files_is_exit_2(tmp_path, corpus, whisper_model):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"cat")
    result = voicetune(
        "prepare",
        corpus["silence.wav"].path,
        "--out",
        tmp_path / "photos",
        "--whisper-model",
        whisper_model,
        check_exit=2,
    )
    assert "not a voicetune dataset" in result.stderr


def test_nothing_kept_is_exit_1_with_reasons(tmp_path, corpus, whisper_model):
    dataset = tmp_path / "dataset"
    result = voicetune(
        "prepare",
        corpus["silence.wav"].path,
        corpus["corrupt.mp3"].path,
        "--out",
        dataset,
        "--whisper-model",
        whisper_model,
        check_exit=1,
    )
    assert "no clip kept" in result.stderr
    reasons = {r["reason"] for r in json.loads((dataset / "report.json").read_text())["rejections"]}
    assert reasons == {"silent", "unreadable"}


def test_missing_input_is_exit_2(tmp_path, whisper_model):
    result = voicetune(
        "prepare", tmp_path / "nope.wav", "--out", tmp_path / "dataset", "--whisper-model", whisper_model, check_exit=2
    )
    assert "nope.wav" in result.stderr and "no such file" in result.stderr


def test_whisper_model_name_offline_is_exit_2_asking_for_a_local_path(tmp_path, corpus):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("VOICETUNE_WHISPER_MODEL", None)
    result = voicetune(
        "prepare",
        corpus["note.opus"].path,
        "--out",
        tmp_path / "dataset",
        "--whisper-model",
        "base",
        env=env,
        check_exit=2,
    )
    assert "--whisper-model base" in result.stderr and "local" in result.stderr
    assert not (tmp_path / "dataset").exists()


def test_more_workers_than_cores_are_lowered_with_a_warning(tmp_path, corpus, whisper_model):
    result = voicetune(
        "prepare",
        corpus["silence.wav"].path,
        "--out",
        tmp_path / "dataset",
        "--whisper-model",
        whisper_model,
        "--workers",
        "512",
        check_exit=1,
    )
    assert "--workers 512 is more than the" in result.stderr


def test_bad_flag_values_are_exit_2(tmp_path, corpus, whisper_model):
    for flags, flag in (
        (["--min-seconds", "9", "--max-seconds", "6"], "--min-seconds"),
        (["--transcriber", "magic"], "--transcriber"),
        (["--max-seconds", "40", "--min-seconds", "10"], "--max-seconds"),
        (["--val-fraction", "1.5"], "--val-fraction"),
    ):
        result = voicetune(
            "prepare",
            corpus["silence.wav"].path,
            "--out",
            tmp_path / "d",
            "--whisper-model",
            whisper_model,
            *flags,
            check_exit=2,
        )
        assert flag in result.stderr, result.stderr
