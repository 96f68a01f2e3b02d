"""The synthesis engine's speed against upstream F5-TTS's own `infer_process`, side by side.

Both speak the same text in the voice of the same reference clip, with the same weights (random:
speed does not depend on what the weights say), the same vocoder (Vocos at upstream's size,
random weights), the same number of sampling steps and the same device. Each side runs once to
warm up, then `--repeats` times in turn; the real-time factor (seconds of work per second of
audio) is the median of its runs. Goal: the engine's RTF over upstream's at most 1.0.

For XTTS (xtts-tiny, random weights) it prints the time to the first streamed chunk over the
time of the whole synthesis: how soon a streamed reply starts to play.

It also times the engine at `--fewer-steps` (16) against `--nfe` (32), in turn.

    python bench/synth_speed.py [--models f5-tiny f5-v1-small] [--nfe 32] [--fewer-steps 16] [--repeats 3]
                                [--device cpu|cuda] [--no-xtts]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

TEXT = (
    "Glue the sheet to the dark blue background, and then wait until it dries completely. "
    "It is easy to tell the depth of a well when you drop a small stone into it. "
    "These days a chicken leg is a rare dish, and the farmers know it very well. "
    "Rice is often served in round bowls, with a little salt and a few green leaves."
)
REF_TEXT = "The birch canoe slid on the smooth planks."


def random_vocos():
    """Vocos at the size of charactr/vocos-mel-24khz (upstream's default vocoder), random weights."""
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    return Vocos(
        MelSpectrogramFeatures(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, padding="center"),
        VocosBackbone(input_channels=100, dim=512, intermediate_dim=1536, num_layers=8),
        ISTFTHead(dim=512, n_fft=1024, hop_length=256, padding="center"),
    ).eval()


def engine_for(model_name: str, nfe: int, device: str):
    """An Engine over a freshly built model (as a trained run's would be, minus the training)."""
    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter
    from voicetune.synthesis.engine import Engine
    from voicetune.synthesis.inference import TrainedModel

    settings = {"model": model_name} if model_name.startswith("xtts") else {"model": model_name, "pretrained": "none"}
    config = TrainConfig.resolve(settings)
    adapter = create_adapter(config)
    model = adapter.build_model().eval().to(device)
    return Engine(TrainedModel(adapter, model, Path("bench/run/checkpoints/none"), 0, config), nfe=nfe, name=model_name)


def median_rtf(run, repeats: int) -> tuple[float, float]:
    """(median RTF, seconds of audio) of `run()` -> (audio, rate)."""
    rtfs, seconds = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        audio, rate = run()
        elapsed = time.perf_counter() - start
        seconds = len(audio) / rate
        rtfs.append(elapsed / seconds)
    return statistics.median(rtfs), seconds


def bench_f5(model_name: str, nfe: int, repeats: int, device: str, ref: Path, fewer: int | None = None) -> float:
    import torch
    from f5_tts.infer.utils_infer import infer_process

    torch.manual_seed(0)
    engine = engine_for(model_name, nfe, device)
    vocos = random_vocos().to(device)
    engine.adapter._vocoder = lambda mel: vocos.decode(mel.float())  # the vocoder make_vocoder builds for Vocos
    voice = engine.voice(ref, REF_TEXT)

    def ours():
        speech = engine.synthesize(TEXT, voice, seed=0)
        return speech.audio, speech.sample_rate

    def upstream():
        with torch.inference_mode():
            wave, rate, _ = infer_process(
                str(ref),
                REF_TEXT,
                TEXT,
                engine.model,
                vocos,
                mel_spec_type="vocos",
                show_info=lambda *a: None,
                progress=None,
                nfe_step=nfe,
                device=device,
            )
        return wave, rate

    chunks = len(engine.plan(TEXT, voice).chunks)
    ours(), upstream()  # warm-up: first calls build caches and kernels
    results = {"ours": [], "upstream": []}
    for _ in range(repeats):  # in turn, so that a load change on the host falls on both
        results["ours"].append(median_rtf(ours, 1))
        results["upstream"].append(median_rtf(upstream, 1))
    if fewer:  # the engine at fewer steps, timed in turn with the engine at `nfe`
        rtfs = {nfe: [], fewer: []}
        for _ in range(repeats):
            for steps in (nfe, fewer):
                engine.adapter.nfe_steps = steps
                rtfs[steps].append(median_rtf(ours, 1)[0])
        engine.adapter.nfe_steps = nfe
        slow, fast = statistics.median(rtfs[nfe]), statistics.median(rtfs[fewer])
        print(
            f"{model_name}: engine RTF at {fewer} steps {fast:.3f}, at {nfe} steps {slow:.3f}: "
            f"{fewer} / {nfe} steps: {fast / slow:.2f}",
            flush=True,
        )
    rtf_ours = statistics.median(r for r, _ in results["ours"])
    rtf_upstream = statistics.median(r for r, _ in results["upstream"])
    print(
        f"{model_name} nfe {nfe} on {device}: {chunks} chunks, {results['ours'][0][1]:.1f} s of audio (ours), "
        f"{results['upstream'][0][1]:.1f} s (upstream); RTF ours {rtf_ours:.3f}, upstream {rtf_upstream:.3f}, "
        f"ratio {rtf_ours / rtf_upstream:.2f}",
        flush=True,
    )
    return rtf_ours / rtf_upstream


def bench_xtts_first_chunk(device: str, ref: Path) -> float:
    import torch

    torch.manual_seed(0)
    engine = engine_for("xtts-tiny", None, device)
    voice = engine.voice(ref, REF_TEXT)
    plan = engine.plan(TEXT, voice)
    list(engine.stream(plan, voice))  # warm-up
    start = time.perf_counter()
    first = None
    for _ in engine.stream(plan, voice):
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    print(
        f"xtts-tiny on {device}: {len(plan.chunks)} chunks; first streamed chunk after {first:.2f} s of {total:.2f} s; "
        f"first chunk / full synthesis: {first / total:.2f}",
        flush=True,
    )
    return first / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["f5-tiny", "f5-v1-small"])
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-xtts", action="store_true")
    parser.add_argument("--fewer-steps", type=int, default=16, help="also time the engine at this many steps (0: no)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import torch

    from voicetune.demo.corpus import speak_to_wav

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        ref = speak_to_wav(REF_TEXT, Path(tmp) / "ref.wav")
        if not args.no_xtts:
            bench_xtts_first_chunk(device, ref)
        ratios = [bench_f5(name, args.nfe, args.repeats, device, ref, args.fewer_steps or None) for name in args.models]
    print(f"RTF ours / upstream: {max(ratios):.2f}")


if __name__ == "__main__":
    main()
