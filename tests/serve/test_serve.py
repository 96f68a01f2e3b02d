"""`voicetune serve` as a client sees it: the official `openai` package and raw HTTP against a real
server on 127.0.0.1 speaking with a trained f5-tiny run."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from support.harness import cli_env, run_cli, wait_until
from support.speech_server import MODEL, NFE, SpeechServer

SHORT = "The birch canoe slid on the smooth planks."
# Several of F5's chunks (each at most ~22 s of speech at the reference's pace).
LONG = " ".join(
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
    * 2
)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    return audio, rate


def ffmpeg_decode(data: bytes, fmt: str) -> np.ndarray:
    """Any format ffmpeg reads, as 16-bit samples at 24 kHz."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            fmt,
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ar",
            "24000",
            "-ac",
            "1",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()
    return np.frombuffer(result.stdout, dtype="<i2")


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    # max_retries=0: the client would otherwise retry a 429 after its Retry-After by itself.
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0, timeout=600)


@pytest.fixture(scope="module")
def plain_wav(client) -> bytes:
    return client.audio.speech.create(model=MODEL, voice="default", input=SHORT, response_format="wav").content


def test_openai_client_gets_what_voicetune_synthesize_writes(plain_wav, f5_voice_run, tmp_path):
    from voicetune.synthesis.engine import default_reference

    audio, rate = decode(plain_wav)
    assert rate == 24000 and len(audio) > rate // 2
    # The same engine behind both faces: the same text, voice and seed give the same samples.
    # Without --ref, synthesize speaks in the run's default voice, as serve does, and says which.
    ref, _ = default_reference(next((f5_voice_run / "checkpoints").glob("step_*")), f5_voice_run.parent / "corpus")
    out = tmp_path / "synth.wav"
    result = run_cli(
        "synthesize", "--checkpoint", f5_voice_run, "--text", SHORT, "--out", out, "--nfe", NFE, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"voice: the run's default, {ref}" in " ".join(result.stdout.split())
    written, _ = sf.read(out, dtype="int16")
    np.testing.assert_array_equal(audio, written)


# What each family streams, and in how many chunks at least. chatterbox-tiny's T3 never predicts
# its stop token and speaks every chunk up to its cap (20 s at most): a short first chunk, then one
# of Chatterbox's 250 characters.
STREAMED = {
    "f5": (LONG, 3),
    "chatterbox": (
        "Hi there. The box was thrown beside the parked truck, and nobody came to pick it up again, "
        "while the hogs were fed chopped corn and garbage, and they grew fat before the winter, and four "
        "hours of steady work faced us when we started early in the cold and quiet morning.",
        2,
    ),
}


@pytest.fixture(scope="module", params=list(STREAMED))
def streaming(request, tmp_path_factory):
    """(server, family): the f5 run's shared server, and a server of chatterbox_voice_run."""
    if request.param == "f5":
        yield request.getfixturevalue("server"), request.param
        return
    run = request.getfixturevalue(f"{request.param}_voice_run")
    srv = SpeechServer(run, "--queue", "0", log=tmp_path_factory.mktemp(f"serve_{request.param}") / "server.log")
    yield srv, request.param
    srv.stop()


def test_stream_sends_the_first_sentences_before_the_rest_is_synthesized(streaming):
    server, family = streaming
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0, timeout=600)
    model = client.models.list().data[0].id
    with client.audio.speech.with_streaming_response.create(
        model=model, voice="default", input=STREAMED[family][0], response_format="wav"
    ) as response:
        chunks = int(response.headers["x-voicetune-chunks"])
        assert chunks >= STREAMED[family][1]
        parts = response.iter_bytes()
        received = b""
        while len(received) <= 44:  # past the header: audio of the first chunk
            received += next(parts)
        assert server.health()["running"], "the whole text was synthesized before the first audio was sent"
        received += b"".join(parts)
    audio, rate = decode(received)
    assert len(audio) > chunks * rate  # every chunk made it (each is seconds of speech)
    # The stream of one request is the same audio as the whole answer to the same request.
    whole = client.audio.speech.create(model=model, voice="default", input=STREAMED[family][0], response_format="wav")
    assert np.array_equal(decode(whole.content)[0], audio)


