"""Ingest: decoding every format to mono at the target rate, loudness, clipping, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from voicetune.data.ingest import SourceRejected, find_sources, load_source, measure_loudness


@pytest.mark.parametrize(
    "name", ["talk.mp3", "run_on.flac", "phone/call.wav", "studio.wav", "interview.mp4", "note.opus"]
)
def test_every_format_decodes_to_mono_at_the_target_rate_in_time(corpus, name):
    corpus_file = corpus[name]
    audio = load_source(corpus_file.path, 24000, -23.0)
    reference = corpus_file.recording
    assert audio.samples.ndim == 1 and audio.sample_rate == 24000
    assert audio.duration == pytest.approx(reference.duration, abs=0.01)
    assert len(audio.analysis) / 16000 == pytest.approx(reference.duration, abs=0.01)
    # Aligned with the original: the first word starts where it was put (encoder delays undone).
    first = reference.stretches[0]
    onset = np.flatnonzero(np.abs(audio.samples) > 0.05 * np.abs(audio.samples).max())[0] / 24000
    assert first.start - 0.03 < onset < first.start + 0.1
    assert measure_loudness(audio.samples, 24000) == pytest.approx(-23.0, abs=0.5)


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_loudness_is_what_pyloudnorm_measures(corpus, rate):
    """The numpy meter gives pyloudnorm's BS.1770 figures: on recorded speech, on noise, and on a
    loud tone followed by a quiet one and silence (the gates leave those out)."""
    import warnings

    import pyloudnorm

    rng = np.random.default_rng(7)
    t = np.arange(rate * 3) / rate
    signals = {
        "speech": load_source(corpus["talk.mp3"].path, rate, -23.0).samples * 0.3,
        "noise": rng.normal(0, 0.1, rate * 5).astype(np.float32),
        "gated": np.concatenate([0.5 * np.sin(2 * np.pi * 440 * t), 0.001 * np.sin(2 * np.pi * 60 * t), 0 * t]),
    }
    for name, samples in signals.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = pyloudnorm.Meter(rate).integrated_loudness(samples)
        assert measure_loudness(samples, rate) == pytest.approx(reference, abs=0.001), name
    assert measure_loudness(np.zeros(rate, np.float32), rate) == -np.inf
    assert measure_loudness(signals["noise"][: int(0.3 * rate)], rate) == -np.inf  # under one 400 ms block


def test_stereo_is_the_mean_of_the_channels(tmp_path):
    t = np.arange(48000) / 48000
    tone = 0.4 * np.sin(2 * np.pi * 300 * t)
    sf.write(tmp_path / "s.wav", np.stack([tone, np.zeros_like(tone)], axis=1), 48000, subtype="FLOAT")
    audio = load_source(tmp_path / "s.wav", 48000, -23.0)
    assert audio.channels == 2
    gain = 10 ** (audio.gain_db / 20)
    assert np.allclose(audio.samples, 0.5 * tone * gain, atol=1e-4)


def test_the_peak_guard_holds_back_the_loudness_gain(tmp_path):
    # A quiet recording with one loud click: reaching -23 LUFS would push the click past -1 dBFS.
    rng = np.random.default_rng(1)
    audio = (0.01 * rng.standard_normal(24000 * 4)).astype(np.float32)
    audio[30000] = 0.9
    sf.write(tmp_path / "click.wav", audio, 24000)
    loaded = load_source(tmp_path / "click.wav", 24000, -23.0)
    assert np.abs(loaded.samples).max() == pytest.approx(10 ** (-1 / 20), rel=1e-3)
    assert measure_loudness(loaded.samples, 24000) < -23.5


def test_clipping_is_found(tmp_path):
    t = np.arange(24000 * 3) / 24000
    audio = np.clip(1.5 * np.sin(2 * np.pi * 200 * t), -1, 1)
    audio[:24000] *= 0.5  # the first second is clean
    sf.write(tmp_path / "hot.wav", audio, 24000)
    loaded = load_source(tmp_path / "hot.wav", 24000, -23.0)
    assert loaded.clipped and loaded.clipped[0][0] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name,reason", [("silence.wav", "silent"), ("corrupt.mp3", "unreadable")])
def test_bad_files_are_rejected_with_a_reason(corpus, name, reason):
    with pytest.raises(SourceRejected) as rejected:
        load_source(corpus[name].path, 24000, -23.0)
    assert rejected.value.reason == reason and rejected.value.detail


def test_empty_wav_and_video_without_sound(tmp_path):
    import subprocess

    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(SourceRejected) as rejected:
        load_source(tmp_path / "empty.wav", 24000, -23.0)
    assert rejected.value.reason == "empty"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=5:duration=1",
            "-c:v",
            "mpeg4",
            str(tmp_path / "mute.mp4"),
        ],
        check=True,
    )
    with pytest.raises(SourceRejected) as rejected:
        load_source(tmp_path / "mute.mp4", 24000, -23.0)
    assert rejected.value.reason == "no_audio_track"


def test_find_sources_walks_folders_and_skips_hidden_and_the_output(tmp_path):
    (tmp_path / "a" / ".cache").mkdir(parents=True)
    (tmp_path / "a" / "x.wav").write_bytes(b"")
    (tmp_path / "a" / "x.txt").write_text("transcript")
    (tmp_path / "a" / ".cache" / "y.wav").write_bytes(b"")
    (tmp_path / "a" / "cover.png").write_bytes(b"")
    (tmp_path / "a" / "dataset" / "wavs").mkdir(parents=True)
    (tmp_path / "a" / "dataset" / "wavs" / "clip.wav").write_bytes(b"")
    scan = find_sources([tmp_path / "a"], exclude=tmp_path / "a" / "dataset")
    assert scan.audio_files == [tmp_path / "a" / "x.wav"]
    assert [r.reason for r in scan.not_audio] == ["not_audio"] and scan.not_audio[0].path.endswith("cover.png")
