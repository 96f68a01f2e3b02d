"""The synthesis engine with a trained f5-tiny run: what it says, how it cuts and joins, that the
same request gives the same audio, and that models stay loaded (within limits)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from support.harness import cli_env, run_cli
from support.speech_server import NFE
from voicetune.errors import UsageError

NFE_STEPS = int(NFE)
TEXT = (
    "On the 4th of July 2024 we counted 23 boats in the harbour, and the wind was calm. "
    "Glue the sheet to the dark blue background, and then wait until it dries completely. "
    "It is easy to tell the depth of a well when you drop a small stone into it. "
    "These days a chicken leg is a rare dish, and the farmers know it very well."
)


@pytest.fixture(scope="module")
def engine(f5_voice_run):
    from voicetune.synthesis.engine import Engine

    return Engine.load(f5_voice_run, nfe=NFE_STEPS)


@pytest.fixture(scope="module")
def voice(engine):
    return engine.default_voice()


def test_text_is_normalized_as_prepare_does_and_no_word_is_lost_in_chunks(engine, voice):
    from voicetune.data.text import normalize_transcript

    plan = engine.plan(TEXT, voice)
    assert plan.normalized == normalize_transcript(TEXT, "en", True)[1]
    assert "fourth of July twenty twenty-four" in plan.normalized and "twenty-three boats" in plan.normalized
    assert len(plan.chunks) >= 2
    assert " ".join(plan.chunks).split() == plan.normalized.split()  # every word in exactly one chunk, in order
    assert plan.seeds == list(range(len(plan.chunks)))


def test_a_stream_starts_with_a_short_first_chunk_and_files_keep_upstreams_chunks(engine, voice):
    from voicetune.synthesis.engine import QUICK_START_CHARS

    files = engine.plan(TEXT, voice)
    # Without a listener (synthesize, narrate, scoring): upstream's chunks of the whole text, as before.
    assert files.chunks == engine.adapter.text_chunks(files.normalized, voice.audio, voice.text, 1.0, "en")
    streamed = engine.plan(TEXT, voice, quick_start=True)
    first, rest = streamed.chunks[0], streamed.chunks[1:]
    assert len(first) <= QUICK_START_CHARS and files.normalized.startswith(first)
    # then the rest as upstream cuts it: chunks of its full size
    rest_of_text = files.normalized[len(first) :].strip()
    assert rest == engine.adapter.text_chunks(rest_of_text, voice.audio, voice.text, 1.0, "en")
    assert max(map(len, rest)) > 2 * QUICK_START_CHARS


@pytest.mark.parametrize(
    "text, first",
    [
        ("Rice is served.", "Rice is served."),  # short text: all of it
        (
            "It is easy to tell the depth of a well. These days a chicken leg is rare.",
            "It is easy to tell the depth of a well.",
        ),
        (
            "Glue the sheet to the dark blue background, and then wait until it dries completely. It is easy.",
            "Glue the sheet to the dark blue background,",
        ),
        (
            "On the quiet evening of the fourteenth we walked all the way home along the river bank.",
            "On the quiet evening of the fourteenth we walked all the way",
        ),
    ],
)
def test_the_first_chunk_of_a_stream_is_a_sentence_a_clause_or_words(text, first):
    from voicetune.synthesis.engine import first_piece

    head, tail = first_piece(text)
    assert head == first
    assert f"{head} {tail}".split() == text.split()  # nothing lost or repeated


def test_the_engine_reads_abbreviations_dates_and_money_as_words(engine, voice):
    plan = engine.plan("Dr. Smith paid $5.50 on 2024-03-05, etc. Then he left.", voice)
    assert plan.normalized == (
        "Doctor Smith paid five dollars and fifty cents on March fifth, twenty twenty-four, et cetera. Then he left."
    )


def test_same_request_same_audio_and_the_stream_is_the_whole(engine, voice):
    whole = engine.synthesize(TEXT, voice, seed=5)
    again = engine.synthesize(TEXT, voice, seed=5)
    np.testing.assert_array_equal(whole.audio, again.audio)
    streamed = np.concatenate(list(engine.stream(engine.plan(TEXT, voice, seed=5), voice)))
    np.testing.assert_array_equal(streamed, whole.audio)
    other = engine.synthesize(TEXT, voice, seed=6)
    assert not np.array_equal(other.audio[:24000], whole.audio[:24000])
    # A chunk's audio depends on its own seed only: the second chunk alone is the same.
    plan = whole.plan
    alone = engine.speak_chunk(plan.chunks[1], plan.seeds[1], voice)
    pieces = []
    list(engine.stream(plan, voice, on_chunk=lambda i, audio: pieces.append(audio)))
    np.testing.assert_array_equal(alone, pieces[1])


@pytest.mark.parametrize(
    "lengths, overlap",
    [([5000, 7000, 3000], 3600), ([100, 5000], 3600), ([4000], 3600), ([3000, 50, 3000], 200), ([1000, 1000], 0)],
)
def test_cross_fader_streams_exactly_what_cross_fade_joins(lengths, overlap):
    from voicetune.models.base import CrossFader, cross_fade

    rng = np.random.default_rng(len(lengths))
    waves = [rng.uniform(-1, 1, n).astype(np.float32) for n in lengths]
    fader = CrossFader(overlap)
    streamed = np.concatenate([fader.add(w) for w in waves] + [fader.finish()])
    np.testing.assert_array_equal(streamed, cross_fade(waves, overlap))
    joined = lengths[0]
    for n in lengths[1:]:
        joined += n - min(overlap, joined, n)
    assert len(streamed) == joined


def test_cancel_stops_synthesis_inside_a_chunk(engine, voice):
    import threading

    from voicetune.synthesis.engine import Cancelled

    cancel = threading.Event()
    calls = []
    layers = {id(m) for m in engine.model.modules()}

    def count(module, args):  # cancel at the model's 3rd layer call: far inside the first chunk
        if id(module) in layers:
            calls.append(type(module).__name__)
            if len(calls) == 3:
                cancel.set()

    from torch.nn.modules.module import register_module_forward_pre_hook

    handle = register_module_forward_pre_hook(count)  # sees every layer call, before the engine's own check
    try:
        with pytest.raises(Cancelled):
            list(engine.stream(engine.plan(TEXT, voice), voice, cancel=cancel))
    finally:
        handle.remove()
    assert len(calls) == 3, calls  # not one layer call more after the cancel
    assert len(engine.synthesize("Still speaking.", voice).audio) > 0  # the engine is usable after it


def test_pool_keeps_models_loaded_and_unloads_the_least_recently_used(f5_voice_run):
    from voicetune.synthesis.engine import EnginePool

    pool = EnginePool(max_loaded=2)
    four, eight = pool.get(f5_voice_run, 4), pool.get(f5_voice_run, 8)
    assert pool.get(f5_voice_run, 4) is four  # loaded once, kept
    assert four.adapter.nfe_steps == 4 and eight.adapter.nfe_steps == 8
    pool.get(f5_voice_run, 16)  # a third: the least recently used (8) goes
    assert [k.rsplit("=", 1)[1] for k in pool.loaded()] == ["4", "16"]
    assert eight.model is None and pool.unloaded[-1].endswith("@nfe=8")


def test_synthesize_names_characters_the_model_cannot_say_and_says_notices_once(f5_voice_run, tmp_path):
    from voicetune.synthesis.engine import default_reference

    ref, ref_text = default_reference(
        next((f5_voice_run / "checkpoints").glob("step_*")), f5_voice_run.parent / "corpus"
    )
    result = run_cli(
        "synthesize",
        "--checkpoint",
        f5_voice_run,
        "--text",
        "Hello \U0001f600 there.",
        "--ref",
        ref,
        "--ref-text",
        ref_text,
        "--out",
        tmp_path / "out.wav",
        "--nfe",
        NFE,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "U+1F600" in result.stdout and "no sound for" in result.stdout
    # Two models loaded by one process (eval loads one per checkpoint): the vocoder is said once.
    code = (
        "import sys; from pathlib import Path; from voicetune.synthesis.engine import Engine\n"
        f"[Engine.load(Path({str(f5_voice_run)!r}), nfe=n).synthesize('Hi there.', None or "
        "Engine.load(Path(sys.argv[1]), nfe=n).default_voice()) for n in (2, 3)]\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(f5_voice_run)], env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("vocoder:") == 1, out.stdout


def test_a_run_s_own_voices_are_named_by_their_files_in_narrate_and_serve(f5_voice_run, tmp_path):
    """RUN/voices/NAME.wav with NAME.txt: a voice `narrate --voice NAME` and the server know."""
    import json
    import shutil

    from voicetune.synthesis.engine import Engine
    from voicetune.synthesis.service import SpeechService

    run = tmp_path / "me"
    shutil.copytree(f5_voice_run, run)
    corpus = f5_voice_run.parent / "corpus"
    clip_id, words = (corpus / "metadata_val.csv").read_text().splitlines()[0].split("|")[:2]
    (run / "voices").mkdir()
    shutil.copy(corpus / "wavs" / f"{clip_id}.wav", run / "voices" / "anna.wav")
    (run / "voices" / "anna.txt").write_text(words + "\n", encoding="utf-8")

    engine = Engine.load(run, nfe=NFE_STEPS)
    assert engine.voice_names() == ["default", "anna"]
    anna = engine.named_voice("anna")
    assert anna.name == "anna" and anna.text == words and anna.source == str(run / "voices" / "anna.wav")
    assert SpeechService({"me": run}).voice_names("me") == ["default", "anna"]
    with pytest.raises(UsageError, match=r"--voice bob: me has no voice of that name; its voices: default, anna \(add"):
        engine.named_voice("bob")

    book = tmp_path / "line.txt"
    book.write_text("The juice of lemons makes fine punch.", encoding="utf-8")
    args = ["narrate", book, "--checkpoint", run, "--nfe", NFE, "--no-check", "--out", tmp_path / "anna.wav"]
    done = run_cli(*args, "--voice", "anna", timeout=900)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "anna.json").read_text())["voice"] == "anna"
