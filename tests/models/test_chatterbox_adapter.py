"""Chatterbox's export is what upstream loads: RUN/ready and `ckpt export --format chatterbox`
write the from_local folder, upstream's own classes load every tensor of it strictly, and the
folder is taken back as --pretrained. The promises every family keeps (resume, fresh model after
a cut request) are tested per family in their own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.harness import load_tensors, run_cli
from voicetune.checkpoints.store import CheckpointStore
from voicetune.config import TrainConfig
from voicetune.models.chatterbox import create_tiny
from voicetune.models.chatterbox import parts as P


@pytest.fixture(scope="module")
def exported(chatterbox_voice_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chatterbox_export") / "out"
    result = run_cli("ckpt", "export", str(chatterbox_voice_run), "--format", "chatterbox", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_ready_and_export_hold_the_from_local_files_and_the_sizes_beside_them(chatterbox_voice_run, exported):
    for folder in (chatterbox_voice_run / "ready", exported):
        assert P.missing_files(folder) == []
        assert json.loads((folder / P.CONFIG_FILE).read_text())["sizes"] == P.TINY_SIZES


def test_upstreams_classes_built_from_the_config_load_the_export_strictly(chatterbox_voice_run, exported):
    sizes = P.read_sizes(exported)
    built = {"t3": P.build_t3(sizes), "s3gen": P.build_s3gen(sizes), "ve": P.build_ve(sizes)}
    files = {"t3": P.T3_FILE, "s3gen": P.S3GEN_FILE, "ve": P.VE_FILE}
    for name, module in built.items():
        state = load_file(str(exported / files[name]))
        assert sorted(state) == sorted(module.state_dict()), f"{name}: tensors missing or left over"
        module.load_state_dict(state, strict=True)
    # The exported T3 is the checkpoint's chosen weights (EMA by default).
    ckpt = CheckpointStore(chatterbox_voice_run).latest_valid().path
    ema = load_tensors(ckpt / "ema.safetensors")
    t3 = load_file(str(exported / P.T3_FILE))
    assert {f"t3.{k}" for k in t3} == set(ema)
    assert all(torch.equal(t3[k[3:]], v) for k, v in ema.items())


def test_the_export_is_taken_back_as_pretrained(exported):
    adapter = create_tiny(TrainConfig(model="chatterbox-tiny", pretrained=str(exported)))
    model = adapter.build_model()
    t3 = load_file(str(exported / P.T3_FILE))
    own = model.t3.state_dict()
    assert sorted(own) == sorted(t3)
    assert all(torch.equal(own[k], v) for k, v in t3.items())


@pytest.mark.full
def test_real_size_export_loads_in_from_local_and_generates(xtts_corpus, tmp_path):
    """chatterbox at its released size with random weights (--pretrained none): one update, then
    upstream's ChatterboxTTS.from_local loads RUN/ready and speaks."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.tts import ChatterboxTTS

    run = tmp_path / "run"
    args = ["--data", str(xtts_corpus), "--run", str(run), "--model", "chatterbox", "--pretrained", "none"]
    result = run_cli("train", *args, "--max-updates", "1", "--batch-size", "2", "--workers", "0", timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    ready = run / "ready"
    assert not (ready / P.CONFIG_FILE).exists()  # the released sizes need no configuration
    assert sorted(load_file(str(ready / P.S3GEN_FILE))) == sorted(S3Gen().state_dict())  # from_local is not strict here
    tts = ChatterboxTTS.from_local(ready, "cpu")  # T3 and the voice encoder load strictly
    inference = tts.t3.inference
    tts.t3.inference = lambda **kw: inference(**{**kw, "max_new_tokens": 20})
    wav = tts.generate("Rice is served in round bowls.", audio_prompt_path=str(next(xtts_corpus.glob("wavs/*.wav"))))
    assert wav.shape[-1] > 0 and torch.isfinite(wav).all()
