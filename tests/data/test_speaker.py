"""`prepare --speaker REF.wav|auto` on recorded voices: an interview of the Spanish prompts (the
target voice, who speaks most) answered by the French and Italian ones, with hold music between
turns. A kept clip must hold the Spanish voice alone; the Spanish prompts must end up in clips.

Measured with whisper-base and the GE2E encoder on 1.5 s windows: precision 1.0 (10 of 10 clips
hold the target voice alone), recall 0.947 with the reference and with auto (18 of the 19 Spanish
prompts in a kept clip; the one missed, 2.3 s between two guests' turns, is too short for a clip).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soxr
from real_speech import PROMPT_RATE, build_interview, load_prompts, write_prompts

from support.harness import WHISPER_WORKERS, voicetune
from voicetune.data import speaker
from voicetune.data.segment import ClipLimits, SpeechDetector

MIN_PRECISION = 0.95
MIN_RECALL = 0.8  # the goal of issue 30; measured 0.947 (18 of 19 prompts)


@pytest.fixture(scope="module")
def interview(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voices")
    return build_interview(folder / "recordings" / "interview.wav"), write_prompts(
        folder / "host.wav", "es", 120, 3
    ).path


def _prepare(interview, whisper_model, out: Path, voice: str):
    recording, _ = interview
    result = voicetune(
        "prepare",
        recording.recording.path.parent,
        "--out",
        out,
        "--whisper-model",
        whisper_model,
        "--language",
        "es",
        "--speaker",
        voice,
        "--workers",
        WHISPER_WORKERS,
        check_exit=0,
    )
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return result, manifest, json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def with_reference(interview, whisper_model, tmp_path_factory):
    return _prepare(interview, whisper_model, tmp_path_factory.mktemp("ref") / "dataset", str(interview[1]))


def _precision_recall(recording, manifest) -> tuple[float, float]:
    voices = [recording.voices_between(clip["start"], clip["end"]) for clip in manifest]
    pure = sum(1 for v in voices if v and set(v) == {"es"})
    kept_prompts = sum(v.count("es") for v in voices if set(v) == {"es"})
    return pure / len(manifest), kept_prompts / recording.voices.count("es")


@pytest.mark.slow
def test_reference_keeps_the_host_alone(with_reference, interview):
    _, manifest, _ = with_reference
    precision, recall = _precision_recall(interview[0], manifest)
    print(f"\n--speaker REF.wav: precision {precision:.3f}, recall {recall:.3f} ({len(manifest)} clips)")
    assert precision >= MIN_PRECISION
    assert recall >= MIN_RECALL


@pytest.mark.slow
def test_other_voices_are_listed_with_their_similarity(with_reference, interview):
    recording, _ = interview
    result, _, report = with_reference
    left = [r for r in report["rejections"] if r["reason"] == "other_speaker"]
    # Every French and Italian prompt lies in a stretch left out as another voice.
    guests = [s for s, v in zip(recording.recording.recording.stretches, recording.voices) if v != "es"]
    for stretch in guests:
        middle = (stretch.start + stretch.end) / 2
        assert any(r["start"] <= middle < r["end"] for r in left), stretch.text
    assert all(r["similarity"] < speaker.SAME_VOICE for r in left)
    assert report["speaker"]["left_out"] == len([r for r in report["rejections"] if r["reason"] in speaker.REASONS])
    assert report["speaker"]["voice"] == str(interview[1])
    assert "other_speaker" in result.stdout and "speaker: kept the voice of" in result.stdout


@pytest.mark.slow
def test_report_estimates_purity_and_shows_the_borderline_decisions(with_reference):
    _, manifest, report = with_reference
    voice = report["speaker"]
    assert 0.9 <= voice["estimated_purity"] <= 1.0
    left = [r for r in report["rejections"] if r["reason"] in speaker.REASONS]
    for reason in speaker.REASONS:
        assert voice["seconds_left_out_by_reason"][reason] == pytest.approx(
            sum(r["seconds"] for r in left if r["reason"] == reason), abs=1e-3
        )
    # The decisions are the judgements of a voice: each kept clip, each stretch left out as another
    # voice. Where two voices meet (speaker_change) is no such judgement, whatever its p_target.
    borderline = voice["borderline"]
    assert len(borderline) == 5
    judged = [c["p_target"] for c in manifest] + [r["p_target"] for r in left if r["reason"] in speaker.JUDGED_REASONS]
    nearest = sorted(abs(p - 0.5) for p in judged)[:5]
    assert [abs(d["p_target"] - 0.5) for d in borderline] == pytest.approx(nearest, abs=1e-3)
    for decision in borderline:
        assert decision["end"] > decision["start"]
        if decision["decision"] == "kept":
            assert (
                decision["overrule"].startswith("voicetune dataset remove ")
                and decision["clip"] in decision["overrule"]
            )


@pytest.mark.slow
def test_auto_keeps_the_voice_that_speaks_most(interview, whisper_model, tmp_path):
    _, manifest, _ = _prepare(interview, whisper_model, tmp_path / "dataset", "auto")
    precision, recall = _precision_recall(interview[0], manifest)
    print(f"\n--speaker auto: precision {precision:.3f}, recall {recall:.3f} ({len(manifest)} clips)")
    assert precision >= MIN_PRECISION
    assert recall >= MIN_RECALL
    stored = json.loads((tmp_path / "dataset" / ".voicetune" / speaker.TARGET_FILE).read_text())
    assert stored["speaker"] == "auto" and len(stored["embedding"]) == 256


@pytest.mark.slow
def test_dataset_check_shows_what_was_left_out(with_reference, tmp_path):
    dataset = Path(with_reference[2]["check"]["dataset"])
    shown = voicetune("dataset", "check", dataset, check_exit=0)
    assert "left out by prepare" in shown.stdout and "other_speaker" in shown.stdout
    as_json = json.loads(voicetune("dataset", "check", dataset, "--json", check_exit=0).stdout)
    assert (
        as_json["stats"]["left_out"]["other_speaker"]["count"]
        == with_reference[2]["rejections_by_reason"]["other_speaker"]["count"]
    )


@pytest.mark.slow
def test_another_speaker_setting_on_the_dataset_is_exit_2(with_reference, whisper_model, interview):
    recording, _ = interview
    dataset = Path(with_reference[2]["check"]["dataset"])
    result = voicetune(
        "prepare",
        recording.recording.path.parent,
        "--out",
        dataset,
        "--whisper-model",
        whisper_model,
        "--language",
        "es",
        "--speaker",
        "auto",
        check_exit=2,
    )
    assert "--speaker" in result.stderr


def _speech(*parts) -> np.ndarray:
    """Prompts (arrays at 8 kHz) and pauses (seconds) end to end, at 16 kHz."""
    pieces = [np.zeros(int(p * PROMPT_RATE), np.float32) if isinstance(p, float) else p for p in parts]
    return soxr.resample(np.concatenate(pieces), PROMPT_RATE, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def host_voice(interview):
    return speaker.reference_voice(interview[1], speaker.encoder())


def test_a_voice_change_without_a_pause_leaves_the_clip_out(host_voice):
    es, fr = load_prompts("es"), load_prompts("fr")
    # The host's third prompt runs straight into a guest's answer: one stretch of speech, two voices.
    audio = _speech(
        0.5,
        es[0].samples,
        0.8,
        es[1].samples,
        1.0,
        es[2].samples,
        fr[0].samples,
        1.0,
        es[3].samples,
        0.7,
        es[4].samples,
        0.5,
    )
    change_at = (0.5 + 0.8 + 1.0) + sum(p.duration for p in es[:3])
    guest_end = change_at + fr[0].duration
    plan, _, left, _ = speaker.segment_target_voice(
        audio, SpeechDetector(), ClipLimits(5, 15), host_voice, speaker.encoder(), "talk.wav"
    )
    # The guest's part of the stretch is left out, cut within a window (1.5 s) of the change.
    guest = [r for r in left if r["reason"] == "other_speaker"]
    assert len(guest) == 1
    assert abs(guest[0]["start"] - change_at) < speaker.WINDOW_SECONDS and guest[0]["end"] >= guest_end - 0.3
    assert not any(c.start < change_at < c.end for c in plan.clips)
    assert not any(c.speech_start < guest_end - 0.5 and c.speech_end > change_at + 0.5 for c in plan.clips)
    # The host's speech is kept but for the window where the voices meet.
    host = sum(p.duration for p in es[:5])
    kept = sum(c.speech_end - c.speech_start for c in plan.clips)
    assert kept >= host - speaker.WINDOW_SECONDS


def test_one_voice_loses_nothing(host_voice):
    es = load_prompts("es")
    audio = _speech(
        0.5, es[5].samples, 0.6, es[6].samples, 1.2, es[7].samples, 0.4, es[8].samples, 0.9, es[9].samples, 0.5
    )
    plan, _, left, _ = speaker.segment_target_voice(
        audio, SpeechDetector(), ClipLimits(5, 15), host_voice, speaker.encoder(), "host.wav"
    )
    assert left == []
    assert sum(c.speech_end - c.speech_start for c in plan.clips) >= 0.95 * sum(p.duration for p in es[5:10])


def test_bad_speaker_values_are_exit_2(tmp_path, interview, whisper_model):
    folder = interview[0].recording.path.parent
    missing = voicetune(
        "prepare",
        folder,
        "--out",
        tmp_path / "a",
        "--speaker",
        tmp_path / "nobody.wav",
        "--whisper-model",
        whisper_model,
        check_exit=2,
    )
    assert "--speaker" in missing.stderr and "nobody.wav" in missing.stderr
    whole_files = voicetune(
        "prepare", folder, "--out", tmp_path / "b", "--speaker", "auto", "--transcriber", "none", check_exit=2
    )
    assert "--speaker" in whole_files.stderr and "--transcriber" in whole_files.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_studio_data_page_shows_the_voices_left_out(with_reference):
    from voicetune.studio.app import _report_markdown

    report = with_reference[2]
    page = _report_markdown(report)
    closest = report["speaker"]["most_like_the_voice_kept"][0]
    assert "voice kept:** the voice of host.wav" in page
    assert (
        f"{closest['start']:.1f}-{closest['end']:.1f} s: {closest['reason']}, similarity {closest['similarity']:.2f}"
        in page
    )
    # What the issue asks of the Data page: the purity, the seconds per reason, the decisions to overrule.
    assert f"estimated purity {report['speaker']['estimated_purity']:.1%}" in page
    assert all(f"{reason} " in page for reason in speaker.REASONS)
    assert all(f"`{d['overrule']}`" in page for d in report["speaker"]["borderline"])


def test_a_file_without_the_voice_gives_no_clip(host_voice):
    """A file where only a guest speaks (one voice, but not the host's) is all left out."""
    fr = load_prompts("fr")
    audio = _speech(
        0.5, fr[20].samples, 0.7, fr[21].samples, 0.7, fr[22].samples, 0.7, fr[23].samples, 0.7, fr[24].samples, 0.5
    )
    plan, _, left, _ = speaker.segment_target_voice(
        audio, SpeechDetector(), ClipLimits(5, 15), host_voice, speaker.encoder(), "guest.wav"
    )
    assert plan.clips == []
    assert len(left) == 5 and {r["reason"] for r in left} == {"other_speaker"}


def test_auto_takes_the_voice_that_speaks_most_over_all_files():
    """In the second file a guest speaks more than the host; over both files the host speaks most,
    and in the second file it is the host's stretches that are kept."""
    es, fr = load_prompts("es"), load_prompts("fr")
    embed, detector = speaker.encoder(), SpeechDetector()
    first = _speech(
        0.5, es[40].samples, 0.8, es[41].samples, 0.8, fr[40].samples, 0.8, es[42].samples, 0.8, es[43].samples, 0.5
    )
    second = _speech(0.5, fr[41].samples, 0.8, fr[42].samples, 0.8, es[44].samples, 0.8, fr[43].samples, 0.5)
    files = [speaker.file_windows(audio, detector, embed) for audio in (first, second)]
    chosen = speaker.main_voice(files, ["first.wav", "second.wav"])
    kinds = [p.kind for p in speaker.pieces(files[0], speaker.judge(files[0], chosen.embedding))]
    assert kinds == ["target", "target", "other", "target", "target"]  # host, host, guest, host, host
    pieces = speaker.pieces(files[1], speaker.judge(files[1], chosen.embedding))
    kept = [p for p in pieces if p.kind == "target"]
    host_at = 0.5 + 0.8 * 2 + fr[41].duration + fr[42].duration
    assert len(kept) == 1 and abs(kept[0].start - host_at) < 0.3 and abs(kept[0].end - host_at - es[44].duration) < 0.3
    assert chosen.share >= speaker.MAJORITY
    # Where the voice kept can be heard: a stretch of the host's alone.
    where = {"first.wav": 0, "second.wav": 1}[chosen.sample[0]]
    pieces = speaker.pieces(files[where], speaker.judge(files[where], chosen.embedding))
    assert any(
        p.kind == "target" and p.start - 0.1 <= chosen.sample[1] < chosen.sample[2] <= p.end + 0.1 for p in pieces
    )


def test_borderline_speech_left_out_is_planned_as_clips_to_restore():
    """Left-out speech that may be the target after all (report rows in time order) is planned as
    clips within runs of it, for `prepare` to set aside where `dataset restore` finds them."""
    from voicetune.data.segment import FrameEnergy

    audio = np.zeros(40 * 16000, np.float32)
    rows = [
        {"start": 2.0, "end": 5.0, "p_target": 0.4},
        {"start": 5.6, "end": 9.0, "p_target": 0.3},  # one run with the row before: 7 s of speech
        {"start": 20.0, "end": 21.5, "p_target": 0.6},  # alone and too short for a clip
    ]
    clips = speaker.borderline_clips(rows, 40.0, FrameEnergy(audio), ClipLimits(5, 15))
    assert len(clips) == 1
    assert clips[0].speech_start == 2.0 and clips[0].speech_end == 9.0
    assert clips[0].cut_before == clips[0].cut_after == "voice"


def test_the_report_counts_the_rows_left_out_and_shows_the_judgements_nearest_the_line(tmp_path):
    """The seconds per reason are the sums of the rejection rows; the borderline decisions are the
    kept clips and the stretches left out as another voice nearest p_target 0.5, each with how to
    overrule it. A change of voice (p_target near 0.5 by construction) is not among them."""
    from voicetune.data.report import speaker_summary

    def row(reason, start, end, p_target, **more):
        seconds = round(end - start, 3)
        return {"path": "talk.wav", "reason": reason, "seconds": seconds, "start": start, "end": end} | {
            "similarity": 0.8,
            "p_target": p_target,
            **more,
        }

    def clip(name, start, end, p_target):
        return {
            "id": name,
            "source": "talk.wav",
            "start": start,
            "end": end,
            "duration": end - start,
            "p_target": p_target,
        }

    rejections = [
        row("other_speaker", 10.0, 14.0, 0.3, clip="talk_003"),  # set aside: `dataset restore` brings it back
        row("speaker_change", 14.0, 14.8, 0.5),
        row("other_speaker", 20.0, 21.2, 0.25),  # a candidate, but too short for a clip
        row("other_speaker", 30.0, 35.0, 0.02),  # another voice
        {"path": "talk.wav", "reason": "too_short", "seconds": 1.0, "start": 40.0, "end": 41.0},
    ]
    kept = [clip("talk_000", 0.0, 6.0, 0.9), clip("talk_001", 50.0, 60.0, 0.99)]
    records = [{"path": "talk.wav", "clips": kept, "removed_clips": [clip("talk_003", 10.0, 14.0, 0.3)]}]
    summary = speaker_summary("ref.wav", rejections, kept, records, str(tmp_path))

    assert summary["seconds_left_out_by_reason"] == {"other_speaker": 10.2, "speaker_change": 0.8}
    assert summary["seconds_left_out"] == 11.0 and summary["left_out"] == 4
    assert summary["estimated_purity"] == round((0.9 * 6 + 0.99 * 10) / 16, 3)
    shown = [(d["decision"], d["start"], d["p_target"], d["overrule"]) for d in summary["borderline"]]
    assert shown == [
        ("left out", 10.0, 0.3, f"voicetune dataset restore {tmp_path} talk_003"),
        ("left out", 20.0, 0.25, "not restorable: 1.2 s, too short for a clip of its own"),
        ("kept", 0.0, 0.9, f"voicetune dataset remove {tmp_path} talk_000"),
        ("left out", 30.0, 0.02, f"not set aside: judged another voice (p_target under {speaker.BORDERLINE})"),
        ("kept", 50.0, 0.99, f"voicetune dataset remove {tmp_path} talk_001"),
    ]


def test_a_stretch_cut_where_the_voice_changes_ends_with_its_last_window_voice():
    """A stretch whose length is no multiple of the 10 ms grid: its last cell, shorter than the
    grid, is the voice of the windows over it (a middle past the stretch's end once read as another
    voice, a 2 ms `other_speaker` row with p_target 0.998)."""
    spans = [(0.0, 3.002)]
    windows, stretch_of = speaker.window_spans(spans)
    is_target = np.array([False, False, True, True])
    assert len(windows) == len(is_target)
    found = speaker.FileWindows(spans, windows, stretch_of, np.zeros((len(windows), 256), np.float32))
    judged = speaker.Judged(np.zeros(len(windows)), is_target, is_target.astype(np.float64))
    cut = speaker.pieces(found, judged)
    assert [p.kind for p in cut] == ["other", "change", "target"]
    assert cut[0].start == 0.0 and cut[-1].end == 3.002
    assert all(a.end == b.start for a, b in zip(cut, cut[1:]))
