"""XTTS in a language outside its 17: Georgian (`ka`, a script XTTS's tokenizer lacks) spoken by
espeak-ng. xtts-tiny trains on it through the CLI, `voicetune synthesize --language ka` speaks it,
and the export loads in coqui's own `Xtts.load_checkpoint` and speaks the new code through coqui's
`inference` once `voicetune.models.xtts_language.register("ka")` has been called."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from support.harness import run_cli, xtts_args
from voicetune.checkpoints.store import CheckpointStore, load_checkpoint
from voicetune.config import TrainConfig
from voicetune.errors import UsageError
from voicetune.models import xtts_language

GEORGIAN = [
    "გამარჯობა, მე მქვია ნინო.",
    "საქართველო ლამაზი ქვეყანაა.",
    "დღეს კარგი ამინდია.",
    "თბილისი საქართველოს დედაქალაქია.",
    "მე მიყვარს ქართული სიმღერები.",
    "ბავშვები ეზოში თამაშობენ.",
    "ჩვენ ხვალ ზღვაზე წავალთ.",
    "ეს წიგნი ძალიან საინტერესოა.",
    "მთებში თოვლი მოვიდა.",
    "დედამ გემრიელი პური გამოაცხო.",
    "მატარებელი შვიდ საათზე გადის.",
    "ძაღლი ბაღში ზის.",
]
SENTENCE = "გამარჯობა, თბილისი ლამაზი ქალაქია."  # not in the corpus; its letters are
STEPS = 12
TINY_BASE_TOKENS = 554  # xtts-tiny's own vocab.json (coqui's English BPE + XTTS's language tokens)


def tiny_adapter(**settings):
    from voicetune.models.xtts import create_tiny

    return create_tiny(TrainConfig.resolve({"model": "xtts-tiny", **settings}))


@pytest.fixture(scope="module")
def georgian_corpus(tmp_path_factory) -> Path:
    from voicetune.demo.corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(
        tmp_path_factory.mktemp("ka_corpus"), n_items=len(GEORGIAN), sample_rate=22050, voice="ka", sentences=GEORGIAN
    )


@pytest.fixture(scope="module")
def georgian_run(georgian_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ka_run") / "run"
    result = run_cli(
        "train",
        *xtts_args(
            georgian_corpus,
            run,
            "--language",
            "ka",
            "--save-every",
            str(STEPS),
            "--set",
            "max_sample_prompts=1",
            max_updates=STEPS,
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (run / "stdout.txt").write_text(result.stdout)
    return run


def test_training_on_georgian_extends_the_tokenizer_and_keeps_the_extension_in_the_checkpoint(georgian_run):
    out = (georgian_run / "stdout.txt").read_text()
    assert "--language ka is new to xtts-tiny; added [ka] and" in out
    final = CheckpointStore(georgian_run).latest_valid()
    loop = load_checkpoint(final.path, components=["loop"]).json["loop"]
    extension = loop["architecture"]["language_extension"]
    assert extension["language"] == "ka"
    letters = {ch for text in GEORGIAN for ch in text if "\u10d0" <= ch <= "\u10ff"}
    assert letters <= set(extension["tokens"])  # every Georgian letter of the text is a token
    assert any(len(token) > 1 for token in extension["tokens"])  # and BPE merges of them
    assert loop["architecture"]["text_tokens"] == TINY_BASE_TOKENS + 1 + len(extension["tokens"])
    gpt = load_checkpoint(final.path, components=["model"]).tensors["model"]
    assert gpt["xtts.gpt.text_embedding.weight"].shape[0] == loop["architecture"]["text_tokens"]
    # A milestone sample was spoken in Georgian by upstream's inference during training.
    assert (georgian_run / "samples" / f"step_{STEPS:08d}" / "val_0000_gen.wav").is_file()


def test_the_export_loads_in_coqui_and_speaks_georgian(georgian_run, georgian_corpus, tmp_path):
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    out = tmp_path / "export"
    result = run_cli("ckpt", "export", str(georgian_run), "--format", "xtts", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "vocab.json").read_bytes() == (georgian_run / "ready" / "vocab.json").read_bytes()

    xtts_language.register("ka")  # what a plain-coqui program calls before loading (docs/new-language.md)
    config = XttsConfig()
    config.load_json(str(out / "config.json"))
    assert "ka" in config.languages
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(out), eval=True)  # strict: every key and shape fits

    tokenizer = model.tokenizer
    ids = tokenizer.encode(SENTENCE, "ka")
    assert ids[0] == tokenizer.tokenizer.token_to_id("[ka]")
    assert tokenizer.tokenizer.token_to_id("[UNK]") not in ids
    georgian_ids = [i for i in ids if any("\u10d0" <= ch <= "\u10ff" for ch in tokenizer.tokenizer.id_to_token(i))]
    assert georgian_ids and min(georgian_ids) >= TINY_BASE_TOKENS  # the new tokens, after the old ones
    assert xtts_language.unknown_letters(tokenizer, "ფოსტა") == ["ფ"]  # a letter the dataset never had

    rows = tokenizer.get_number_tokens()
    assert rows > TINY_BASE_TOKENS
    for tensor in (model.gpt.text_embedding.weight, model.gpt.text_head.weight, model.gpt.text_head.bias):
        assert tensor.shape[0] == rows
        assert torch.isfinite(tensor[TINY_BASE_TOKENS:]).all() and tensor[TINY_BASE_TOKENS:].abs().sum() > 0

    latents, speaker = model.get_conditioning_latents(audio_path=[str(georgian_corpus / "wavs" / "espeak_0001.wav")])
    torch.manual_seed(0)
    wav = np.asarray(model.inference(SENTENCE, "ka", latents, speaker, max_new_tokens=20)["wav"])
    assert wav.ndim == 1 and len(wav) > 0 and np.isfinite(wav).all()


def test_synthesize_speaks_georgian_and_refuses_a_language_the_model_lacks(georgian_run, georgian_corpus, tmp_path):
    import soundfile as sf

    ref = georgian_corpus / "wavs" / "espeak_0001.wav"
    out = tmp_path / "ka.wav"
    result = run_cli(
        "synthesize",
        "--checkpoint",
        str(georgian_run),
        "--text",
        SENTENCE,
        "--ref",
        str(ref),
        "--out",
        str(out),
        "--language",
        "ka",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and len(audio) > 0 and np.isfinite(audio).all()

    result = run_cli(
        "synthesize",
        "--checkpoint",
        str(georgian_run),
        "--text",
        "xin chào",
        "--ref",
        str(ref),
        "--out",
        str(tmp_path / "vi.wav"),
        "--language",
        "vi",
    )
    assert result.returncode == 2
    assert "--language vi: this model speaks" in result.stdout + result.stderr and "ka" in result.stdout + result.stderr


def test_a_checkpoint_rebuilds_its_vocabulary_without_the_dataset(georgian_run):
    """Synthesis and resume take the extension from the checkpoint: the dataset may be gone."""
    final = CheckpointStore(georgian_run).latest_valid()
    architecture = load_checkpoint(final.path, components=["loop"]).json["loop"]["architecture"]
    adapter = tiny_adapter(language="ka")  # no --data
    adapter.use_saved_architecture(architecture)
    assert adapter.architecture()["text_tokens"] == architecture["text_tokens"]
    assert adapter.parts.vocab_json == (georgian_run / "ready" / "vocab.json").read_text(encoding="utf-8")


def test_a_resume_keeps_the_vocabulary_the_run_started_with(georgian_run, georgian_corpus, tmp_path):
    """A clip added later with a letter the run's vocabulary lacks is left out, not learnt anew:
    the weights' rows must keep meaning the same tokens."""
    import shutil

    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(georgian_run, run)
    shutil.copytree(georgian_corpus, data)
    shutil.copyfile(data / "wavs" / "espeak_0000.wav", data / "wavs" / "added.wav")
    with (data / "metadata.csv").open("a", encoding="utf-8") as metadata:
        metadata.write("added|ფოსტა დაიკეტა.|ფოსტა დაიკეტა.\n")
    result = run_cli(
        "train",
        *xtts_args(
            data,
            run,
            "--language",
            "ka",
            "--save-every",
            str(STEPS),
            "--set",
            "max_sample_prompts=0",
            "--data-changed",
            "restart-epoch",
            max_updates=STEPS + 1,
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resuming from {run / 'checkpoints' / f'step_{STEPS:08d}'}" in result.stdout
    assert "is new to xtts-tiny" not in result.stdout
    assert "1 text with characters the tokenizer does not know" in result.stdout


def test_the_extension_is_learnt_deterministically_and_leaves_other_languages_alone(tmp_path):
    from tokenizers import Tokenizer
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    from voicetune.models.xtts_files import tiny_vocab_json

    base = tiny_vocab_json(XttsConfig().languages)
    extension = xtts_language.learn_extension(base, "ka", GEORGIAN)
    assert extension == xtts_language.learn_extension(base, "ka", GEORGIAN)
    json.dumps(extension)  # plain JSON: it travels in the checkpoint's loop.json
    old, new = VoiceBpeTokenizer(), VoiceBpeTokenizer()
    old.tokenizer, new.tokenizer = (
        Tokenizer.from_str(base),
        Tokenizer.from_str(xtts_language.apply_extension(base, extension)),
    )
    for text, language in (
        ("the birch canoe slid on the smooth planks.", "en"),
        ("Привет, как дела?", "ru"),
        ("¿Dónde está la biblioteca?", "es"),
    ):
        assert new.encode(text, language) == old.encode(text, language)


def test_a_new_language_needs_its_dataset_and_a_language_code():
    with pytest.raises(UsageError, match=r"--language ka: XTTS speaks en, .*give --data DATASET"):
        _ = tiny_adapter(language="ka").parts
    with pytest.raises(UsageError, match=r"--language 'Georgian': give the language's ISO 639 code"):
        _ = tiny_adapter(language="Georgian", data="/nonexistent").parts
