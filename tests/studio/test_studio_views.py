"""What the studio's pages show, computed without a browser: the workspace's Whisper model, files
that lead out of the workspace, URLs a public studio refuses, checkpoint scores in the table and
the pickers, the kept evaluation sentences and the A/B view, milestone work in progress, and
`voicetune eval`'s picture beside what was scored."""

from __future__ import annotations

import shutil
import warnings

import pytest

from voicetune.errors import UsageError

# ---- the workspace ------------------------------------------------------------------------------


def test_a_symlink_inside_a_folder_that_leads_out_is_refused_by_name(tmp_path, recordings):
    from voicetune.studio.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    inner = ws.root / "recordings" / "inner"
    inner.mkdir()
    shutil.copyfile(recordings[0], inner / "mine.wav")
    (inner / "also_mine.wav").symlink_to(inner / "mine.wav")  # a link that stays inside is fine
    assert ws.folder_inside("recordings/inner") == inner
    (inner / "outside.wav").symlink_to(recordings[1])  # recordings live outside the workspace
    with pytest.raises(
        UsageError, match=r"recordings/inner/outside.wav in the folder is a symlink to .*outside the workspace"
    ):
        ws.folder_inside("recordings/inner")
    (inner / "outside.wav").unlink()
    (inner / "deeper").symlink_to(recordings[1].parent, target_is_directory=True)
    with pytest.raises(UsageError, match=r"recordings/inner/deeper in the folder is a symlink"):
        ws.folder_inside("recordings/inner")


def test_the_whisper_model_is_kept_per_workspace(tmp_path, monkeypatch):
    from voicetune.studio.workspace import Workspace

    monkeypatch.delenv("VOICETUNE_WHISPER_MODEL", raising=False)
    ws = Workspace.open(tmp_path / "ws")
    assert ws.whisper_model() == "small"
    assert ws.remember_whisper_model("  /models/whisper-base-ct2 ") == "/models/whisper-base-ct2"
    assert Workspace.open(tmp_path / "ws").whisper_model() == "/models/whisper-base-ct2"  # a restarted studio
    assert Workspace.open(tmp_path / "other").whisper_model() == "small"


def test_a_studio_open_to_other_machines_refuses_urls_of_this_machine_and_private_networks():
    from voicetune.studio.workspace import check_urls

    inner = [
        "http://127.0.0.1:8000/a.mp3",
        "http://localhost/a.mp3",
        "http://10.1.2.3/a.mp3",
        "http://192.168.1.20/a.mp3",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.mp3",
    ]
    for url in inner:
        assert check_urls([url], reachable_from_others=False) == [url]  # on loopback: the user's own machine
        with pytest.raises(UsageError, match="public addresses only"):
            check_urls([url], reachable_from_others=True)
    assert check_urls(["https://93.184.215.14/talk.mp3"], reachable_from_others=True) == [
        "https://93.184.215.14/talk.mp3"
    ]
    with pytest.raises(UsageError, match="http:// or https://"):
        check_urls(["file:///etc/passwd"], reachable_from_others=False)


# ---- checkpoints and their scores -----------------------------------------------------------------


def _row(name: str, step: int, best: bool = False, **extra):
    from voicetune.checkpoints.maintenance import CheckpointRow

    # As `ckpt list` builds them: the scores (and the weights they are of) in the manifest's metrics,
    # the best's step on a checkpoint that ties with it.
    tied_with = extra.pop("tied_with", None)
    metrics = {"val_loss": 1.25, **extra}
    return CheckpointRow(
        name,
        f"/run/checkpoints/{name}",
        step,
        "milestone",
        "full",
        5_000_000,
        metrics,
        None,
        best,
        "unverified",
        tied_with=tied_with,
    )


def test_the_checkpoint_table_shows_every_score_and_ema_when_the_weights_are_not_named():
    from voicetune.studio.views import CKPT_COLUMNS, checkpoint_table

    rows = [
        _row("step_00000004", 4, wer=0.5, similarity=0.61, dnsmos=2.345, score=0.4321),
        _row(
            "step_00000008",
            8,
            best=True,
            wer=0.25,
            similarity=0.7,
            dnsmos=2.5,
            score=0.61,
            weights="raw",
            score_spread=0.02,
            flags=["repeated_words"],
            tied_with=4,
        ),
        _row("step_00000010", 10),
    ]
    table = [dict(zip(CKPT_COLUMNS, r)) for r in checkpoint_table(rows)]
    assert [t["score"] for t in table] == ["0.432", "0.610", ""]
    assert [t["WER"] for t in table] == ["0.500", "0.250", ""]
    assert [t["similarity"] for t in table] == ["0.610", "0.700", ""]
    assert [t["DNSMOS"] for t in table] == ["2.35", "2.50", ""]
    assert [t["weights"] for t in table] == ["ema", "raw", ""]
    assert [t["spread"] for t in table] == ["", "±0.020", ""]
    assert [t["flags"] for t in table] == ["", "repeated_words", ""]
    assert [t["best"] for t in table] == ["", "★ tie with 4", ""]
    assert [t["val_loss"] for t in table] == ["1.2500"] * 3


