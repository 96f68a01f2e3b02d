"""`voicetune dataset check` on good and broken LJSpeech folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from support.harness import voicetune
from voicetune.data.check import check_dataset, read_vocabulary

RATE = 22050


def tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.2 * np.sin(2 * np.pi * 220 * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def make_dataset(root, rows: dict[str, str], seconds: float = 3.0):
    (root / "wavs").mkdir(parents=True)
    for index, clip_id in enumerate(rows):
        sf.write(root / "wavs" / f"{clip_id}.wav", tone(seconds + 0.1 * index), RATE, subtype="PCM_16")
    (root / "metadata.csv").write_text("".join(f"{k}|{v}\n" for k, v in rows.items()), encoding="utf-8")
    return root


def codes(report) -> set[str]:
    return {f"{issue.severity}:{issue.code}" for issue in report.issues}


def test_a_good_dataset_passes(tmp_path):
    dataset = make_dataset(tmp_path / "good", {"a": "Hello there.", "b": "General Kenobi!"})
    report = check_dataset(dataset)
    assert report.ok and not report.issues
    assert report.stats["rows"] == 2 and report.stats["sample_rates"] == {str(RATE): 2}
    result = voicetune("dataset", "check", dataset, "--json", check_exit=0)
    assert json.loads(result.stdout)["ok"] is True


def test_every_kind_of_breakage_is_found(tmp_path):
    dataset = make_dataset(
        tmp_path / "broken",
        {
            "a": "Fine text.",
            "b": "Missing wav.",
            "c": "Stereo.",
            "d": "Other rate.",
            "e": "Same audio as a.",
            "f": "Too long a clip.",
        },
    )
    (dataset / "wavs" / "b.wav").unlink()
    sf.write(dataset / "wavs" / "c.wav", tone(3, channels=2), RATE)
    sf.write(dataset / "wavs" / "d.wav", tone(3, rate=16000), 16000)
    shutil.copy(dataset / "wavs" / "a.wav", dataset / "wavs" / "e.wav")
    sf.write(dataset / "wavs" / "f.wav", tone(40), RATE)
    sf.write(dataset / "wavs" / "stray.wav", tone(2), RATE)
    (dataset / "wavs" / "bad.wav").write_bytes(b"RIFF....not a wav")
    with open(dataset / "metadata.csv", "a", encoding="utf-8") as metadata:
        metadata.write("g|\n")  # empty text
        metadata.write("a|Again.\n")  # duplicate id
        metadata.write("bad|Unreadable.\n")
        metadata.write("h|Olá, ação € 42.\n")
    sf.write(dataset / "wavs" / "g.wav", tone(2), RATE)
    sf.write(dataset / "wavs" / "h.wav", tone(2), RATE)
    (dataset / "metadata_train.csv").write_text("a|x\nc|x\nzzz|x\n")
    (dataset / "metadata_val.csv").write_text("a|x\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(
        "\n".join(sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,!? 0123456789"))) + "\n"
    )
    report = check_dataset(dataset, read_vocabulary(vocab))
    assert codes(report) >= {
        "error:missing_wav",
        "error:not_mono",
        "error:sample_rate",
        "error:empty_text",
        "error:duplicate_id",
        "error:unreadable_wav",
        "error:out_of_vocabulary",
        "error:split_unknown_id",
        "error:split_overlap",
        "warning:duplicate_audio",
        "warning:duration_out_of_range",
        "warning:extra_wav",
        "warning:not_in_split",
    }
    oov = next(i for i in report.issues if i.code == "out_of_vocabulary")
    assert oov.item_id == "h" and set("áç€") <= set(oov.message)
    result = voicetune("dataset", "check", dataset, "--json", "--vocab", vocab, check_exit=1)
    assert json.loads(result.stdout)["by_code"]["error:missing_wav"] == 1
    human = voicetune("dataset", "check", dataset, check_exit=1)
    assert "missing_wav" in human.stdout and "not ok" in human.stdout


def test_warnings_alone_exit_0(tmp_path):
    dataset = make_dataset(tmp_path / "warn", {"a": "Hello there.", "b": "Hello again."})
    sf.write(dataset / "wavs" / "extra.wav", tone(2), RATE)
    result = voicetune("dataset", "check", dataset, check_exit=0)
    assert "extra_wav" in result.stdout


def test_not_a_dataset_is_exit_2(tmp_path):
    result = voicetune("dataset", "check", tmp_path, check_exit=2)
    assert "metadata.csv" in result.stderr
    assert voicetune("dataset", "check", tmp_path / "nope").returncode == 2


@pytest.mark.slow
def test_the_prepared_dataset_checks_clean(prepared):
    result = voicetune(
        "dataset",
        "check",
        prepared.dataset,
        "--json",
        "--sample-rate",
        "24000",
        "--min-seconds",
        "5",
        "--max-seconds",
        "15",
        check_exit=0,
    )
    report = json.loads(result.stdout)
    assert report["errors"] == 0 and report["warnings"] == 0
    assert report["stats"]["rows"] == len(prepared.manifest())
