"""f5-tiny trained end to end through `voicetune train` on real espeak-ng speech, in subprocesses:
the loss falls, a SIGTERM + resume ends bit for bit where a straight run ends, samples and
TensorBoard audio appear right after the resume, upstream Trainer checkpoints start runs, and
`synthesize` / `ckpt export` work on the result."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import soundfile as sf

from support.harness import (
    Training,
    assert_same_tensors,
    last_logged_step,
    load_tensors,
    run_cli,
    wait_until,
)
from voicetune.checkpoints.store import CheckpointStore
from voicetune.train.reporting import read_metrics

N = 30
STOP_AFTER = 12
# Small frame batches keep an update under a second on 2 cores; lr 1e-3 is f5-tiny's default.
CADENCE = [
    "--save-every",
    "10",
    "--last-every",
    "5",
    "--batch-frames",
    "700",
    "--workers",
    "1",
    "--sample-text",
    "A short test sentence.",
]


@pytest.fixture(scope="module")
def f5_corpus(tmp_path_factory) -> Path:
    """16 espeak-ng clips at 22.05 kHz: F5 resamples them to its 24 kHz on load."""
    from voicetune.demo.corpus import write_ljspeech_corpus

    return write_ljspeech_corpus(tmp_path_factory.mktemp("f5_corpus"), n_items=16, sample_rate=22050)


def f5_args(data: Path, run: Path, *extra: str, max_updates: int = N) -> list[str]:
    return [
        "--data",
        str(data),
        "--run",
        str(run),
        "--model",
        "f5-tiny",
        "--max-updates",
        str(max_updates),
        "--set",
        "log_every=1",
        *CADENCE,
        *extra,
    ]


def checkpoint_at(run: Path, step: int) -> Path:
    return next(c.path for c in CheckpointStore(run).scan() if c.step == step)


@pytest.fixture(scope="module")
def straight(f5_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("f5_straight") / "run"
    result = run_cli("train", *f5_args(f5_corpus, run), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def test_f5_tiny_loss_falls_on_real_speech(straight):
    losses = [m["train/loss"] for _, m in sorted(read_metrics(straight / "metrics.jsonl").items()) if "train/loss" in m]
    assert len(losses) == N
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # Stated margin: the mean loss of the last 5 updates is at most half that of the first 5
    # (measured: about a fifth).
    assert last <= 0.5 * first, (first, last)
    # Validation at each milestone and a best checkpoint by it.
    metrics = read_metrics(straight / "metrics.jsonl")
    assert all("val/loss" in metrics[s] for s in (10, 20, 30))
    assert (straight / "ready" / "model.safetensors").is_file()


def test_f5_sigterm_and_resume_equal_a_straight_run_with_samples_after_resume(f5_corpus, straight, tmp_path):
    run = tmp_path / "run"
    args = f5_args(f5_corpus, run)
    first = Training(args, log=tmp_path / "first.log")
    assert wait_until(lambda: last_logged_step(run) >= STOP_AFTER, timeout=600, proc=first.proc)
    first.signal(signal.SIGTERM)
    assert first.wait(600) == 143, first.output()
    stopped_at = last_logged_step(run)
    assert STOP_AFTER <= stopped_at < N

    resumed = run_cli("train", *args, timeout=900)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at step {stopped_at}" in resumed.stdout

    a, b = checkpoint_at(straight, N), checkpoint_at(run, N)
    for component in ("model", "ema", "optimizer", "rng"):
        assert_same_tensors(load_tensors(a / f"{component}.safetensors"), load_tensors(b / f"{component}.safetensors"))
    la, lb = read_metrics(straight / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert [la[s]["train/loss"] for s in range(1, N + 1)] == [lb[s]["train/loss"] for s in range(1, N + 1)]
    assert la[N]["val/loss"] == lb[N]["val/loss"]

    # Samples right after the resume (upstream's stop appearing after one), as files...
    after_resume = run / "samples" / f"step_{stopped_at:08d}"
    generated = sorted(after_resume.glob("*_gen.wav"))
    assert generated and sorted(after_resume.glob("*_ref.wav")) and sorted(after_resume.glob("*_mel.png"))
    for wav in generated:
        info = sf.info(wav)
        assert info.samplerate == 24000 and info.duration > 0.3
    # ...and in TensorBoard, read back from the event files.
    from tensorboard.backend.event_processing.event_accumulator import AUDIO, EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={AUDIO: 0})
    events.Reload()
    audio_steps = {e.step for tag in events.Tags()["audio"] for e in events.Audio(tag)}
    assert {stopped_at, 10, 20, 30} <= audio_steps, audio_steps
    assert any(tag.endswith("/generated") for tag in events.Tags()["audio"])
    assert any(tag.endswith("/reference") for tag in events.Tags()["audio"])


@pytest.fixture(scope="module")
def upstream_model_last(f5_corpus, tmp_path_factory) -> Path:
    from support.upstream_f5 import upstream_checkpoint

    return upstream_checkpoint(f5_corpus, tmp_path_factory.mktemp("upstream_trainer"), updates=2)


@pytest.mark.parametrize("flag", ["--init-from", "--pretrained"])
def test_upstream_trainer_model_last_starts_a_run(f5_corpus, upstream_model_last, tmp_path, flag):
    run = tmp_path / "run"
    result = run_cli("train", *f5_args(f5_corpus, run, flag, str(upstream_model_last), max_updates=3), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(upstream_model_last) in result.stdout
    assert read_metrics(run / "metrics.jsonl")[1]["train/loss"] > 0
    if flag == "--init-from":
        info = json.loads((run / "run.json").read_text())
        assert info["lineage"]["init_from"] == str(upstream_model_last.resolve())


def test_synthesize_and_export_of_the_trained_run(straight, f5_corpus, tmp_path):
    reference = sorted((f5_corpus / "wavs").glob("*.wav"))[0]
    ref_text = (f5_corpus / "metadata.csv").read_text().splitlines()[0].split("|")[1]
    out = tmp_path / "out.wav"
    result = run_cli(
        "synthesize",
        "--checkpoint",
        str(straight),
        "--text",
        "Hello there. This is a second sentence.",
        "--ref",
        str(reference),
        "--ref-text",
        ref_text,
        "--seed",
        "1",
        "--out",
        str(out),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    info = sf.info(out)
    assert info.samplerate == 24000 and info.duration > 0.5
    # No Vocos weights here: the fallback is said on the console, once, with how to get Vocos.
    assert result.stdout.count("vocoder: Griffin-Lim") == 1 and "hf download charactr/vocos-mel-24khz" in result.stdout

    exported = tmp_path / "export"
    result = run_cli("ckpt", "export", str(straight), "--format", "f5", "--out", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (exported / "vocab.txt").is_file()
    weights = next(exported.glob("*.safetensors"))
    # Upstream's own inference loader takes it with no missing or unexpected keys.
    import torch
    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT

    from voicetune.models.f5.spec import model_spec

    spec = model_spec("f5-tiny")
    model = load_model(
        DiT, spec.arch, str(weights), mel_spec_type="vocos", vocab_file=str(exported / "vocab.txt"), device="cpu"
    )
    # ...and speaks through upstream's own inference code (Griffin-Lim stands in for Vocos, whose
    # weights cannot be downloaded here; upstream calls vocoder.decode(mel)).
    from f5_tts.infer.utils_infer import infer_process

    from voicetune.models.f5.vocoder import GriffinLim

    class Decoder:
        def __init__(self):
            self.griffin_lim = GriffinLim(spec.mel)

        def decode(self, mel):
            return self.griffin_lim(mel)

    torch.manual_seed(0)
    wave, rate, _ = infer_process(
        str(reference),
        ref_text,
        "Hello there.",
        model,
        Decoder(),
        mel_spec_type="vocos",
        nfe_step=8,
        device="cpu",
        show_info=lambda *_: None,
    )
    assert rate == 24000 and wave.ndim == 1 and len(wave) > 0.3 * rate and float(abs(wave).max()) > 0.01


def test_f5_lora_on_a_pretrained_export_trains_only_adapters_and_exports_merged(straight, f5_corpus, tmp_path, capsys):
    """LoRA on f5-tiny, its base weights being the straight run's own export (released form)."""
    import torch

    run = tmp_path / "lora"
    pretrained = straight / "ready" / "model.safetensors"
    result = run_cli(
        "train",
        *f5_args(f5_corpus, run, "--pretrained", str(pretrained), "--lora-rank", "4", max_updates=10),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lora_params = int(result.stdout.split("model f5-tiny: ")[1].split(" trainable")[0].replace(",", ""))
    final = checkpoint_at(run, 10)
    weights = load_tensors(final / "model.safetensors")
    assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)
    assert sum(t.numel() for t in weights.values()) == lora_params
    # A DiT block has six adapted projections: 4 blocks x 6 x (A + B).
    assert len(weights) == 4 * 6 * 2
    assert json.loads((final / "loop.json").read_text())["architecture"]["lora"]["rank"] == 4
    full = checkpoint_at(straight, N)
    size = lambda folder: sum(f.stat().st_size for f in folder.iterdir())  # noqa: E731
    with capsys.disabled():
        print(
            f"\nf5-tiny LoRA rank 4 / full checkpoint: {size(final):,} / {size(full):,} bytes = "
            f"{size(final) / size(full):.3f}"
        )
    assert size(final) < 0.5 * size(full)
    losses = [m["train/loss"] for _, m in sorted(read_metrics(run / "metrics.jsonl").items()) if "train/loss" in m]
    # metrics.jsonl writes a NaN or inf loss as a string: isinstance catches that as well.
    assert len(losses) == 10 and all(isinstance(l, float) and math.isfinite(l) for l in losses)  # noqa: E741

    # The export merges the adapters: a plain model that upstream loads strictly.
    exported = run / "ready"
    from f5_tts.infer.utils_infer import load_model
    from f5_tts.model import DiT

    from voicetune.models.f5.spec import model_spec

    model = load_model(
        DiT,
        model_spec("f5-tiny").arch,
        str(exported / "model.safetensors"),
        vocab_file=str(exported / "vocab.txt"),
        device="cpu",
    )
    assert not any("lora" in k for k in model.state_dict())
    base = {k.removeprefix("ema_model."): v for k, v in load_tensors(pretrained).items() if k.startswith("ema_model.")}
    merged = model.state_dict()
    changed = [k for k in base if k in merged and not torch.equal(base[k].float(), merged[k].float())]
    assert changed and all(any(t in k for t in ("to_q", "to_k", "to_v", "to_out", "ff.ff")) for k in changed)