def test_sse_deltas_carry_the_audio_of_a_plain_request(client, plain_wav):
    with client.audio.speech.with_streaming_response.create(
        model=MODEL, voice="default", input=SHORT, response_format="wav", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    # no made-up usage: the model counts no tokens (OpenAI's field would say output_tokens 0)
    assert events[-1] == {"type": "speech.audio.done"}
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == plain_wav


@pytest.mark.parametrize(
    "fmt, container, lossless",
    [
        ("pcm", "s16le", True),
        ("flac", "flac", True),
        ("mp3", "mp3", False),
        ("opus", "ogg", False),
        ("aac", "aac", False),
    ],
)
def test_response_formats_hold_the_same_speech(client, plain_wav, fmt, container, lossless):
    data = client.audio.speech.create(model=MODEL, voice="default", input=SHORT, response_format=fmt).content
    expected, _ = decode(plain_wav)
    if fmt == "pcm":
        got = np.frombuffer(data, dtype="<i2")
    else:
        got = ffmpeg_decode(data, container)
    if lossless:
        np.testing.assert_array_equal(got, expected)
    else:  # lossy codecs add an encoder delay and padding of a few frames, not seconds
        assert abs(len(got) - len(expected)) < 0.1 * 24000


def test_models_and_voices_are_listed_and_each_voice_sounds_different(client, server, plain_wav):
    assert [m.id for m in client.models.list().data] == [MODEL]
    voices = httpx.get(f"{server.url}/v1/voices").json()["data"]
    assert [v["id"] for v in voices[:2]] == ["default", "other"]
    other = client.audio.speech.create(model=MODEL, voice="other", input=SHORT, response_format="wav").content
    assert other != plain_wav
    # OpenAI's model names reach the first model, so that tools with "tts-1" built in work.
    assert (
        client.audio.speech.create(model="tts-1", voice="default", input=SHORT, response_format="wav").content
        == plain_wav
    )


def test_openai_voice_names_reach_the_default_voice(client, server, plain_wav):
    """Tools with OpenAI built in send its voices: alloy reaches the run's default voice, and
    /v1/voices says so for each of OpenAI's names."""
    alloy = client.audio.speech.create(model="tts-1", voice="alloy", input=SHORT, response_format="wav").content
    assert alloy == plain_wav
    reaches = {v["id"]: v["reaches"] for v in httpx.get(f"{server.url}/v1/voices").json()["data"]}
    openai_names = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
    assert all(reaches[name] == {MODEL: "default"} for name in openai_names)
    assert reaches["other"] == {MODEL: "other"}


def test_a_run_voice_named_like_an_openai_voice_is_that_voice(f5_voice_run, second_voice, tmp_path):
    """--voice alloy=... (or RUN/voices/alloy.wav): alloy is that voice, not the default."""
    clip, text = second_voice
    own = SpeechServer(f5_voice_run, "--nfe", NFE, "--voice", f"alloy={clip}:{text}", log=tmp_path / "server.log")
    try:
        reaches = {v["id"]: v["reaches"] for v in httpx.get(f"{own.url}/v1/voices").json()["data"]}
        assert (reaches["alloy"], reaches["echo"]) == ({MODEL: "alloy"}, {MODEL: "default"})
    finally:
        own.stop()


def speech_json(**fields) -> dict:
    return {"model": MODEL, "input": SHORT, "voice": "default", **fields}


@pytest.mark.parametrize(
    "body, status, param, code",
    [
        (speech_json(model="nobody"), 404, "model", "model_not_found"),
        (speech_json(voice="nobody"), 400, "voice", "voice_not_found"),
        (speech_json(voice="/etc/passwd"), 400, "voice", "voice_not_found"),
        (speech_json(voice="../anna/checkpoints"), 400, "voice", "voice_not_found"),
        (speech_json(input=""), 400, "input", "invalid_value"),
        (speech_json(input="   "), 400, "input", "invalid_value"),
        (speech_json(input="a" * 4097), 400, "input", "invalid_value"),
        (speech_json(response_format="ogg"), 400, "response_format", "invalid_value"),
        (speech_json(speed=0.2), 400, "speed", "invalid_value"),
        (speech_json(speed=4.5), 400, "speed", "invalid_value"),
        (speech_json(speed="fast"), 400, "speed", "invalid_type"),
        (speech_json(input=["a list"]), 400, "input", "invalid_type"),
        (speech_json(stream_format="websocket"), 400, "stream_format", "invalid_value"),
        ({"model": MODEL, "voice": "default"}, 400, "input", "missing_required_parameter"),
        ([1, 2], 400, None, "invalid_json"),
    ],
    ids=lambda v: v if isinstance(v, (int, str)) else None,
)
def test_bad_requests_get_openai_errors(server, body, status, param, code):
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"]


def test_bodies_that_are_not_json_or_too_large_are_refused(server):
    not_json = httpx.post(f"{server.url}/v1/audio/speech", content=b"model=anna&input=hi", timeout=60)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    text = json.dumps(speech_json()).encode()
    plain = httpx.post(
        f"{server.url}/v1/audio/speech", content=text, headers={"Content-Type": "text/plain"}, timeout=60
    )
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in plain.json()["error"]["message"]
    huge = httpx.post(f"{server.url}/v1/audio/speech", content=b"{" + b" " * 200_000 + b"}", timeout=60)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    unknown = httpx.get(f"{server.url}/v1/nothing", timeout=60)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    # The openai client turns the shape into its own exceptions.
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.audio.speech.create(model="nobody", voice="default", input=SHORT)
    assert "anna" in raised.value.message  # says which models there are
    assert server.health()["status"] == "ok"


def first_audio(response: httpx.Response) -> bytes:
    """Reads a streamed wav until the first audio samples (the synthesis is then running)."""
    received = b""
    for part in response.iter_bytes():
        received += part
        if len(received) > 44:
            return received
    raise AssertionError("the stream ended before any audio")


def test_full_queue_is_429_with_retry_after(f5_voice_run, tmp_path):
    # The running request is held after its first audio (a test-only pause point) until the refused
    # one has been answered: however fast the machine, one request runs while the second comes.
    release = tmp_path / "release"
    held = SpeechServer(
        f5_voice_run,
        "--nfe",
        NFE,
        "--queue",
        "0",
        log=tmp_path / "server.log",
        env=cli_env(VOICETUNE_PAUSE_AT=f"speech_audio:{release}"),
    )
    try:
        client = openai.OpenAI(base_url=f"{held.url}/v1", api_key="unused", max_retries=0)
        with httpx.stream(
            "POST", f"{held.url}/v1/audio/speech", json=speech_json(input=LONG, response_format="wav"), timeout=600
        ) as running:
            first_audio(running)
            assert wait_until(lambda: Path(f"{release}.reached").exists(), timeout=600)
            with pytest.raises(openai.RateLimitError) as refused:
                client.audio.speech.create(model=MODEL, voice="default", input=SHORT)
            assert int(refused.value.response.headers["retry-after"]) >= 1
            assert refused.value.body["code"] == "queue_full"
            release.touch()
        assert wait_until(lambda: not held.health()["running"], timeout=600)
    finally:
        release.touch()
        held.stop()


def test_a_client_that_leaves_mid_stream_cancels_its_work(server):
    before = server.health()
    with httpx.stream(
        "POST", f"{server.url}/v1/audio/speech", json=speech_json(input=LONG, response_format="wav"), timeout=600
    ) as response:
        first_audio(response)
    # The connection is closed with most of the text unspoken: the job must end as cancelled.
    assert wait_until(lambda: server.health()["cancelled"] == before["cancelled"] + 1, timeout=300)
    after = server.health()
    assert (after["running"], after["done"]) == (False, before["done"])


@pytest.fixture(scope="module")
def strict_server(f5_voice_run, tmp_path_factory):
    """An API key. (A time limit's 504 and work stopped: test_fresh_server.py, driven by fault points.)"""
    srv = SpeechServer(
        f5_voice_run,
        "--api-key",
        "test-key-0123456789",
        log=tmp_path_factory.mktemp("serve_strict") / "server.log",
    )
    yield srv
    srv.stop()


def test_api_key_is_required_and_checked(strict_server):
    for key in ("wrong-key-0123456789", "test-key-012345678"):
        client = openai.OpenAI(base_url=f"{strict_server.url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert httpx.post(f"{strict_server.url}/v1/audio/speech", json=speech_json()).status_code == 401
    good = openai.OpenAI(base_url=f"{strict_server.url}/v1", api_key="test-key-0123456789", max_retries=0)
    assert [m.id for m in good.models.list().data] == [MODEL]
    assert httpx.get(f"{strict_server.url}/health").json()["status"] == "ok"  # for load balancers


def test_serve_refuses_other_addresses_without_a_key(f5_voice_run):
    result = run_cli("serve", f5_voice_run, "--host", "0.0.0.0", timeout=120)
    assert result.returncode == 2
    assert "--host 0.0.0.0" in result.stderr and "--api-key" in result.stderr


def test_concurrent_clients_all_get_audio_or_a_429(server, client):
    """Eight clients at once on a server that runs one and queues none: no request is lost or
    crashes the server; each gets audio or a clean 429."""
    outcomes: list[str] = []

    def one() -> None:
        try:
            client.audio.speech.create(model=MODEL, voice="default", input=SHORT, response_format="pcm")
            outcomes.append("audio")
        except openai.RateLimitError:
            outcomes.append("429")

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 8 and "audio" in outcomes and "429" in outcomes
    assert server.health()["failed"] == 0


@pytest.mark.parametrize(
    "text, header, named",
    [
        ("Good news \U0001f600!", "x-voicetune-unsayable", "U+1F600"),  # characters the model cannot say
        ("Update to version 1.2.3 at 10:30:15.", "x-voicetune-unread", "1.2.3, 10:30:15"),  # digits left
    ],
)
def test_what_the_voice_will_not_say_is_named_in_a_header(client, text, header, named):
    with client.audio.speech.with_streaming_response.create(
        model=MODEL, voice="default", input=text, response_format="pcm"
    ) as response:
        assert response.headers[header] == named
        assert len(response.read()) > 0
