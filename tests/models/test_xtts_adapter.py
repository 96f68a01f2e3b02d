"""XTTS on coqui-tts, for real: xtts-tiny (upstream's classes at toy sizes) trains through the
`voicetune train` CLI on espeak speech, its export loads in upstream's own `Xtts.load_checkpoint`
and speaks, and the files of a coqui XTTS folder (the original pickled model.pth included) load
through voicetune's safe reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from support.harness import XTTS_STEPS, cli_env, run_cli, xtts_args
from voicetune.checkpoints.store import CheckpointStore, load_checkpoint
from voicetune.checkpoints.upstream import load_pickled_checkpoint
from voicetune.config import TrainConfig
from voicetune.errors import CheckpointError, UsageError
from voicetune.train.reporting import read_metrics

LOSS_DROP = 0.7  # mean loss of the last 5 updates below 70% of the first 5 (measured: ~53%)


def tiny_adapter(**settings):
    from voicetune.models.xtts import create_tiny

    return create_tiny(TrainConfig.resolve({"model": "xtts-tiny", **settings}))


@pytest.fixture(scope="module")
def trained(tiny_full_run):
    """(adapter, model with the run's final EMA weights, run folder)."""
    adapter = tiny_adapter()
    torch.manual_seed(0)
    model = adapter.build_model()
    final = CheckpointStore(tiny_full_run).latest_valid()
    adapter.load_checkpoint_weights(model, load_checkpoint(final.path).tensors["ema"])
    model.eval()
    return adapter, model, tiny_full_run


def test_tiny_trains_through_the_cli_and_its_loss_falls(tiny_full_run, xtts_corpus):
    out = (tiny_full_run / "stdout.txt").read_text()
    assert "model xtts-tiny: 705,618 trainable parameters" in out  # the whole GPT, nothing else
    metrics = read_metrics(tiny_full_run / "metrics.jsonl")
    losses = [metrics[s]["train/loss"] for s in range(1, XTTS_STEPS + 1)]
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < LOSS_DROP * first, f"loss {first:.3f} -> {last:.3f}"
    assert np.isfinite(metrics[XTTS_STEPS]["val/loss"])

    # The checkpoint holds the GPT (what upstream's recipe trains), not the frozen decoder.
    final = CheckpointStore(tiny_full_run).latest_valid()
    keys = load_checkpoint(final.path, components=["model"]).tensors["model"].keys()
    assert keys and all(k.startswith("xtts.gpt.") for k in keys)

    # DVAE codes cached once per clip, keyed by content; the built-in parts in upstream's formats.
    cache = tiny_full_run / "cache" / "xtts"
    assert len(list((cache / "codes").glob("*.safetensors"))) == 14
    for name in ("dvae.pth", "mel_stats.pth", "vocab.json", "config.json"):
        assert (cache / "tiny_parts" / name).is_file()
    assert isinstance(load_pickled_checkpoint(cache / "tiny_parts" / "dvae.pth"), dict)

    # A sample spoken by upstream's inference (GPT generate + HiFi-GAN): finite, of plausible length.
    import soundfile as sf

    gen, rate = sf.read(tiny_full_run / "samples" / f"step_{XTTS_STEPS:08d}" / "val_0000_gen.wav")
    assert rate == 24000 and np.isfinite(gen).all() and 0.04 < len(gen) / rate < 12
    assert (tiny_full_run / "samples" / f"step_{XTTS_STEPS:08d}" / "val_0000_mel.png").is_file()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    adapter, model, _ = trained
    out = tmp_path_factory.mktemp("export") / "xtts"
    written = adapter.export(model, out, "xtts")
    assert {p.name for p in written} == {"model.pth", "dvae.pth", "mel_stats.pth", "vocab.json", "config.json"}
    return out


def test_export_loads_in_upstream_xtts_and_speaks(trained, exported, xtts_corpus, tmp_path):
    from safetensors.torch import load_file
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    adapter, model, _ = trained
    out = exported
    for pth in ("model.pth", "dvae.pth", "mel_stats.pth"):
        torch.load(out / pth, weights_only=True)  # plain tensors only

    config = XttsConfig()
    config.load_json(str(out / "config.json"))
    upstream = Xtts.init_from_config(config)
    upstream.load_checkpoint(config, checkpoint_dir=str(out), eval=True)  # strict: every key fits
    for name, tensor in adapter.checkpoint_weights(model).items():
        assert torch.equal(upstream.state_dict()[name[len("xtts.") :]], tensor), name
    result = upstream.synthesize(
        "the birch canoe slid on the smooth planks.",
        speaker_wav=str(xtts_corpus / "wavs" / "espeak_0001.wav"),
        language="en",
        max_new_tokens=20,
    )
    wav = np.asarray(result["wav"])
    assert wav.ndim == 1 and 0 < len(wav) <= 21 * 1024 * 24000 / 22050 + 1 and np.isfinite(wav).all()

    flat = adapter.export(model, tmp_path / "flat", "safetensors")
    assert load_file(str(flat[0])).keys() == torch.load(out / "model.pth", weights_only=True)["model"].keys()
    with pytest.raises(UsageError, match="xtts or safetensors"):
        adapter.export(model, tmp_path / "other", "f5")


def test_a_coqui_xtts_folder_loads_as_pretrained_including_the_original_pickled_model_pth(trained, exported, tmp_path):
    """The released model.pth pickles coqui's config classes (under an old module path): it loads
    through load_pickled_checkpoint with just those classes allowed, and the weights arrive."""
    import shutil

    import TTS.tts.models.xtts as xtts_module
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig

    adapter, model, _ = trained
    folder = tmp_path / "coqui_folder"
    shutil.copytree(exported, folder)
    state = torch.load(folder / "model.pth", weights_only=True)["model"]
    config = XttsConfig()
    config.load_json(str(folder / "config.json"))
    # Pickle the config objects the way the original file has them: classes of TTS.tts.models.xtts.
    moved = [(cls, cls.__module__) for cls in (XttsArgs, XttsAudioConfig)]
    try:
        for cls, _ in moved:
            cls.__module__ = xtts_module.__name__
        torch.save({"config": config, "model": {f"xtts.{k}": v for k, v in state.items()}}, folder / "model.pth")
    finally:
        for cls, module in moved:
            cls.__module__ = module
    with pytest.raises(CheckpointError, match="refused"):
        load_pickled_checkpoint(folder / "model.pth")  # no class allowed: refused, never loaded unsafely

    from voicetune.models.xtts import XttsAdapter

    pretrained = XttsAdapter(TrainConfig.resolve({"model": "xtts-tiny", "pretrained": str(folder)}), "xtts-tiny", None)
    torch.manual_seed(123)  # another seed: every weight must come from the folder
    loaded = pretrained.build_model()
    assert pretrained.architecture() == adapter.architecture()
    for name, tensor in model.state_dict().items():
        if not name.startswith("xtts.gpt.gpt_inference") and ".gpt.wte." not in name:
            assert torch.equal(loaded.state_dict()[name], tensor), name

    # --init-from an upstream file loads the same GPT into a fresh model.
    fresh = adapter.build_model()
    adapter.load_upstream_weights(fresh, folder)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in adapter.checkpoint_weights(model).items())

    (folder / "dvae.pth").unlink()
    with pytest.raises(UsageError, match="lacks dvae.pth"):
        _ = XttsAdapter(TrainConfig.resolve({"pretrained": str(folder)}), "xtts-tiny", None).parts


