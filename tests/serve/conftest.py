"""The served run: one `voicetune serve` for the files of tests/serve (started once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.speech_server import NFE, SpeechServer


@pytest.fixture(scope="session")
def second_voice(f5_voice_run) -> tuple[Path, str]:
    """A held-out clip of the corpus and its words: the voice `--voice other=...` names."""
    corpus = f5_voice_run.parent / "corpus"
    clip_id, text = (corpus / "metadata_val.csv").read_text().splitlines()[0].split("|")[:2]
    return corpus / "wavs" / f"{clip_id}.wav", text


@pytest.fixture(scope="session")
def server(f5_voice_run, second_voice, tmp_path_factory):
    """One request at a time and none waiting (--queue 0): a second request while one runs is a 429."""
    clip, text = second_voice
    srv = SpeechServer(
        f5_voice_run,
        "--nfe",
        NFE,
        "--queue",
        "0",
        "--voice",
        f"other={clip}:{text}",
        log=tmp_path_factory.mktemp("serve") / "server.log",
    )
    yield srv
    srv.stop()
