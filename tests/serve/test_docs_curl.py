"""The curl examples of docs/use-the-voice.md and of the README, run as written against a real server."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest

from support.harness import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "use-the-voice.md"
README = REPO_ROOT / "README.md"
DOC_ADDRESS = "127.0.0.1:8000"


def curl_examples(*pages) -> list[str]:
    blocks = [
        b for page in pages or (GUIDE, README) for b in re.findall(r"```bash\n(.*?)```", page.read_text("utf-8"), re.S)
    ]
    return [b.strip() for b in blocks if b.lstrip().startswith("curl ")]


def test_the_readme_has_a_curl_example():
    assert any("/v1/audio/speech" in example for example in curl_examples(README))


def test_the_guide_has_curl_examples_of_each_kind():
    text = " ".join(curl_examples(GUIDE))
    assert len(curl_examples(GUIDE)) >= 6
    for part in (
        "/v1/audio/speech",
        '"stream_format": "sse"',
        "-N",
        "/v1/models",
        "/v1/voices",
        "/health",
        "Authorization: Bearer",
    ):
        assert part in text, part


@pytest.mark.parametrize("command", curl_examples(), ids=lambda c: " ".join(c.split()[:6])[:60])
def test_curl_example_works_as_written(command, server, tmp_path):
    address = server.url.removeprefix("http://")
    assert DOC_ADDRESS in command
    env = {**os.environ, "VOICETUNE_API_KEY": "a-key-the-server-does-not-ask-for"}
    result = subprocess.run(
        ["bash", "-c", command.replace(DOC_ADDRESS, address)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    written = re.findall(r"-o (\S+)", command)
    for name in written:  # each file it writes is audio of some length (ffmpeg decodes it)
        decoded = subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                str(tmp_path / shlex.split(name)[0]),
                "-f",
                "s16le",
                "-ac",
                "1",
                "-ar",
                "24000",
                "pipe:1",
            ],
            capture_output=True,
        )
        assert decoded.returncode == 0, decoded.stderr.decode()
        assert len(decoded.stdout) / 2 / 24000 > 0.3
    if not written:  # what it prints: JSON, or SSE events of JSON ending with speech.audio.done
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if lines[0].startswith("data: "):
            events = [json.loads(line.removeprefix("data: ")) for line in lines]
            assert events[-1]["type"] == "speech.audio.done" and len(events) >= 2
        else:
            json.loads(result.stdout)