def test_synthesize_splits_long_text_repeats_with_a_seed_and_follows_speed(trained, xtts_corpus):
    from voicetune.models.xtts import split_sentences

    adapter, model, _ = trained
    ref = xtts_corpus / "wavs" / "espeak_0002.wav"
    first, rate = adapter.synthesize_seeded(model, "Go now. Run!", ref, language="en", seed=7)
    again, _ = adapter.synthesize_seeded(model, "Go now. Run!", ref, language="en", seed=7)
    assert rate == 24000 and first.dtype == np.float32 and np.isfinite(first).all() and len(first) > 0
    assert np.array_equal(first, again)
    # Same seed, same codes: speed 0.5 stretches the GPT latents (upstream's length_scale) to twice the audio.
    normal, _ = adapter.synthesize_seeded(model, "Go.", ref, seed=3)
    slow, _ = adapter.synthesize_seeded(model, "Go.", ref, seed=3, speed=0.5)
    assert 1.8 < len(slow) / len(normal) < 2.3  # HiFi-GAN's edges make very short clips not quite 2x

    long = " ".join(["The juice of lemons makes fine punch."] * 12)
    pieces = split_sentences(long, 120)
    assert all(len(p) <= 120 for p in pieces) and " ".join(pieces) == long and len(pieces) == 4
    assert split_sentences("a" * 30 + ", " + "b" * 30, 40) == ["a" * 30 + ",", "b" * 30]


