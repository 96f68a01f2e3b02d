"""`voicetune narrate` as a user runs it: killed and run again, and with takes that fail the check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from support.harness import cli_env, run_cli, wait_until, whisper_model_path
from support.speech_server import NFE

CHAPTER = " ".join(
    [
        "Glue the sheet to the dark blue background, and then wait until it dries completely.",
        "It is easy to tell the depth of a well when you drop a small stone into it.",
        "These days a chicken leg is a rare dish, and the farmers know it very well.",
        "Rice is often served in round bowls, with a little salt and a few green leaves.",
        "The juice of lemons makes fine punch, and the boys drank it on the porch all day.",
        "The box was thrown beside the parked truck, and nobody came to pick it up again.",
        "The hogs were fed chopped corn and garbage, and they grew fat before the winter.",
        "Four hours of steady work faced us, and we started early in the cold morning.",
    ]
)


def narrate_args(run, text_file, out, *extra, nfe: bool = True):
    """narrate's arguments; F5's with few sampling steps (a model without steps refuses --nfe)."""
    return ["narrate", text_file, "--checkpoint", run, "--out", out, *(["--nfe", NFE] if nfe else []), *extra]


def test_a_narration_killed_mid_way_resumes_to_the_same_bytes(f5_voice_run, tmp_path):
    book = tmp_path / "chapter.txt"
    book.write_text(CHAPTER, encoding="utf-8")
    straight = run_cli(*narrate_args(f5_voice_run, book, tmp_path / "straight.wav", "--no-check"), timeout=900)
    assert straight.returncode == 0, straight.stderr
    chunks = json.loads((tmp_path / "straight.json").read_text())["chunks"]
    assert len(chunks) >= 3

    out = tmp_path / "killed.wav"
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicetune", *map(str, narrate_args(f5_voice_run, book, out, "--no-check"))],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = tmp_path / "killed.wav.parts"
    assert wait_until(lambda: len(list(parts.glob("chunk_*.json"))) >= 1, timeout=600, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("chunk_*.json")))
    assert 1 <= done_before < len(chunks) and not out.exists()

    resumed = run_cli(*narrate_args(f5_voice_run, book, out, "--no-check"), timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert (resumed.stdout + resumed.stderr).count("(done before)") == done_before  # what the terminal shows
    assert out.read_bytes() == (tmp_path / "straight.wav").read_bytes()
    report = json.loads((tmp_path / "killed.json").read_text())
    assert [c["resumed"] for c in report["chunks"]] == [True] * done_before + [False] * (len(chunks) - done_before)


@pytest.mark.parametrize("family", ["f5", "chatterbox"])
def test_takes_that_fail_the_check_are_retaken_and_reported(family, request, tmp_path):
    run = request.getfixturevalue(f"{family}_voice_run")
    book = tmp_path / "short.txt"
    book.write_text("The juice of lemons makes fine punch.", encoding="utf-8")
    if family == "f5":
        # A reference clip given the transcript of another sentence: the model learns the wrong
        # words for the voice's sounds, and what it says fails the check's WER.
        corpus = run.parent / "corpus"
        rows = [r.split("|") for r in (corpus / "metadata.csv").read_text().splitlines()]
        voice = ["--ref", corpus / "wavs" / f"{rows[3][0]}.wav", "--ref-text", rows[9][1]]
    else:
        # chatterbox-tiny's T3 after 2 updates never predicts its stop token: it babbles up to
        # its cap in the run's own voice, and no take passes.
        voice = []
    result = run_cli(
        *narrate_args(
            run,
            book,
            tmp_path / "short.wav",
            *voice,
            "--retakes",
            "1",
            "--whisper-model",
            whisper_model_path(),
            nfe=family == "f5",
        ),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "short.json").read_text())
    (chunk,) = report["chunks"]
    assert chunk["takes"] == 2 and not chunk["passed"] and "wer" in chunk["check"]["flags"]
    assert chunk["check"]["transcript"] is not None
    output = result.stdout + result.stderr  # what the terminal shows
    assert "2 takes" in output and "still fail the check" in output


def test_numbers_left_in_digits_are_named_per_chunk_and_at_the_end(f5_voice_run, tmp_path):
    book = tmp_path / "digits.txt"
    book.write_text("Install version 1.2.3 first. It stopped at 10:30:15 and again later.", encoding="utf-8")
    result = run_cli(*narrate_args(f5_voice_run, book, tmp_path / "digits.wav", "--no-check"), timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "digits.json").read_text())
    assert report["unread"] == ["1.2.3", "10:30:15"]
    assert [d for chunk in report["chunks"] for d in chunk["unread"]] == ["1.2.3", "10:30:15"]
    output = " ".join((result.stdout + result.stderr).split())  # what the terminal shows, unwrapped
    assert "unread: 1.2.3" in output
    assert "numbers left in digits" in output and "write them as words" in output