def test_the_export_picker_names_the_best_and_each_checkpoint_with_its_scores():
    from voicetune.studio.views import export_choices

    choices = export_choices(
        [
            _row("step_00000004", 4, wer=0.5, similarity=0.61, dnsmos=2.3, score=0.43),
            _row("step_00000008", 8, best=True, wer=0.25, similarity=0.7, dnsmos=2.5, score=0.61),
        ]
    )
    assert choices == [
        ("the best (step_00000008 · score 0.610 · WER 0.250 · similarity 0.700 · DNSMOS 2.50 · ema)", ""),
        ("step_00000004 · score 0.430 · WER 0.500 · similarity 0.610 · DNSMOS 2.30 · ema", "step_00000004"),
        ("step_00000008 · score 0.610 · WER 0.250 · similarity 0.700 · DNSMOS 2.50 · ema", "step_00000008"),
    ]


# ---- the kept evaluation sentences and the A/B view ----------------------------------------------


def _kept_milestone(ws, recordings, step: int, gain: float, real_clips: list[str]):
    """A milestone's evaluation as the evaluator keeps it: two sentences (the recordings, quieter
    or louder per milestone, at 22.05 kHz as XTTS speaks) with their own scores."""
    import soundfile as sf

    from voicetune.evaluation import EvalResult, EvalSet
    from voicetune.evaluation.kept import keep_eval_audio
    from voicetune.scoring import Summary

    audio = [sf.read(p, dtype="float32")[0] * gain for p in recordings[:2]]
    eval_set = EvalSet(
        ["The first sentence.", "The second sentence."],
        real_clips,
        ["The first sentence."],
        str(recordings[2]),
        "ref",
        "en",
    )
    result = EvalResult(
        Summary(0.25, 0.1, 0.7, 2.5, 2),
        0.6,
        transcripts=["the first sentence", "the second sentence"],
        audio=audio,
        sample_rate=22050,
        clip_scores=[
            {"wer": 0.0, "cer": 0.0, "similarity": 0.71 * gain, "dnsmos": 2.4},
            {"wer": 0.5, "cer": 0.2, "similarity": 0.69, "dnsmos": 2.6},
        ],
    )
    return keep_eval_audio(ws.root / "runs" / "voice", step, result, eval_set), audio


def test_each_milestone_keeps_its_evaluation_sentences_small_and_the_ab_view_pairs_them(tmp_path, recordings):
    import soundfile as sf

    from voicetune.studio import views
    from voicetune.studio.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    real = ws.root / "datasets" / "voice" / "wavs" / "real_000.wav"
    real.parent.mkdir(parents=True)
    shutil.copyfile(recordings[0], real)
    folder, audio = _kept_milestone(ws, recordings, 4, 0.5, [str(real)])
    _kept_milestone(ws, recordings, 8, 1.0, [str(real)])

    for index, original in enumerate(audio):  # every sentence is there, whole, and far smaller than a wav
        kept, rate = sf.read(folder / f"sentence_{index:02d}.ogg")
        assert rate == 24000 and abs(len(kept) / rate - len(original) / 22050) < 0.05
        assert (folder / f"sentence_{index:02d}.ogg").stat().st_size < len(original) * 2 / 4  # PCM16 / 4
    assert [step for _, step in views.ab_choices(ws, "voice")] == [8, 4]

    view = views.ab_view(ws, "voice", 8, 4)
    assert (view.a.step, view.b.step) == (8, 4)
    assert [s.text for s in view.sentences] == ["The first sentence.", "The second sentence."]
    assert view.sentences[0].real_clip == real and view.sentences[1].real_clip is None  # an extra text: no recording
    assert view.sentences[1].no_clip == "no recording of this sentence: an extra evaluation text"
    assert view.sentences[0].a.audio == ws.root / "runs/voice/eval/step_00000008/sentence_00.ogg"
    assert view.sentences[0].b.audio == ws.root / "runs/voice/eval/step_00000004/sentence_00.ogg"
    assert (
        views.sentence_scores(view.sentences[0].b)
        == 'WER 0.000 · similarity 0.355 · DNSMOS 2.40 · heard: "the first sentence"'
    )
    with pytest.raises(UsageError, match="step 12 has no kept evaluation"):
        views.ab_view(ws, "voice", 8, 12)


def test_a_real_clip_outside_the_workspace_is_not_offered_in_the_ab_view(tmp_path, recordings):
    from voicetune.studio import views
    from voicetune.studio.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    _kept_milestone(ws, recordings, 4, 1.0, [str(recordings[0])])  # a dataset outside the workspace
    view = views.ab_view(ws, "voice", 4, 4)
    assert view.sentences[0].real_clip is None
    # the reason said is the real one (a run copied in), not "an extra evaluation text"
    assert "lies outside the workspace" in view.sentences[0].no_clip and str(recordings[0]) in view.sentences[0].no_clip


# ---- milestone work, warnings, eval's picture ---------------------------------------------------------


