"""Library functions the studio added (the CLI uses them too): workspace confinement, bind safety,
dataset edits through the prepare records, training started, found, stopped and followed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from support.harness import TOY_MODEL, cli_env, run_cli, wait_until
from voicetune.errors import RunLockedError, UsageError

# ---- workspace confinement and bind safety --------------------------------------------------


def test_paths_that_leave_the_workspace_are_refused(tmp_path):
    from voicetune.studio.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ws.root / "recordings" / "link_out").symlink_to(outside)
    for typed in ("../elsewhere", str(outside), "/etc", "recordings/../../elsewhere", "recordings/link_out"):
        with pytest.raises(UsageError, match="outside the workspace"):
            ws.inside(typed, "folder")
    assert ws.inside("recordings/mine", "folder") == ws.root / "recordings" / "mine"
    assert ws.inside(str(ws.root / "datasets"), "folder") == ws.root / "datasets"
    with pytest.raises(UsageError, match="dataset name"):
        ws.named("datasets", "../escape")


def test_upload_above_the_limit_is_refused_and_not_copied(tmp_path):
    from voicetune.studio.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    upload = tmp_path / "big.wav"
    upload.write_bytes(b"x" * 3000)
    with pytest.raises(UsageError, match="upload limit"):
        ws.take_upload(upload, "voice", max_bytes=2000)
    assert not (ws.root / "recordings" / "voice" / "big.wav").exists()
    assert ws.take_upload(upload, "voice", max_bytes=4000).read_bytes() == upload.read_bytes()


def test_the_whisper_model_shown_is_the_one_used(tmp_path, monkeypatch):
    """Not `small` (which cannot be downloaded offline) when a dataset or run says which it used."""
    from voicetune.studio.app import _saved_form
    from voicetune.studio.workspace import Workspace

    monkeypatch.delenv("VOICETUNE_WHISPER_MODEL", raising=False)
    ws = Workspace.open(tmp_path / "ws")
    assert ws.whisper_model() == "small"  # nothing says otherwise
    settings = ws.root / "datasets" / "mine" / ".voicetune" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"whisper_model": "/models/whisper-base-ct2", "language": "es"}))
    assert ws.whisper_model() == "/models/whisper-base-ct2"  # the dataset prepared from the CLI
    run = ws.root / "runs" / "cli_run"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"whisper_model": "/models/other", "data": "x/mine"}}))
    assert _saved_form(run)["whisper_model"] == "/models/other"  # the Train page shows the run's
    assert ws.remember_whisper_model("medium") == "medium" and ws.whisper_model() == "medium"


def test_a_run_trained_from_the_command_line_shows_its_train_log(tmp_path):
    from voicetune.train import control

    run = tmp_path / "run"
    run.mkdir()
    assert control.output_log(run) is None
    (run / "train.log").write_text("step 2/2  loss 0.5\n")
    assert control.output_log(run) == run / "train.log"
    started = run / control.TRAIN_LOG  # a later session the studio started
    started.write_text("new run\n")
    os.utime(started, (os.path.getmtime(run / "train.log") + 5,) * 2)
    assert control.output_log(run) == started


def test_only_loopback_is_served_without_a_password():
    from voicetune.studio.workspace import check_bind

    assert check_bind("127.0.0.1", None) is None
    assert check_bind("::1", None) is None
    assert check_bind("0.0.0.0", "me:secret") == ("me", "secret")
    with pytest.raises(UsageError, match="--auth"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UsageError, match="USER:PASSWORD"):
        check_bind("127.0.0.1", "no-colon")


def test_studio_command_refuses_a_public_address_without_auth(tmp_path):
    result = run_cli("studio", "--workspace", str(tmp_path / "ws"), "--host", "0.0.0.0", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--host 0.0.0.0" in result.stderr and "--auth" in result.stderr
    assert "Traceback" not in result.stderr


# ---- dataset edits --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared_once(recordings, tmp_path_factory) -> Path:
    dataset = tmp_path_factory.mktemp("prepared") / "dataset"
    result = run_cli(
        "prepare", *map(str, recordings), "--out", str(dataset), "--transcriber", "none", "--workers", "1", timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dataset


@pytest.fixture()
def prepared(prepared_once, tmp_path) -> Path:
    """A fresh copy of the prepared dataset for each test (they edit it)."""
    import shutil

    return Path(shutil.copytree(prepared_once, tmp_path / "dataset"))


def _metadata_texts(path: Path) -> dict[str, str]:
    return {line.split("|")[0]: line.split("|")[1] for line in path.read_text(encoding="utf-8").splitlines()}


def test_transcript_edit_reaches_metadata_and_split_and_survives_prepare(prepared, recordings):
    from voicetune.data.edit import list_clips, set_transcript

    clip = list_clips(prepared)[0]
    report = set_transcript(prepared, clip.clip_id, "  The  corrected   words. ")
    assert report["check"]["ok"]
    assert _metadata_texts(prepared / "metadata.csv")[clip.clip_id] == "The corrected words."
    splits = {**_metadata_texts(prepared / "metadata_train.csv"), **_metadata_texts(prepared / "metadata_val.csv")}
    assert splits[clip.clip_id] == "The corrected words."
    manifest = {
        json.loads(line)["id"]: json.loads(line) for line in (prepared / "manifest.jsonl").read_text().splitlines()
    }
    assert manifest[clip.clip_id]["text"] == "The corrected words."
    # prepare again over the same recordings: the records are the dataset, so the edit stays.
    result = run_cli(
        "prepare", *map(str, recordings), "--out", str(prepared), "--transcriber", "none", "--workers", "1"
    )
    assert result.returncode == 0, result.stderr
    assert _metadata_texts(prepared / "metadata.csv")[clip.clip_id] == "The corrected words."


def test_removed_clip_leaves_every_file_and_comes_back_unchanged(prepared):
    from voicetune.data.edit import list_clips, remove_clip, restore_clip, set_transcript

    clip = list_clips(prepared)[1]
    audio = clip.wav.read_bytes()
    before = (prepared / "metadata.csv").read_text()
    report = remove_clip(prepared, clip.clip_id)
    assert clip.clip_id not in _metadata_texts(prepared / "metadata.csv")
    assert not (prepared / "wavs" / f"{clip.clip_id}.wav").exists()
    assert report["totals"]["clips"] == len(before.splitlines()) - 1
    assert report["check"]["ok"]
    with pytest.raises(UsageError, match="removed"):
        set_transcript(prepared, clip.clip_id, "text of a removed clip")
    restore_clip(prepared, clip.clip_id)
    assert (prepared / "metadata.csv").read_text() == before
    assert (prepared / "wavs" / f"{clip.clip_id}.wav").read_bytes() == audio


def test_edit_of_an_unknown_clip_or_an_empty_text_is_refused(prepared):
    from voicetune.data.edit import list_clips, set_transcript

    before = (prepared / "metadata.csv").read_text()
    with pytest.raises(UsageError, match="no such clip"):
        set_transcript(prepared, "nope_000", "words")
    with pytest.raises(UsageError, match="empty"):
        set_transcript(prepared, list_clips(prepared)[0].clip_id, "   ")
    assert (prepared / "metadata.csv").read_text() == before


def test_dataset_edit_commands(prepared):
    from voicetune.data.edit import list_clips

    clip = list_clips(prepared)[0].clip_id
    result = run_cli("dataset", "edit", str(prepared), clip, "--text", "Words from the command line.")
    assert result.returncode == 0, result.stderr
    assert _metadata_texts(prepared / "metadata.csv")[clip] == "Words from the command line."
    assert run_cli("dataset", "remove", str(prepared), clip).returncode == 0
    assert clip not in _metadata_texts(prepared / "metadata.csv")
    assert run_cli("dataset", "restore", str(prepared), clip).returncode == 0
    assert clip in _metadata_texts(prepared / "metadata.csv")


# ---- training as a process of its own -------------------------------------------------------


def test_training_started_detached_is_found_by_its_lock_and_stopped_cleanly(toy_corpus, tmp_path, monkeypatch):
    from voicetune.train import control

    for key, value in cli_env().items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "run"
    pid = control.start_training(
        run,
        {
            "data": str(toy_corpus),
            "model": TOY_MODEL,
            "max_updates": 100000,
            "batch_size": 4,
            "workers": 0,
            "save_every": 100000,
            "last_every": 100000,
        },
    )
    try:
        _follow_and_stop(control, run, pid, toy_corpus)
    finally:
        if control._alive(pid):
            os.killpg(pid, signal.SIGKILL)


def _follow_and_stop(control, run: Path, pid: int, toy_corpus: Path) -> None:
    assert os.getsid(pid) == pid  # a session of its own: the starter's death or Ctrl-C never reaches it
    assert wait_until(lambda: control.read_holder(run).get("pid") == pid, timeout=120)
    assert wait_until(lambda: control.training_progress(run).step >= 3, timeout=120)
    control._started.clear()  # forget having started it: it is found through RUN/LOCK alone
    assert control.running_trainer(run)["pid"] == pid
    with pytest.raises(RunLockedError, match="being trained"):
        control.start_training(run, {"data": str(toy_corpus), "model": TOY_MODEL})
    assert control.stop_training(run) == pid
    assert wait_until(lambda: control.running_trainer(run) is None, timeout=120)
    assert wait_until(lambda: not control._alive(pid), timeout=60)  # it prints its last line after unlocking
    log = (run / control.TRAIN_LOG).read_text()
    assert "stopped by SIGTERM" in log and "after a clean checkpoint" in log, log
    assert any((run / "checkpoints").glob("step_*")), "SIGTERM left no checkpoint"
    progress = control.training_progress(run)
    assert progress.max_updates == 100000 and progress.loss is not None
    with pytest.raises(UsageError, match="no training is running"):
        control.stop_training(run)
    # A new run never lands on an old one's checkpoints, and a resume needs something to resume.
    with pytest.raises(UsageError, match="already has checkpoints"):
        control.start_training(run, {"data": str(toy_corpus), "model": TOY_MODEL}, resume=False)
    with pytest.raises(UsageError, match="no checkpoint to resume"):
        control.start_training(run.with_name("fresh"), {"data": str(toy_corpus), "model": TOY_MODEL}, resume=True)
    assert not control._started, "a refused start started a process"


@pytest.mark.parametrize("name", ["f5-tiny", "xtts-tiny", "chatterbox-tiny"])
def test_auto_settings_know_the_real_size_of_the_tiny_models(name):
    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter
    from voicetune.train.auto_settings import size_estimate

    model = create_adapter(TrainConfig.resolve({"model": name})).build_model()
    estimate = size_estimate(name)
    assert (estimate.parameters, estimate.trainable) == (
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


def test_every_model_the_train_page_offers_has_auto_settings_and_a_disk_projection():
    """The Train page lists the registry's models; each adapter gives the sizes its auto settings
    and disk projection come from (nothing is built or downloaded)."""
    from voicetune.models.registry import model_names
    from voicetune.train.auto_settings import GIB, Machine, auto_settings, projected_disk_bytes

    assert {"f5-tiny", "xtts-tiny", "chatterbox-tiny", "chatterbox"} <= set(model_names())
    for name in model_names():
        on_gpu = auto_settings(name, 1000, Machine(24 * GIB, 8))
        assert on_gpu["save_every"] == 200 and (on_gpu.get("batch_size") or on_gpu.get("batch_frames")), name
        assert projected_disk_bytes(name, None, 1000, 200, 50, 3, None, "full") > 0


def test_dataset_score_flags_sort_the_clip_table_and_survive_an_edit(prepared):
    """What `dataset score` (prepare --score) found joins prepare's own flags, so "flags first"
    shows the other speaker first; a later edit keeps the finding for the clips still there."""
    from voicetune.data.edit import list_clips, remove_clip

    clips = list_clips(prepared)
    suspect, other = clips[-1], clips[0]
    report_path = prepared / "report.json"
    report = json.loads(report_path.read_text())
    report["score"] = {"flagged": 1, "flagged_clips": [{"id": suspect.clip_id, "flags": ["other_speaker"]}]}
    report_path.write_text(json.dumps(report))
    listed = {c.clip_id: c for c in list_clips(prepared)}
    assert "other_speaker" in listed[suspect.clip_id].flags and "other_speaker" not in listed[other.clip_id].flags
    remove_clip(prepared, other.clip_id)
    assert "other_speaker" in {c.clip_id: c for c in list_clips(prepared)}[suspect.clip_id].flags


def test_a_removed_clip_keeps_its_place_in_the_clip_list_until_sorted_last(prepared):
    from voicetune.data.edit import list_clips, remove_clip
    from voicetune.studio.views import clip_page, page_of

    ids = [c.clip_id for c in list_clips(prepared)]
    first = ids[0]
    remove_clip(prepared, first)
    clips = list_clips(prepared)
    by_id = clip_page(clips, "id", 1, per_page=2)
    assert [c.clip_id for c in by_id.clips] == ids[:2] and by_id.clips[0].removed
    assert page_of(clips, "id", first, per_page=2) == 1
    last = (len(ids) + 1) // 2
    assert page_of(clips, "removed last", first, per_page=2) == last
    assert clip_page(clips, "removed last", 99, per_page=2).number == last  # a page past the end: the last one
    with pytest.raises(UsageError, match="sort clips by 'newest'"):
        clip_page(clips, "newest", 1, per_page=2)
