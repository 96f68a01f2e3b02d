"""The other transcribers (pocketsphinx, none: existing transcripts) and the blocks whisper hears."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from speech_corpus import word_edits, words_for_wer

from support.harness import voicetune
from voicetune.data.ingest import load_source
from voicetune.data.segment import ClipLimits, PlannedClip, SpeechDetector, segment_speech
from voicetune.data.transcribe import (
    BATCH_WINDOWS,
    BLOCK_SECONDS,
    MAX_BLOCK_GAP,
    WhisperTranscriber,
    Word,
    _blocks,
    _even_batches,
    _repeats_itself,
    encoder_frames,
)
from voicetune.demo.recordings import build_recording, talk_plan

# pocketsphinx's US English model on espeak-ng's voice: about 0.8 measured. The bound catches
# silence, garbage or text given to the wrong clip (1.0 and more), not small changes.
MAX_POCKETSPHINX_WER = 0.9


def test_blocks_are_continuous_runs_of_clips_of_at_most_block_seconds():
    """Clips of 3-10 s with pauses of every length (music left out among them): each block is at
    most BLOCK_SECONDS from its first clip's start to its last clip's end, holds no long silence,
    and the blocks take every clip once, in order; clips that fit together are read together."""
    rng = np.random.default_rng(3)
    clips, time = [], 0.4
    for _ in range(40):
        duration = rng.uniform(3, 10)
        clips.append(PlannedClip(time, time + duration, time + 0.2, time + duration - 0.2))
        time += duration + rng.choice([0.0, 0.4, 1.5, 2.9, 9.0])
    blocks = _blocks(clips)
    assert [i for block in blocks for i in block] == list(range(len(clips)))
    for block in blocks:
        assert clips[block[-1]].end - clips[block[0]].start <= BLOCK_SECONDS
        assert all(clips[i + 1].start - clips[i].end <= MAX_BLOCK_GAP for i in block[:-1])
    # A block ends only where the next clip would not fit in it, or after a long silence.
    for block, following in zip(blocks, blocks[1:]):
        nxt = clips[following[0]]
        assert nxt.end - clips[block[0]].start > BLOCK_SECONDS or nxt.start - clips[block[-1]].end > MAX_BLOCK_GAP
    assert len(blocks) < len(clips) / 1.5


def test_a_decoding_loop_is_told_from_speech():
    """Whisper's loop test (text that gzip shrinks more than 2.4 times), which decides which
    windows are read again in a full window: it catches the loops whisper gave on short windows
    (a word or a sentence over and over), not real sentences, even with repeated words in them."""

    def words(text: str) -> list[Word]:
        return [Word(i, i + 0.5, " " + w) for i, w in enumerate(text.split())]

    assert _repeats_itself(words("It seems it's a " + "tell-" * 60 + "tell."))
    assert _repeats_itself(words("Smokey fires lack flame and heat. The soft cushion broke the man's fall. " * 6))
    assert not _repeats_itself(words("Smokey fires lack flame and heat. The soft cushion broke the man's fall."))
    assert not _repeats_itself(words("No, no, no, I said the red one, not the blue one: the red one is mine."))


def test_the_encoder_reads_the_audio_and_its_padding_within_whispers_window():
    assert encoder_frames(20.0, 100) == 2100
    assert encoder_frames(20.005, 100) == 2102  # an even count: the encoder halves it
    assert encoder_frames(29.5, 100) == 3000  # never past whisper's window
    assert encoder_frames(5.0, 100) == 1000  # a short window is read with more padding


def test_spans_are_batched_in_as_few_even_batches_as_fit_the_longest_in_the_smallest():
    """Spans sorted longest first go to the fewest batches of at most N, of even sizes, in order,
    the smaller batches first: a window is read at the length of its batch's longest, so like
    lengths share a batch, and the longest windows share theirs with fewer."""
    assert _even_batches([7, 3, 5, 1, 0], 2) == [[7], [3, 5], [1, 0]]
    assert _even_batches([7, 3, 5, 1, 0], 4) == [[7, 3], [5, 1, 0]]
    assert [len(b) for b in _even_batches(list(range(14)), 4)] == [3, 3, 4, 4]
    assert _even_batches([2, 0, 1], 4) == [[2, 0, 1]]
    assert _even_batches([], 2) == []


@pytest.mark.slow
def test_copies_of_whisper_side_by_side_hear_what_one_copy_hears(real_corpus, whisper_model):
    """`prepare --workers 2` sends one file's batches to two single-threaded copies of whisper at
    once: the words, their timing and the language are those one copy gives alone, batch by batch."""
    recording = real_corpus["es/menu.mp3"]
    audio = load_source(recording.path, 16000, -23.0).analysis
    plan, _ = segment_speech(audio, SpeechDetector(), ClipLimits())
    spans = [(plan.clips[b[0]].start, plan.clips[b[-1]].end) for b in _blocks(plan.clips)]
    assert len(_even_batches(spans, BATCH_WINDOWS)) >= 2, "the recording should need two batches or more"
    alone, language_alone = WhisperTranscriber(str(whisper_model), replicas=1).transcribe_spans(audio, spans)
    side_by_side, language = WhisperTranscriber(str(whisper_model), replicas=2).transcribe_spans(audio, spans)
    assert language == language_alone == "es"
    assert [t.words for t in side_by_side] == [t.words for t in alone]
    assert all(t.words for t in alone)


@pytest.mark.slow
def test_pocketsphinx_transcribes_offline(tmp_path, corpus):
    dataset = tmp_path / "dataset"
    voicetune("prepare", corpus["interview.mp4"].path, "--out", dataset, "--transcriber", "pocketsphinx", check_exit=0)
    manifest = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    recording = corpus["interview.mp4"].recording
    edits = words = 0
    for clip in manifest:
        reference = words_for_wer(recording.text_between(clip["start"], clip["end"]))
        assert clip["text"] and clip["language"] == "en" and clip["asr_confidence"] is None
        edits += word_edits(reference, words_for_wer(clip["text"]))
        words += len(reference)
    print(f"\npocketsphinx word error rate: {edits / words:.3f}")
    assert edits / words <= MAX_POCKETSPHINX_WER


@pytest.mark.slow
def test_pocketsphinx_files_side_by_side_get_what_one_at_a_time_gets(tmp_path, corpus):
    """`--workers 2` transcribes two files at once, in threads of one process: the clips and their
    texts are those of `--workers 1`, one file after the other."""
    inputs = [corpus[name].path for name in ("interview.mp4", "studio.wav")]
    texts = {}
    for workers in ("1", "2"):
        dataset = tmp_path / f"workers{workers}"
        voicetune(
            "prepare", *inputs, "--out", dataset, "--transcriber", "pocketsphinx", "--workers", workers, check_exit=0
        )
        manifest = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
        texts[workers] = {clip["id"]: clip["text"] for clip in manifest}
    assert len({clip_id.rsplit("_", 2)[0] for clip_id in texts["1"]}) == 2
    assert texts["2"] == texts["1"]


def test_transcriber_none_keeps_existing_transcripts(tmp_path, espeak_cache):
    """Transcripts beside the audio (.txt, .lab) or in an LJSpeech metadata.csv are used as they are."""
    inputs = tmp_path / "inputs"
    (inputs / "ljs" / "wavs").mkdir(parents=True)
    spoken = {}
    for name, first in (("take1", 0), ("take2", 3), ("ljs/wavs/item_a", 6), ("take3", 9)):
        recording = build_recording(talk_plan(3, [0.5], first=first), cache_dir=espeak_cache)
        sf.write(inputs / f"{name}.wav", recording.samples, recording.sample_rate)
        spoken[name.rsplit("/", 1)[-1]] = recording.text
    (inputs / "take1.txt").write_text(spoken["take1"] + " It took 2 tries.\n", encoding="utf-8")
    (inputs / "take2.lab").write_text(spoken["take2"], encoding="utf-8")
    (inputs / "ljs" / "metadata.csv").write_text(
        f"item_a|{spoken['item_a']}|{spoken['item_a'].lower()}\n", encoding="utf-8"
    )
    dataset = tmp_path / "dataset"
    result = voicetune(
        "prepare",
        inputs,
        "--out",
        dataset,
        "--transcriber",
        "none",
        "--numbers-to-words",
        "--language",
        "en",
        check_exit=0,
    )
    manifest = {
        row["id"].rsplit("_", 2)[0]: row
        for row in map(json.loads, (dataset / "manifest.jsonl").read_text().splitlines())
    }
    assert set(manifest) == {"take1", "take2", "item_a"}
    assert manifest["take1"]["text"].endswith("It took 2 tries.")
    assert manifest["take1"]["normalized_text"].endswith("It took two tries.")
    assert manifest["take2"]["text"] == spoken["take2"]
    assert manifest["item_a"]["text"] == spoken["item_a"]
    rejected = json.loads((dataset / "report.json").read_text())["rejections"]
    assert [(r["path"].rsplit("/", 1)[-1], r["reason"]) for r in rejected] == [("take3.wav", "no_transcript")]
    assert "no_transcript" in result.stdout