def test_engine_chunks_reuse_the_reference_conditioning_and_sound_the_same(trained, xtts_corpus):
    """The synthesis engine's chunks keep the reference's conditioning latents (computed once per
    model and clip); a chunk sounds exactly as when they are computed anew."""
    from voicetune.data.ingest import read_reference

    adapter, model, _ = trained
    ref, rate = read_reference(xtts_corpus / "wavs" / "espeak_0002.wav")
    import soxr

    ref = soxr.resample(ref, rate, adapter.sample_rate).astype(np.float32)
    adapter.kept_conditioning.clear()
    chunks = []
    for seed, sentence in enumerate(["Go now.", "Run to the hills!"]):
        torch.manual_seed(seed)
        chunks.append(adapter.synthesize_chunk(model, sentence, ref, None, language="en"))
    assert [len(kept) for kept in adapter.kept_conditioning.values()] == [1]  # one clip, kept once
    for seed, sentence in enumerate(["Go now.", "Run to the hills!"]):
        torch.manual_seed(seed)
        anew = adapter.speak(model, sentence, ref, adapter.sample_rate, "en")  # training's path: not kept
        np.testing.assert_array_equal(chunks[seed], anew)
    assert [len(kept) for kept in adapter.kept_conditioning.values()] == [1]


def test_load_data_resamples_caches_codes_and_honours_a_given_split(toy_corpus, tmp_path):
    """16 kHz clips become 22.05 kHz codes (one per 1024 samples), computed once; a folder's own
    metadata_train.csv / metadata_val.csv decide the split."""
    import soundfile as sf

    adapter = tiny_adapter()
    cache = tmp_path / "cache"
    splits = adapter.load_data(toy_corpus, cache)
    assert len(splits.train) + len(splits.val) == 16 and len(splits.val) >= 1
    item = splits.train[0]
    seconds = sf.info(str(splits.train.paths[0])).duration
    assert abs(len(item["wav"]) - seconds * 22050) < 2
    assert abs(len(item["codes"]) - len(item["wav"]) / 1024) <= 2
    files = sorted((cache / "xtts" / "codes").iterdir())
    stamps = [f.stat().st_mtime_ns for f in files]
    again = tiny_adapter().load_data(toy_corpus, cache)
    assert again.fingerprint == splits.fingerprint
    assert [f.stat().st_mtime_ns for f in sorted((cache / "xtts" / "codes").iterdir())] == stamps
    assert all(torch.equal(a, b) for a, b in zip(splits.train.codes, again.train.codes))
    other_language = tiny_adapter(language="es").load_data(toy_corpus, cache)
    assert other_language.fingerprint != splits.fingerprint

    given = tmp_path / "given"
    given.mkdir()
    os.symlink(toy_corpus / "wavs", given / "wavs")
    rows = (toy_corpus / "metadata.csv").read_text().splitlines()
    (given / "metadata_train.csv").write_text("\n".join(rows[:12]) + "\n")
    (given / "metadata_val.csv").write_text("\n".join(rows[12:]) + "\n")
    split = adapter.load_data(given, cache)
    assert (len(split.train), len(split.val)) == (12, 4)

    batch = adapter.collate([splits.train[i] for i in range(3)])
    assert batch["text_inputs"].shape[0] == 3 and batch["wavs"].shape[1] == int(batch["wav_lengths"].max())
    with pytest.raises(UsageError, match="--language xx"):
        tiny_adapter(language="xx").load_data(toy_corpus, cache)


def test_xtts_v2_offline_says_how_to_pass_a_local_folder(xtts_corpus, tmp_path):
    result = run_cli(
        "train",
        *xtts_args(xtts_corpus, tmp_path / "run", max_updates=1)[:4],
        "--model",
        "xtts-v2",
        env=cli_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf")),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "cannot download coqui/XTTS-v2" in message and "--pretrained FOLDER" in message
    assert "Traceback" not in result.stderr

    from voicetune.models.xtts_files import resolve_pretrained

    with pytest.raises(UsageError, match="no such folder"):
        resolve_pretrained(str(tmp_path / "nowhere" / "x"))


def test_synthesize_and_export_commands_on_the_xtts_run(tiny_full_run, xtts_corpus, tmp_path):
    """`voicetune synthesize` and `voicetune ckpt export --format xtts` on the run folder (its best)."""
    import soundfile as sf

    out = tmp_path / "hello.wav"
    result = run_cli(
        "synthesize",
        "--checkpoint",
        str(tiny_full_run),
        "--ref",
        str(xtts_corpus / "wavs" / "espeak_0001.wav"),
        "--text",
        "Go now. Run!",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and len(audio) > 0 and np.isfinite(audio).all()

    exported = tmp_path / "xtts"
    result = run_cli("ckpt", "export", str(tiny_full_run), "--format", "xtts", "--out", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(exported / "config.json"))
    upstream = Xtts(config)
    upstream.load_checkpoint(config, checkpoint_dir=str(exported), eval=True)  # strict
    # Training already exported the same best checkpoint to RUN/ready/.
    ready = torch.load(tiny_full_run / "ready" / "model.pth", weights_only=True)["model"]
    again = torch.load(exported / "model.pth", weights_only=True)["model"]
    assert ready.keys() == again.keys() and all(torch.equal(ready[k], again[k]) for k in ready)
