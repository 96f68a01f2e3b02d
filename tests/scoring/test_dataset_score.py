"""`voicetune dataset score` and `prepare --score` find the clips planted among good ones: one of
another voice, a noisy one, and one whose transcript says something else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import VOICE_B, speak
from support.harness import voicetune, whisper_model_path
from voicetune.demo.corpus import HARVARD_SENTENCES, write_ljspeech_corpus

PLANTED = {
    "planted_other_voice": "other_speaker",
    "planted_noisy": "low_quality",
    "planted_wrong_text": "transcript_mismatch",
}


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory) -> Path:
    """Nine good clips of one espeak-ng voice, two sentences each, and the three planted clips."""
    import soundfile as sf

    dataset = write_ljspeech_corpus(
        tmp_path_factory.mktemp("planted") / "dataset", n_items=9, sample_rate=16000, sentences_per_item=2
    )
    scratch = dataset.parent / "scratch"
    said = {name: " ".join(HARVARD_SENTENCES[30 + 2 * i : 32 + 2 * i]) for i, name in enumerate(PLANTED)}
    other = speak(said["planted_other_voice"], scratch, "other", VOICE_B)
    noisy = speak(said["planted_noisy"], scratch, "noisy", ("en-us", 50))
    noise = np.random.default_rng(1).standard_normal(len(noisy)).astype(np.float32)
    noisy = noisy + noise * np.sqrt(np.mean(noisy**2) / np.mean(noise**2)) / 10 ** (5 / 20)  # 5 dB SNR
    wrong = speak(said["planted_wrong_text"], scratch, "wrong", ("en-us", 50))
    rows = []
    for name, audio in (("planted_other_voice", other), ("planted_noisy", noisy), ("planted_wrong_text", wrong)):
        sf.write(dataset / "wavs" / f"{name}.wav", np.clip(audio, -1, 1), 16000, subtype="PCM_16")
        text = HARVARD_SENTENCES[5] + " " + HARVARD_SENTENCES[6] if name == "planted_wrong_text" else said[name]
        rows.append(f"{name}|{text}|{text}")
    with open(dataset / "metadata.csv", "a", encoding="utf-8") as metadata:
        metadata.write("\n".join(rows) + "\n")
    shutil.rmtree(scratch)
    return dataset


def test_dataset_score_flags_the_planted_clips_worst_first(planted_dataset, tmp_path):
    report_path = tmp_path / "score.json"
    result = voicetune(
        "dataset",
        "score",
        planted_dataset,
        "--whisper-model",
        whisper_model_path(),
        "--json",
        "--out",
        report_path,
        check_exit=0,
    )
    clips = json.loads(result.stdout)
    print("\n" + "\n".join(json.dumps(c) for c in clips))
    assert len(clips) == 12 and set(clips[0]) == {"id", "wer", "dnsmos", "similarity", "flags"}
    flagged = {c["id"]: c["flags"] for c in clips if c["flags"]}
    assert set(flagged) == set(PLANTED)
    for name, reason in PLANTED.items():
        assert reason in flagged[name], (name, flagged[name])
    assert {c["id"] for c in clips[:3]} == set(PLANTED)  # flagged clips come first
    report = json.loads(report_path.read_text())
    assert report["flagged"] == 3 and set(report["thresholds"]) == {"wer", "dnsmos", "similarity"}
    wrong = next(c for c in report["flagged_clips"] if c["id"] == "planted_wrong_text")
    assert "lemons" in wrong["text"] and "lemons" not in wrong["heard"]


def test_prepare_score_lists_flagged_clips_in_report(planted_dataset, tmp_path):
    out = tmp_path / "prepared"
    result = voicetune(
        "prepare",
        planted_dataset,
        "--out",
        out,
        "--transcriber",
        "none",
        "--language",
        "en",
        "--min-seconds",
        "1",
        "--max-seconds",
        "20",
        "--workers",
        "1",
        "--score",
        "--whisper-model",
        whisper_model_path(),
        check_exit=0,
    )
    score = json.loads((out / "report.json").read_text())["score"]
    manifest = {
        row["id"]: Path(row["source"]).stem
        for row in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())
    }
    flagged = {manifest[c["id"]]: c["flags"] for c in score["flagged_clips"]}
    assert set(flagged) == set(PLANTED), result.stdout
    for name, reason in PLANTED.items():
        assert reason in flagged[name]
    assert "3 of 12 clips flagged" in result.stdout
