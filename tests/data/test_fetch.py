"""`voicetune fetch` against a local web server serving real media files."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.harness import voicetune
from voicetune.data.ingest import find_sources, load_source


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def media_server(corpus_dir):
    """http://127.0.0.1:PORT/ serving the corpus folder (an mp4 video, an mp3, ...)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(corpus_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_downloads_audio_that_prepare_reads(tmp_path, media_server, corpus):
    out = tmp_path / "downloads"
    result = voicetune("fetch", f"{media_server}/interview.mp4", f"{media_server}/talk.mp3", "--out", out, check_exit=0)
    assert "2 of 2 URLs" in result.stdout
    scan = find_sources([out])
    assert sorted(p.suffix for p in scan.audio_files) == [".mp3", ".mp4"] and not scan.not_audio
    for path in scan.audio_files:
        original = corpus["interview.mp4" if path.suffix == ".mp4" else "talk.mp3"].recording
        assert load_source(path, 24000, -23.0).duration == pytest.approx(original.duration, abs=0.05)
    again = voicetune("fetch", f"{media_server}/interview.mp4", "--out", out, check_exit=0)
    assert "already fetched" in again.stdout
    assert len(find_sources([out]).audio_files) == 2


def test_fetch_can_extract_the_audio_track(tmp_path, media_server, corpus):
    out = tmp_path / "downloads"
    voicetune("fetch", f"{media_server}/interview.mp4", "--out", out, "--audio-format", "m4a", check_exit=0)
    [audio] = find_sources([out]).audio_files
    assert audio.suffix == ".m4a"
    assert load_source(audio, 24000, -23.0).duration == pytest.approx(
        corpus["interview.mp4"].recording.duration, abs=0.05
    )


def test_a_failing_url_is_named_and_the_others_still_download(tmp_path, media_server):
    out = tmp_path / "downloads"
    result = voicetune("fetch", f"{media_server}/missing.mp3", f"{media_server}/note.opus", "--out", out, check_exit=1)
    assert "missing.mp3" in result.stderr and "404" in result.stderr
    assert [p.name for p in find_sources([out]).audio_files] == ["note [note].opus"]
    bad_format = voicetune("fetch", f"{media_server}/note.opus", "--out", out, "--audio-format", "aiff", check_exit=2)
    assert "--audio-format" in bad_format.stderr


@pytest.mark.slow
def test_prepare_takes_the_fetched_folder(tmp_path, media_server, whisper_model):
    out = tmp_path / "downloads"
    voicetune("fetch", f"{media_server}/interview.mp4", "--out", out, check_exit=0)
    result = voicetune("prepare", out, "--out", tmp_path / "dataset", "--whisper-model", whisper_model, check_exit=0)
    assert "from 1 of 1 files" in result.stdout
    assert (tmp_path / "dataset" / "metadata.csv").read_text().count("\n") >= 2
