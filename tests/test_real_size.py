"""Real sizes on a CPU (`make test-full`; `make test` leaves them out): f5-v1-base and xtts-v2 at
their real architectures, with random weights saved in the released formats (F5's .safetensors
with `ema_model.` keys; the coqui XTTS folder), each trained through the CLI, stopped with SIGTERM
during its second update, resumed to the third, verified, exported to RUN/ready/ and loaded by the
upstream loaders without missing or unexpected keys. Peak RSS, seconds per update and checkpoint
sizes are printed (and recorded in docs/guides/memory.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from support.harness import cli_env, last_logged_step, run_cli, wait_until
from voicetune.checkpoints.store import CheckpointStore
from voicetune.config import format_size

pytestmark = pytest.mark.full

UPDATES = 3  # SIGTERM during the 2nd update: 2 trained, stopped, then resumed to the 3rd
COMMON = [
    "--max-updates",
    str(UPDATES),
    "--save-every",
    "1000",
    "--last-every",
    "1000",
    "--workers",
    "0",
    "--set",
    "max_sample_prompts=0",
    "--set",
    "log_every=1",
    "--keep-last",
    "1",
]


class Measured:
    """A `voicetune train` subprocess whose peak RSS (its own, from wait4) is recorded."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.out = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicetune", "train", *map(str, args)],
            env=cli_env(),
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()

    def wait(self) -> tuple[int, int, float]:
        """(exit code, peak RSS bytes, seconds)."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.out.close()
        return self.proc.returncode, usage.ru_maxrss * 1024, time.monotonic() - self.started


def train_stop_resume(args: list[str], run: Path, tmp_path: Path) -> dict:
    """Train with SIGTERM after the first update, resume to the end; return measurements."""
    first = Measured(args, tmp_path / "first.log")
    assert wait_until(lambda: last_logged_step(run) >= 1, timeout=1800, proc=first.proc), first.log.read_text()[-3000:]
    first.proc.send_signal(signal.SIGTERM)
    code, rss_first, _ = first.wait()
    assert code == 143, first.log.read_text()[-3000:]
    stopped = last_logged_step(run)
    assert 1 <= stopped < UPDATES
    second = Measured(args, tmp_path / "second.log")
    code, rss_second, _seconds = second.wait()
    output = second.log.read_text()
    assert code == 0, output[-3000:]
    assert "resuming from" in output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["perf/updates_per_s"] for r in records if "perf/updates_per_s" in r]
    store = CheckpointStore(run)
    checkpoints = store.scan()
    assert checkpoints and all(store.verify(c).problem is None for c in checkpoints)
    verify = run_cli("ckpt", "verify", run)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    full = max(checkpoints, key=lambda c: c.step)
    assert full.step == UPDATES and full.kind == "full"
    figures = {
        "peak_rss": max(rss_first, rss_second),
        "seconds_per_update": 1 / min(rates),
        "full_checkpoint_bytes": full.size_bytes,
        "stopped_at": stopped,
    }
    print(
        f"\n{run.name}: peak RSS {format_size(figures['peak_rss'])}, {figures['seconds_per_update']:.1f} s/update, "
        f"full-state checkpoint {format_size(figures['full_checkpoint_bytes'])}",
        flush=True,
    )
    return figures


def test_f5_v1_base_real_size_trains_stops_resumes_and_exports_for_upstream(toy_corpus, tmp_path):
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from voicetune.config import TrainConfig
    from voicetune.models.f5.weights import export_f5
    from voicetune.models.registry import create_adapter

    # Random weights in the released form: model.safetensors with ema_model.* keys.
    adapter = create_adapter(TrainConfig.resolve({"model": "f5-v1-base", "pretrained": "none", "data": toy_corpus}))
    torch.manual_seed(0)
    model = adapter.build_model()
    released = tmp_path / "released"
    export_f5(model, adapter.spec, adapter.vocabulary, released)
    keys = set(load_file(released / "model.safetensors"))
    assert all(k.startswith("ema_model.") for k in keys - {"initted", "step"})
    del model

    run = tmp_path / "f5-v1-base"
    args = [
        "--model",
        "f5-v1-base",
        "--pretrained",
        released / "model.safetensors",
        "--data",
        toy_corpus,
        "--run",
        run,
        "--batch-frames",
        "500",
        *COMMON,
    ]
    train_stop_resume(args, run, tmp_path)

    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT

    ready = run / "ready"
    config = OmegaConf.load(ready / "model.yaml")
    upstream = load_model(
        DiT, config.model.arch, str(ready / "model.safetensors"), vocab_file=str(ready / "vocab.txt"), device="cpu"
    )  # upstream loads strictly: no missing or unexpected key
    exported = {k[len("ema_model.") :] for k in load_file(ready / "model.safetensors") if k.startswith("ema_model.")}
    assert exported == set(upstream.state_dict())


def write_random_xtts_v2(folder: Path) -> None:
    """A coqui XTTS folder with XTTS-v2's config and shapes and random weights: 30-layer 1024-wide
    GPT with perceiver conditioning, 1026 audio codes, a 1024-code DVAE, HiFi-GAN, a vocab.json of
    6681 tokens (coqui's English BPE with XTTS's language tokens, padded with placeholder tokens to
    XTTS-v2's count: the real vocab.json cannot ship here)."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    from voicetune.models import xtts_files as files

    config = XttsConfig()
    v2_args = {
        "gpt_max_audio_tokens": 605,
        "gpt_max_text_tokens": 402,
        "gpt_max_prompt_tokens": 70,
        "gpt_layers": 30,
        "gpt_n_model_channels": 1024,
        "gpt_n_heads": 16,
        "gpt_number_text_tokens": 6681,
        "gpt_num_audio_tokens": 1026,
        "gpt_start_audio_token": 1024,
        "gpt_stop_audio_token": 1025,
        "gpt_use_masking_gt_prompt_approach": True,
        "gpt_use_perceiver_resampler": True,
        "decoder_input_dim": 1024,
        "d_vector_dim": 512,
    }
    for key, value in v2_args.items():
        setattr(config.model_args, key, value)
    for key, value in files.INFERENCE_SETTINGS.items():
        setattr(config, key, value)
    vocab = json.loads(files.tiny_vocab_json(config.languages))
    next_id = max(vocab["model"]["vocab"].values()) + 1
    while next_id < 6681:
        vocab["model"]["vocab"][f"[pad{next_id}]"] = next_id
        next_id += 1
    vocab_json = json.dumps(vocab, ensure_ascii=False)
    torch.manual_seed(0)
    dvae = files.make_dvae(
        {
            "channels": 80,
            "normalization": None,
            "positional_dims": 1,
            "num_tokens": 1024,
            "codebook_dim": 512,
            "hidden_dim": 512,
            "num_resnet_blocks": 3,
            "kernel_size": 3,
            "num_layers": 2,
            "use_transposed_convs": False,
        }
    )
    parts = files.XttsParts(config, vocab_json, dvae, torch.ones(80), None, None, "random XTTS-v2")
    xtts = Xtts(config)
    xtts.tokenizer = parts.tokenizer()
    xtts.init_models()
    state = {k: v for k, v in xtts.state_dict().items() if not files.is_inference_alias(k)}
    files.write_xtts_folder(folder, state, parts, config)


def test_xtts_v2_real_size_trains_stops_resumes_and_exports_for_upstream(xtts_corpus, tmp_path):
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    released = tmp_path / "XTTS-v2"
    write_random_xtts_v2(released)
    run = tmp_path / "xtts-v2"
    args = [
        "--model",
        "xtts-v2",
        "--pretrained",
        released,
        "--data",
        xtts_corpus,
        "--run",
        run,
        "--batch-size",
        "2",
        *COMMON,
    ]
    train_stop_resume(args, run, tmp_path)

    ready = run / "ready"
    config = XttsConfig()
    config.load_json(str(ready / "config.json"))
    upstream = Xtts(config)
    upstream.load_checkpoint(config, checkpoint_dir=str(ready), eval=True)  # strict: every key fits
    assert upstream.gpt.gpt.h.__len__() == 30 and upstream.gpt.mel_embedding.num_embeddings == 1026