def test_milestone_work_is_readable_while_it_lasts_and_gone_after(tmp_path, caplog, capsys):
    import logging

    from voicetune.train.control import training_progress
    from voicetune.train.reporting import Reporter

    run = tmp_path / "run"
    run.mkdir()
    reporter = Reporter(run, run / "tensorboard", run / "metrics.jsonl", 0, 20, 1, save_every=10)
    try:
        assert training_progress(run).milestone_work is None
        with caplog.at_level(logging.INFO, logger="voicetune.train"):
            reporter.working(10, "scoring 3 of 8 takes (ema, seed 2)")
        first = training_progress(run).milestone_work
        line = "step 10: scoring 3 of 8 takes (ema, seed 2)"
        assert (first["step"], first["work"], first["line"]) == (10, "scoring 3 of 8 takes (ema, seed 2)", line)
        # the same line on the console, in train.log (the logger's) and for the studio
        assert line in capsys.readouterr().out and line in caplog.messages
        reporter.working(10, "measuring 8 takes (WER, similarity, DNSMOS)")
        second = training_progress(run).milestone_work
        assert second["line"] == "step 10: measuring 8 takes (WER, similarity, DNSMOS)"
        assert second["since"] == first["since"]
        reporter.milestone_done(3.0, 10)
        assert training_progress(run).milestone_work is None
    finally:
        reporter.close()


def test_python_warnings_go_to_the_log_not_the_terminal(tmp_path):
    """matplotlib's "No artists with labels found" leaked into the studio's training output: a
    warning raised under `voicetune` lands in the log file, while the same outside the CLI shows."""
    import subprocess
    import sys

    from support.harness import cli_env

    emit = "warnings.warn('No artists with labels found to put in legend.', UserWarning)"
    inside = f"import warnings; from voicetune import cli; cli.app.command('emit')(lambda: {emit}); cli.main(['emit'])"
    env = cli_env(XDG_CACHE_HOME=str(tmp_path))
    shown = subprocess.run([sys.executable, "-c", f"import warnings; {emit}"], env=env, capture_output=True, text=True)
    assert "No artists with labels found" in shown.stderr
    quiet = subprocess.run([sys.executable, "-c", inside], env=env, capture_output=True, text=True)
    assert quiet.returncode == 0 and "No artists" not in quiet.stderr + quiet.stdout, quiet.stderr
    assert "UserWarning: No artists with labels found" in (tmp_path / "voicetune" / "voicetune.log").read_text()


def test_the_eval_picture_has_whole_steps_and_no_warning_for_a_measure_never_taken(tmp_path):
    from voicetune.evaluation import plot_eval
    from voicetune.evaluation.sets import eval_figure
    from voicetune.plotting import pyplot
    from voicetune.scoring import Summary

    ceiling = Summary(None, None, 0.8, 3.0, 2)
    for steps in ([4], [4, 8, 12, 16], list(range(10, 210, 10))):
        rows = [{"step": s, "wer": None, "cer": None, "similarity": 0.6, "dnsmos": 2.0, "score": 0.4} for s in steps]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matplotlib's "No artists with labels found" would fail here
            figure = eval_figure(rows, ceiling, steps[-1], "run: scores")
            figure.canvas.draw()
        ticks = [t.get_text().replace("\u2212", "-") for t in figure.axes[3].get_xticklabels() if t.get_text()]
        pyplot().close(figure)
        assert ticks and all(t.lstrip("-").isdigit() for t in ticks), (steps, ticks)
        assert {int(t) for t in ticks} >= ({steps[0]} if len(steps) < 8 else set())
    plot_eval(rows, ceiling, tmp_path / "eval.png", 200, "run: scores")
    assert (tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_draws_beside_what_was_scored(tmp_path):
    from voicetune.evaluation import Target, default_plot_path

    run = tmp_path / "runs" / "me"
    assert default_plot_path([Target("r", 4, run / "checkpoints" / "step_00000004")]) == run / "eval-cli.png"
    assert default_plot_path([Target("r", 4, run)]) == run / "eval-cli.png"
    weights = tmp_path / "models" / "model_1250000.safetensors"
    assert (
        default_plot_path([Target("w", 0, weights, upstream=True)])
        == weights.parent / "model_1250000.safetensors.eval.png"
    )


def test_the_checkpoints_page_and_ckpt_list_say_what_each_comparison_found():
    from dataclasses import replace

    from voicetune.checkpoints.maintenance import comparison_lines
    from voicetune.checkpoints.policy import Comparison

    rows = [
        replace(_row("step_00000015", 15, score=0.032), compared=Comparison(45, "worse", -0.029, 0.008, 8)),
        _row("step_00000030", 30),  # not scored: nothing compared
        replace(_row("step_00000045", 45, best=True, score=0.061), compared=Comparison(15, "better", 0.029, 0.008, 8)),
    ]
    assert comparison_lines(rows) == [
        "step 15: worse than step 45: -0.029 ± 0.008 (paired, 8 pairs)",
        "step 45 (best): better than step 15: +0.029 ± 0.008 (paired, 8 pairs)",
    ]
