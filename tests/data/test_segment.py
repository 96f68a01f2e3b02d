"""Clip planning on speech stretches with known pauses, and silero-vad on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from voicetune.data.segment import (
    CUT_FORCED,
    CUT_PAUSE,
    ClipLimits,
    FrameEnergy,
    SpeechDetector,
    plan_clips,
    segment_speech,
)
from voicetune.demo.recordings import build_recording, talk_plan

LIMITS = ClipLimits(5.0, 15.0)
RATE = 16000


def quiet_audio(seconds: float, dips: list[float] = ()) -> FrameEnergy:
    """Energy of a steady tone with short silent dips at `dips` (seconds)."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    for dip in dips:
        audio[int((dip - 0.02) * RATE) : int((dip + 0.02) * RATE)] = 0
    return FrameEnergy(audio)


def assert_valid(plan, spans, limits=LIMITS):
    for clip in plan.clips:
        assert limits.fits(clip.duration), clip
    for a, b in zip(plan.clips, plan.clips[1:]):
        assert a.end <= b.start + 1e-9
    # every bit of speech is in a clip or reported dropped
    covered = sum(
        min(c.end, e) - max(c.start, s) for c in plan.clips for s, e in spans if min(c.end, e) > max(c.start, s)
    )
    dropped = sum(e - s for s, e in plan.dropped)
    assert covered + dropped == pytest.approx(sum(e - s for s, e in spans), abs=1e-6)


def test_cuts_go_in_the_longest_pauses():
    # 3 s of speech each, pauses of 0.3 s and 1.5 s alternating
    spans, t = [], 1.0
    for pause in [0.3, 1.5] * 4:
        spans.append((t, t + 3.0))
        t += 3.0 + pause
    plan = plan_clips(spans, t + 1, quiet_audio(t + 1), LIMITS)
    assert_valid(plan, spans)
    assert not plan.dropped
    assert all(c.cut_after == CUT_PAUSE for c in plan.clips[:-1])  # never in the 0.3 s pauses


def test_a_short_stretch_is_merged_with_a_neighbour():
    spans = [(0.5, 6.5), (7.0, 8.5), (10.5, 17.0)]  # the 1.5 s stretch cannot stand alone
    plan = plan_clips(spans, 18.0, quiet_audio(18.0), LIMITS)
    assert_valid(plan, spans)
    assert not plan.dropped and len(plan.clips) == 2
    assert plan.clips[0].speech_end == 8.5  # merged with the near one, not across the 2 s pause


def test_an_isolated_short_stretch_is_dropped_and_reported():
    spans = [(0.5, 8.0), (11.0, 13.0), (16.0, 23.0)]  # 3 s pauses around a 2 s stretch
    plan = plan_clips(spans, 24.0, quiet_audio(24.0), LIMITS)
    assert_valid(plan, spans)
    assert plan.dropped == [(11.0, 13.0)]


def test_a_clip_short_of_the_minimum_takes_more_of_the_silence_around_it():
    spans = [(1.0, 5.7)]  # 4.7 s of speech: 5.1 s with the usual padding, 5.0 is the minimum
    plan = plan_clips(spans, 7.0, quiet_audio(7.0), ClipLimits(5.2, 15.0))
    assert len(plan.clips) == 1 and plan.clips[0].duration == pytest.approx(5.2)


def test_running_speech_is_split_at_its_quietest_point():
    dips = [6.0, 12.7, 19.0, 26.3, 33.0]
    spans = [(0.5, 38.0)]  # no pause for 37.5 s
    plan = plan_clips(spans, 39.0, quiet_audio(39.0, dips), LIMITS)
    assert_valid(plan, spans)
    assert len(plan.clips) == 3
    cuts = [c.end for c in plan.clips[:-1]]
    assert all(c.cut_after == CUT_FORCED for c in plan.clips[:-1])
    assert all(min(abs(cut - dip) for dip in dips) < 0.02 for cut in cuts), cuts


def test_silero_finds_the_sentences_of_a_real_recording(tmp_path):
    recording = build_recording(talk_plan(6, [0.4, 1.0, 2.0]), cache_dir=tmp_path)
    audio = soxr.resample(recording.samples, recording.sample_rate, RATE)
    plan, _ = segment_speech(audio, SpeechDetector(), LIMITS)
    assert_valid(plan, [(s.start, s.end) for s in recording.stretches])
    for clip in plan.clips:  # every cut falls in a pause of the plan
        for edge in (clip.start, clip.end):
            assert not any(s.start + 0.02 < edge < s.end - 0.02 for s in recording.stretches)
    kept = sum(1 for s in recording.stretches if any(c.start <= s.start and s.end <= c.end for c in plan.clips))
    assert kept >= 5


def test_silence_and_noise_hold_no_speech():
    detector = SpeechDetector()
    rng = np.random.default_rng(0)
    assert detector.speech_spans(np.zeros(RATE * 5, np.float32)) == []
    assert detector.speech_spans((0.003 * rng.standard_normal(RATE * 5)).astype(np.float32)) == []


@pytest.mark.parametrize("language", ["es", "fr", "it"])
def test_real_prompts_with_short_pauses_are_cut_in_the_pauses(language):
    """Recorded prompts 0.7 s apart: every cut is in a pause, for F5's and XTTS's clip lengths."""
    from pathlib import Path

    from real_speech import PROMPT_RATE, build_real_recording, load_prompts

    recording = build_real_recording(load_prompts(language)[:10], [0.7], language, Path("unused.wav")).recording
    audio = soxr.resample(recording.samples, PROMPT_RATE, RATE).astype(np.float32)
    for limits in (ClipLimits(5.0, 15.0), ClipLimits(4.0, 11.5)):
        plan, _ = segment_speech(audio, SpeechDetector(), limits)
        assert plan.clips
        assert not [c for c in plan.clips if CUT_FORCED in (c.cut_before, c.cut_after)]
