"""A new script on real speech: Russian telephone prompts (asterisk-core-sounds-ru, one voice, with
the index texts), prepared with `--language ru`, then F5-TTS trained on them with a vocabulary that
has no Cyrillic letter (an English fine-tune's vocab.txt): the letters are added, reported, and
upstream's `load_model` takes the export with the extended vocabulary.

Measured: whisper-base WER 0.10 (9 word edits in 90 words) on 16 prompts against the index texts.
"""

from __future__ import annotations

import json

import pytest
from real_speech import PROMPT_RATE, RUSSIAN, _save, build_real_recording, clips_wer, load_prompts, require_packages

from support.harness import WHISPER_WORKERS, run_cli, voicetune

MAX_RUSSIAN_WER = 0.2  # measured 0.10; above 0.2 words are lost or garbled, not a word more or less
ENGLISH_LETTERS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'-\""


@pytest.fixture(scope="module")
def russian(tmp_path_factory, whisper_model):
    require_packages((RUSSIAN,))
    folder = tmp_path_factory.mktemp("russian")
    recording = build_real_recording(
        load_prompts(RUSSIAN)[:16], [0.6, 1.0, 0.4, 1.3], RUSSIAN, folder / "calls" / "zvonok.wav"
    )
    _save(recording, recording.path, PROMPT_RATE)
    dataset = folder / "dataset"
    voicetune(
        "prepare",
        recording.path.parent,
        "--out",
        dataset,
        "--whisper-model",
        whisper_model,
        "--language",
        RUSSIAN,
        "--numbers-to-words",
        "--workers",
        WHISPER_WORKERS,
        check_exit=0,
    )
    manifest = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return recording, dataset, manifest


@pytest.mark.slow
def test_russian_transcripts_match_the_index_texts(russian):
    recording, _, manifest = russian
    assert manifest and {clip["language"] for clip in manifest} == {RUSSIAN}
    edits, words = clips_wer(recording, manifest)
    print(f"\n--language ru: WER {edits / words:.3f} ({edits} edits in {words} words)")
    assert edits / words <= MAX_RUSSIAN_WER
    assert all(any("а" <= c.lower() <= "я" for c in clip["text"]) for clip in manifest)


@pytest.mark.slow
def test_f5_learns_the_cyrillic_letters_and_upstream_loads_the_export(russian, tmp_path):
    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT
    from omegaconf import OmegaConf

    _, dataset, manifest = russian
    english = tmp_path / "vocab_en.txt"
    english.write_text("".join(c + "\n" for c in ENGLISH_LETTERS), encoding="utf-8")
    letters = sorted({c for clip in manifest for c in clip["normalized_text"]} - set(ENGLISH_LETTERS))
    assert sum("\u0400" <= c <= "\u04ff" for c in letters) >= 20  # (and any punctuation English lacks)
    run = tmp_path / "run"
    trained = run_cli(
        "train",
        "--data",
        dataset,
        "--run",
        run,
        "--model",
        "f5-tiny",
        "--vocab",
        english,
        "--max-updates",
        "2",
        "--save-every",
        "2",
        "--workers",
        "0",
        "--set",
        "samples=false",
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    said = " ".join(trained.stdout.split())
    assert f"{len(letters)} characters of the dataset are not in" in said and "added as new tokens" in said
    assert all(letter in said for letter in letters)

    export = tmp_path / "export"
    exported = run_cli("ckpt", "export", run, "--format", "f5", "--out", export)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    vocab = (export / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[len(ENGLISH_LETTERS) : len(ENGLISH_LETTERS) + len(letters)] == letters
    config = OmegaConf.load(export / "model.yaml")
    upstream = load_model(
        DiT, config.model.arch, str(export / "model.safetensors"), vocab_file=str(export / "vocab.txt"), device="cpu"
    )  # a strict load: the text embedding has a row per Cyrillic letter
    rows = upstream.transformer.text_embed.text_embed.weight.shape[0]
    assert rows == len(ENGLISH_LETTERS) + len(letters) + 1  # and upstream's filler token
