"""The F5-TTS adapter on real f5-tts code: f5-tiny on espeak-ng speech, upstream's file formats,
upstream's own inference loader and Trainer. No part of f5_tts is mocked."""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.*

from voicetune.config import TrainConfig
from voicetune.errors import CheckpointError, UsageError, VoicetuneError
from voicetune.models.f5 import F5Adapter
from voicetune.models.f5.spec import read_upstream_config
from voicetune.models.f5.vocab import UPSTREAM_VOCAB, read_vocab
from voicetune.models.f5.weights import NEW_ROWS_SEED, TEXT_EMBED_KEY
from voicetune.models.registry import create_adapter, model_names

N_CLIPS = 16
NEW_CHAR = "þ"  # not in upstream's vocab.txt (its capital Þ is)


def make_adapter(data: Path | None, **flags) -> F5Adapter:
    config = TrainConfig.resolve({"model": "f5-tiny", "data": str(data) if data else None, **flags})
    adapter = create_adapter(config)
    assert isinstance(adapter, F5Adapter)
    return adapter


def randomized(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Every weight perturbed: a fresh DiT has zero output layers, so outputs would all be equal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on 2 shared cores, two threads are up to 6x slower when another
    process is busy (OpenMP threads wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from voicetune.demo.corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("f5_corpus"), n_items=N_CLIPS)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("f5_cache")


@pytest.fixture(scope="session")
def tiny(corpus, cache_dir):
    """(adapter, splits) of f5-tiny on the corpus; the session's first load fills the cache."""
    adapter = make_adapter(corpus)
    return adapter, adapter.load_data(corpus, cache_dir)


@pytest.fixture(scope="session")
def upstream_checkpoint(corpus, tmp_path_factory) -> Path:
    """model_last.pt of 2 updates of upstream's own Trainer on f5-tiny."""
    from support.upstream_f5 import upstream_checkpoint as train_upstream

    return train_upstream(corpus, tmp_path_factory.mktemp("upstream_trainer"), updates=2)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VOICETUNE_VOCOS", raising=False)


# ---- models ---------------------------------------------------------------------------------


def test_model_names_and_upstream_architectures():
    assert {"f5-tiny", "f5-v1-small", "f5-v1-base"} <= set(model_names())
    for name, upstream in (("f5-v1-small", "F5TTS_v1_Small.yaml"), ("f5-v1-base", "F5TTS_v1_Base.yaml")):
        adapter = make_adapter(None, model=name)
        assert adapter.spec.arch == read_upstream_config(upstream)["model"]["arch"]
        assert adapter.spec.mel == {
            "target_sample_rate": 24000,
            "n_mel_channels": 100,
            "hop_length": 256,
            "win_length": 1024,
            "n_fft": 1024,
            "mel_spec_type": "vocos",
        }
    assert (
        make_adapter(None, model="f5-v1-base").pretrained
        == "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
    )
    assert make_adapter(None, model="f5-v1-base", pretrained="none").pretrained is None
    model = make_adapter(None).build_model()
    assert type(model).__name__ == "CFM" and type(model.transformer).__name__ == "DiT"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


# ---- data -----------------------------------------------------------------------------------


def test_load_data_splits_lengths_and_fingerprint(tiny, corpus):
    adapter, splits = tiny
    assert len(splits.train) + len(splits.val) == N_CLIPS and 1 <= len(splits.val) <= 4
    assert splits.description.startswith(f"{len(splits.train)} train / {len(splits.val)} val clips")
    item = splits.train[0]
    clip = splits.train.clips[0]
    assert item["mel_spec"].shape == (100, splits.train_lengths[0])
    import soundfile as sf

    seconds = sf.info(clip.wav).duration
    assert splits.train_lengths[0] == int(seconds * 24000) // 256 + 1  # centered STFT frames
    assert item["text"].tolist() == [adapter.vocabulary.char_map[c] for c in clip.text]  # English: one token per char
    assert {c.id for c in splits.val.clips}.isdisjoint(c.id for c in splits.train.clips)
    again = make_adapter(corpus).load_data(corpus, corpus.parent / "other_cache")
    assert again.fingerprint == splits.fingerprint  # content, not cache location
    assert [c.id for c in again.val.clips] == [c.id for c in splits.val.clips]  # split is a stable hash


def test_mel_cache_is_reused_and_keyed_by_content(tiny, corpus, cache_dir, tmp_path):
    _, splits = tiny
    cached = sorted((cache_dir / "f5-mel").rglob("*.npy"))
    assert len(cached) == N_CLIPS
    mtimes = {p: p.stat().st_mtime_ns for p in cached}
    adapter = make_adapter(corpus)
    from voicetune.models.f5 import data as f5_data

    computed = []
    original = f5_data.MelCache.mel_of
    f5_data.MelCache.mel_of = lambda self, audio: computed.append(1) or original(self, audio)
    try:
        reloaded = adapter.load_data(corpus, cache_dir)
    finally:
        f5_data.MelCache.mel_of = original
    assert computed == [] and {p: p.stat().st_mtime_ns for p in cached} == mtimes
    assert reloaded.fingerprint == splits.fingerprint
    assert not list((cache_dir / "f5-mel").rglob(".*tmp*"))

    # An edited wav gets a new cache entry and a new fingerprint.
    edited = tmp_path / "edited"
    shutil.copytree(corpus, edited)
    wav = edited / "wavs" / "espeak_0000.wav"
    import soundfile as sf

    audio, rate = sf.read(wav, dtype="float32")
    sf.write(wav, audio * 0.5, rate, subtype="PCM_16")
    changed = make_adapter(edited).load_data(edited, cache_dir)
    assert changed.fingerprint != splits.fingerprint
    assert len(list((cache_dir / "f5-mel").rglob("*.npy"))) == N_CLIPS + 1


def test_metadata_files_normalized_text_resampling_and_errors(corpus, cache_dir, tmp_path):
    from voicetune.demo.corpus import write_ljspeech_corpus

    data = write_ljspeech_corpus(tmp_path / "at16k", n_items=3, sample_rate=16000)
    rows = (data / "metadata.csv").read_text().splitlines()
    (data / "metadata_train.csv").write_text("\n".join(rows[:2]) + "\n")
    item_id, text, _ = rows[2].split("|")
    (data / "metadata_val.csv").write_text(f"{item_id}|raw TEXT 3|{text}\n")
    splits = make_adapter(data).load_data(data, cache_dir)
    assert [c.id for c in splits.train.clips] == ["espeak_0000", "espeak_0001"]
    assert [(c.id, c.text) for c in splits.val.clips] == [("espeak_0002", text)]  # the normalized column
    # 16 kHz audio is resampled to 24 kHz: same frames as the 24 kHz rendering of the same sentence.
    ref = make_adapter(corpus).load_data(corpus, cache_dir)
    frames_24k = dict(zip((c.id for c in ref.train.clips + ref.val.clips), ref.train_lengths + ref.val_lengths))
    for clip, frames in zip(splits.train.clips, splits.train_lengths):
        assert abs(frames - frames_24k[clip.id]) <= 1

    (data / "metadata_val.csv").write_text("missing_clip|some text\n")
    with pytest.raises(UsageError, match="missing_clip.wav does not exist"):
        make_adapter(data).load_data(data, cache_dir)
    with pytest.raises(UsageError, match="no metadata.csv"):
        make_adapter(tmp_path).load_data(tmp_path, cache_dir)


# ---- loss -----------------------------------------------------------------------------------


def test_collate_and_loss(tiny):
    adapter, splits = tiny
    items = [splits.train[i] for i in range(3)]
    batch = adapter.collate(items)
    assert batch["mel"].shape == (3, 100, max(splits.train_lengths[:3]))
    assert batch["mel_lengths"].tolist() == splits.train_lengths[:3]
    assert batch["text"].shape[0] == 3 and (batch["text"][batch["text"] < 0] == -1).all()
    torch.manual_seed(0)
    model = randomized(adapter.build_model())
    python_state = random.getstate()
    torch.manual_seed(5)
    loss = adapter.compute_loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert random.getstate() == python_state  # CFM's random.random() drops come from torch's generator
    torch.manual_seed(5)
    assert adapter.compute_loss(model, batch).item() == loss.item()  # a function of torch's RNG only


@pytest.mark.slow
def test_plain_adamw_steps_reduce_the_loss(tiny):
    """100 AdamW updates on 4 clips: the fixed-noise loss falls below 20% of its start (the mel's
    mean and scale are learnt first), and keeps falling after that (below 80% of its value at
    update 30). (About 70% and 72% of those bounds, measured.)"""
    adapter, splits = tiny
    batch = adapter.collate([splits.train[i] for i in range(4)])
    torch.manual_seed(0)
    model = adapter.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def fixed_noise_loss() -> float:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)
            value = sum(adapter.compute_loss(model, batch).item() for _ in range(8)) / 8
        model.train()
        return value

    start = fixed_noise_loss()
    for update in range(1, 101):
        adapter.compute_loss(model, batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if update == 30:
            at_30 = fixed_noise_loss()
    end = fixed_noise_loss()
    print(f"fixed-noise loss: start {start:.3f}, update 30 {at_30:.3f}, update 100 {end:.3f}")
    assert end < 0.2 * start and end < 0.8 * at_30


# ---- vocabulary -----------------------------------------------------------------------------


def test_vocab_extension_grows_embedding_and_is_reported(corpus, cache_dir, tmp_path, capsys, caplog):
    assert NEW_CHAR not in read_vocab(None).char_map
    data = tmp_path / "with_thorn"
    shutil.copytree(corpus, data)
    rows = (data / "metadata.csv").read_text(encoding="utf-8").splitlines()
    item_id, text, _ = rows[0].split("|")
    rows[0] = f"{item_id}|{text}|{text} {NEW_CHAR}{NEW_CHAR}a"
    (data / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    plain = make_adapter(corpus)
    caplog.set_level(logging.INFO, logger="voicetune")
    adapter = make_adapter(data)
    splits = adapter.load_data(data, cache_dir)
    assert adapter.vocabulary.added == (NEW_CHAR,)
    out = " ".join(capsys.readouterr().out.split())  # the console may wrap lines
    assert "added as new tokens" in out and NEW_CHAR in out
    assert any(NEW_CHAR in r.getMessage() for r in caplog.records)
    arch, plain_arch = adapter.architecture(), plain.architecture()
    assert arch["vocab_size"] == plain_arch["vocab_size"] + 1 == 2546
    assert arch["vocab_added"] == [NEW_CHAR] and arch["vocab_sha256"] != plain_arch["vocab_sha256"]
    clip = next(c for c in splits.train.clips + splits.val.clips if c.id == item_id)
    assert clip.tokens[-3:-1] == (2545, 2545)

    # Upstream weights (2545 tokens) grow by one row, initialized as upstream's expand_model_embeddings.
    torch.manual_seed(0)
    source = randomized(plain.build_model())
    from safetensors.torch import save_file

    released = tmp_path / "released.safetensors"
    save_file({f"ema_model.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(released))
    model = adapter.build_model()
    adapter.load_upstream_weights(model, released)
    embed = model.state_dict()[TEXT_EMBED_KEY]
    assert embed.shape == (2547, 64)
    assert torch.equal(embed[:2546], source.state_dict()[TEXT_EMBED_KEY])
    assert torch.equal(embed[2546:], torch.randn((1, 64), generator=torch.Generator().manual_seed(NEW_ROWS_SEED)))
    assert "grown by 1 rows" in " ".join(capsys.readouterr().out.split())

    # A resume whose vocabulary differs cannot load the weights: the error says why.
    with pytest.raises(CheckpointError, match="vocabulary has 2545 tokens, this model's 2546"):
        adapter.load_checkpoint_weights(adapter.build_model(), dict(source.state_dict()))


def test_vocab_extension_reports_the_spanish_and_portuguese_letters_it_adds(tmp_path, capsys):
    """A vocabulary of English letters (a user's own vocab.txt) meets a Spanish and Portuguese
    dataset: every accented letter becomes a token, and the report names each one. One row is
    written decomposed (e + combining accent): it adds the same letters, no combining marks."""
    import unicodedata

    from voicetune.data.files import write_wav_pcm16

    letters = set("áéíóúñüãõâêôçà")
    english = tmp_path / "vocab_en.txt"
    english.write_text(
        "".join(c + "\n" for c in " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'-\""), encoding="utf-8"
    )
    data = tmp_path / "es_pt"
    (data / "wavs").mkdir(parents=True)
    rows = [
        "¿Qué opinión tiene usted? ¡Sí, señor! Un pingüino",
        "Está aquí, más allá del río; útil",
        "A canção do coração: não, pões, você, avô, pôr, à tarde",
        "Preço, pêssego, metrô, órgão, câmara",
    ]
    rows[1] = unicodedata.normalize("NFD", rows[1])
    (data / "metadata.csv").write_text("".join(f"clip_{i}|{t}|{t}\n" for i, t in enumerate(rows)), encoding="utf-8")
    for i in range(len(rows)):
        write_wav_pcm16(data / "wavs" / f"clip_{i}.wav", np.zeros(12000, np.float32), 24000)

    adapter = make_adapter(data, vocab=str(english))
    assert set(adapter.vocabulary.added) == letters | {"¿", "¡"}
    report = " ".join(capsys.readouterr().out.split())
    assert all(repr(c) in report for c in letters), report
    assert "16 characters of the dataset are not in" in report
    # Upstream's own vocabulary already has these letters: nothing to add for them.
    assert not letters - set(read_vocab(None).char_map)


# ---- upstream weights in --------------------------------------------------------------------


def test_loads_released_safetensors_form(tmp_path):
    from ema_pytorch import EMA
    from safetensors.torch import save_file

    adapter = make_adapter(None)
    torch.manual_seed(0)
    source = randomized(adapter.build_model())
    ema = EMA(source, include_online_model=False)  # upstream's EMA: keys initted, step, ema_model.*
    released = tmp_path / "model_1250000.safetensors"
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(released))
    model = adapter.build_model()
    adapter.load_upstream_weights(model, released)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    other = make_adapter(None, model="f5-v1-small")
    with pytest.raises(CheckpointError, match="does not fit --model f5-v1-small"):
        other.load_upstream_weights(_tiny_as_small(other), released)


def _tiny_as_small(adapter: F5Adapter) -> torch.nn.Module:
    """A CFM shaped like f5-v1-small but 1 layer deep, so the shape check is cheap."""
    spec_arch = dict(adapter.spec.arch, depth=1)
    import f5_tts.model as f5_model

    return f5_model.CFM(transformer=f5_model.DiT(**spec_arch, text_num_embeds=len(adapter.vocabulary), mel_dim=100))


@pytest.mark.slow
def test_loads_upstream_trainer_checkpoint_preferring_ema(upstream_checkpoint):
    checkpoint = torch.load(upstream_checkpoint, weights_only=True, map_location="cpu")
    assert {"model_state_dict", "ema_model_state_dict", "optimizer_state_dict", "update"} <= set(checkpoint)
    assert checkpoint["update"] == 2
    adapter = make_adapter(None)
    model = adapter.build_model()
    adapter.load_upstream_weights(model, upstream_checkpoint)
    ema = {
        k[len("ema_model.") :]: v for k, v in checkpoint["ema_model_state_dict"].items() if k.startswith("ema_model.")
    }
    differs = 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, ema[key]), key
        differs += not torch.equal(value, checkpoint["model_state_dict"][key])
    assert differs > 0  # the EMA (not yet updated after 2 updates) was taken, not the trained weights


def test_refuses_pickle_that_runs_code_and_damaged_files(tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "model_last.pt"
    torch.save({"model_state_dict": {"transformer.x": Payload()}, "update": 1}, evil)
    assert not marker.exists()
    adapter = make_adapter(None)
    model = adapter.build_model()
    with pytest.raises(CheckpointError, match="refused") as refused:
        adapter.load_upstream_weights(model, evil)
    assert str(evil) in str(refused.value) and not marker.exists()

    good = tmp_path / "good.pt"
    torch.save({"ema_model_state_dict": {f"ema_model.{k}": v for k, v in model.state_dict().items()}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        adapter.load_upstream_weights(model, truncated)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        adapter.load_upstream_weights(model, broken)
    assert not marker.exists()


def test_hub_specs_offline_and_missing_files(offline, tmp_path):
    from voicetune.models.hub import parse_hub_spec, resolve_file

    spec = "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
    hub_file = parse_hub_spec(spec)
    assert (hub_file.repo_id, hub_file.filename) == ("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors")
    with pytest.raises(VoicetuneError, match="--pretrained .*hf download SWivid/F5-TTS") as offline_error:
        resolve_file(spec)
    assert not isinstance(offline_error.value, UsageError)
    with pytest.raises(UsageError, match="hf://OWNER/REPO"):
        resolve_file("hf://SWivid/model.safetensors")
    with pytest.raises(UsageError, match="--init-from .*no such file"):
        resolve_file(tmp_path / "nope.safetensors", "--init-from")


# ---- export ---------------------------------------------------------------------------------


def test_export_loads_in_upstream_inference_with_same_output(tiny, tmp_path):
    from ema_pytorch import EMA
    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    adapter, splits = tiny
    torch.manual_seed(0)
    model = randomized(adapter.build_model()).eval()
    files = adapter.export(model, tmp_path / "export", "f5")
    assert sorted(p.name for p in files) == ["model.safetensors", "model.yaml", "vocab.txt"]
    export = tmp_path / "export"
    assert (export / "vocab.txt").read_text(encoding="utf-8") == UPSTREAM_VOCAB.read_text(encoding="utf-8")
    config = OmegaConf.load(export / "model.yaml")
    upstream = load_model(
        DiT, config.model.arch, str(export / "model.safetensors"), vocab_file=str(export / "vocab.txt"), device="cpu"
    ).eval()  # strict load inside
    assert set(upstream.state_dict()) == set(model.state_dict())
    # Upstream's Trainer loads it strictly into its EMA (as pretrained_*.safetensors for fine-tuning).
    EMA(upstream, include_online_model=False).load_state_dict(load_file(export / "model.safetensors"))

    batch = adapter.collate([splits.val[0]])
    mel = batch["mel"].permute(0, 2, 1)
    time = torch.tensor([0.4])
    with torch.no_grad():
        ours = model.transformer(x=mel, cond=mel * 0.5, text=batch["text"], time=time)
        theirs = upstream.transformer(x=mel, cond=mel * 0.5, text=batch["text"], time=time)
    assert torch.equal(ours, theirs)

    plain = adapter.export(model, tmp_path / "plain", "safetensors")
    assert set(load_file(plain[0])) == set(model.state_dict())
    with pytest.raises(UsageError, match="--format xtts"):
        adapter.export(model, tmp_path / "x", "xtts")


# ---- samples --------------------------------------------------------------------------------


def test_samples_with_griffin_lim_when_no_vocos(tiny, offline, caplog, monkeypatch):
    from voicetune import console

    # A process says the fallback once: start as a process that has said nothing yet (in `make test`
    # the engine's tests may have said it earlier in the same worker).
    monkeypatch.setattr(console, "_said", set())
    _adapter, splits = tiny
    fresh = make_adapter(None)  # its own vocoder: resolved (and said) once
    assert fresh.nfe_steps == 16
    prompts = fresh.sample_prompts(splits, ["A pot of tea helps to pass the evening."], 1)
    assert [p.name for p in prompts] == ["val_0000", "text_1"]
    assert prompts[0].target_audio is not None and prompts[1].target_audio is None
    assert prompts[0].ref_text != prompts[0].text  # another clip gives the voice
    assert fresh.sample_prompts(splits, [], 1)[0].text == prompts[0].text  # deterministic
    torch.manual_seed(0)
    model = randomized(fresh.build_model()).eval()
    caplog.set_level(logging.INFO, logger="voicetune")
    import pickle

    pickle.loads(pickle.dumps(fresh))  # DataLoader workers may receive the adapter
    samples = fresh.synthesize_samples(model, prompts)
    pickle.loads(pickle.dumps(fresh))  # also with its vocoder made
    samples += fresh.synthesize_samples(model, prompts[1:])
    assert sum("Griffin-Lim" in r.getMessage() for r in caplog.records) == 1
    for prompt, sample in zip(prompts + prompts[1:], samples):
        ref_frames = len(prompt.ref_audio) // 256
        ref_text = prompt.ref_text + " "
        frames = int(ref_frames / len(ref_text.encode()) * len(prompt.text.encode()))
        assert sample.sample_rate == 24000 and sample.generated.dtype == np.float32
        assert np.isfinite(sample.generated).all() and np.abs(sample.generated).max() > 0
        assert sample.extras["mel"].shape == (100, frames)
        assert abs(len(sample.generated) - frames * 256) <= 256
        assert sample.reference is (prompt.target_audio if prompt.target_audio is not None else prompt.ref_audio)
    long_text = " ".join(["The birch canoe slid on the smooth planks."] * 3)
    audio = fresh.synthesize(model, long_text, prompts[0].ref_audio, prompts[0].ref_text)
    assert np.isfinite(audio).all() and len(audio) > 3 * 24000


def test_vocos_path_must_hold_the_vocos_files(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("VOICETUNE_VOCOS", str(tmp_path))
    fresh = make_adapter(None)
    with pytest.raises(UsageError, match="VOICETUNE_VOCOS .*config.yaml and pytorch_model.bin"):
        fresh.vocoder()


def test_text_is_chunked_as_upstreams_chunk_text_chunks_it():
    from f5_tts.infer.utils_infer import chunk_text as upstream_chunk_text

    from voicetune.models.f5.adapter import chunk_text

    texts = [
        "",
        "One sentence without an end",
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background!",
        "Short; then: a list, of, clauses. And a question? Yes.",
        " ".join(["It is easy to tell the depth of a well, when you drop a stone into it."] * 6),
        "Сегодня хорошая погода. Завтра будет дождь, а потом снег!",
        "你好，世界。今天天气很好！我们去公园吧？",
        "Mixed: 你好。Then English again. " + "a" * 300,
    ]
    for text in texts:
        for max_chars in (1, 20, 60, 135, 400):
            assert chunk_text(text, max_chars) == upstream_chunk_text(text, max_chars), (text, max_chars)
