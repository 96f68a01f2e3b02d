"""What cross-request batching would gain the speech server, on f5-tiny and xtts-tiny, on this machine.

The server speaks one request at a time. Batching would run 4 clients' chunks as one batch of 4.
This measures the model's own work both ways, side by side in one run:

    f5-tiny    CFM sampling (the DiT at every step) of 4 chunks: one after another (batch 1) and
               as one batch of 4 (the same chunk four times: no padding, the best case for
               batching), alternated twice, the faster of each; then 4 chunks of different
               lengths as one batch, each row compared with that chunk sampled alone
    xtts-tiny  the GPT's autoregressive decoding (a prefill of conditioning and text, then one
               step per audio code, with its key-value cache): batch 1 four times and batch 4 once

Printed per model: seconds both ways, the gain (batch-1 time over batch-4 time; the issue's bar is
1.3x), and whether the rows of a batch have the very bytes each request gets alone (batching may
not change any request's audio). XTTS compares the first row of the batch with batch 1.

    python bench/serve_batching.py [--nfe 32] [--codes 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT = "Glue the sheet to the dark blue background, and then wait until it dries completely."
# Four clients' chunks of different lengths: a batch pads them to the longest.
TEXTS = (
    TEXT,
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish, and the farmers know it very well, they say.",
    "Rice is served in round bowls.",
)


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def f5_gain(run: Path, nfe: int) -> tuple[float, float, bool]:
    """(seconds for 4 equal chunks one at a time, as one batch, whether every row of a batch of 4
    different chunks is bit-identical to that chunk sampled alone), on the engine's own thread."""
    import numpy as np
    import torch

    from voicetune.models.f5.adapter import CFG_STRENGTH, SWAY_SAMPLING_COEF
    from voicetune.synthesis.engine import Engine

    engine = Engine.load(run, nfe=nfe)
    voice = engine.default_voice()
    adapter, model = engine.adapter, engine.model
    ref_text = voice.text + " "
    cond = torch.as_tensor(np.asarray(voice.audio, dtype=np.float32)).reshape(1, -1)
    frames = cond.shape[-1] // adapter.hop_length

    def sample(texts: list[str]):
        tokens = [adapter.vocabulary.encode(ref_text + t) for t in texts]
        width = max(map(len, tokens))
        padded = torch.tensor([t + [-1] * (width - len(t)) for t in tokens], dtype=torch.long)
        durations = [frames + int(frames / len(ref_text.encode()) * len(t.encode())) for t in texts]

        def run_it():
            torch.manual_seed(0)
            with torch.inference_mode(), adapter.speaking(model):
                out, _ = model.sample(
                    cond=cond.repeat(len(texts), 1),
                    text=padded,
                    duration=torch.tensor(durations, dtype=torch.long),
                    steps=nfe,
                    cfg_strength=CFG_STRENGTH,
                    sway_sampling_coef=SWAY_SAMPLING_COEF,
                )
            return [out[i, : durations[i]] for i in range(len(texts))]

        return engine._thread.submit(run_it).result()  # the thread the server's synthesis runs on

    sample([TEXT])  # warm-up
    times = {1: [], 4: []}
    for _ in range(2):  # alternated: a change of the host's load falls on both
        times[1].append(timed(lambda: [sample([TEXT]) for _ in range(4)])[0])
        times[4].append(timed(lambda: sample([TEXT] * 4))[0])
    alone = [sample([t])[0] for t in TEXTS]
    together = sample(list(TEXTS))
    same = all(torch.equal(a, b) for a, b in zip(alone, together))
    return min(times[1]), min(times[4]), same


def xtts_gain(run: Path, codes: int) -> tuple[float, float, bool]:
    import torch

    from voicetune.synthesis.engine import Engine

    engine = Engine.load(run)
    xtts = engine.model.xtts if hasattr(engine.model, "xtts") else engine.model
    gpt = xtts.gpt.gpt  # the GPT-2 stack coqui's generate decodes with
    width = xtts.gpt.model_dim
    torch.manual_seed(0)
    prefix = torch.randn(1, 32 + len(TEXT), width)  # conditioning latents and text embeddings
    steps = torch.randn(codes, 1, 1, width)  # one embedded code per step

    def decode(batch: int):
        with torch.inference_mode():
            out = gpt(inputs_embeds=prefix.repeat(batch, 1, 1), use_cache=True)
            cache, last = out.past_key_values, []
            for step in steps:
                out = gpt(inputs_embeds=step.repeat(batch, 1, 1), past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                last.append(out.last_hidden_state[:, -1])
        return torch.stack(last, 1)

    def on_thread(batch: int):  # the thread the server's synthesis runs on
        return engine._thread.submit(decode, batch).result()

    on_thread(1)  # warm-up
    times: dict[int, list[float]] = {1: [], 4: []}
    for _ in range(2):  # alternated: a change of the host's load falls on both
        seconds, single = timed(lambda: [on_thread(1) for _ in range(4)])
        times[1].append(seconds)
        seconds, batched = timed(lambda: on_thread(4))
        times[4].append(seconds)
    return min(times[1]), min(times[4]), torch.equal(single[0][0], batched[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--codes", type=int, default=200, help="XTTS audio codes decoded per request")
    parser.add_argument("--models", default="f5,xtts")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]
    from support.speech_server import train_tiny_f5, train_tiny_xtts

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = {}
        if "f5" in args.models:
            results["f5-tiny"] = f5_gain(train_tiny_f5(root / "f5"), args.nfe)
        if "xtts" in args.models:
            results["xtts-tiny"] = xtts_gain(train_tiny_xtts(root / "xtts"), args.codes)
    for name, (one, four, same) in results.items():
        print(
            f"{name}: 4 requests one at a time {one:.2f} s, as one batch of 4 {four:.2f} s: "
            f"batching gain {one / four:.2f}x; rows bit-identical to each alone: {same}"
        )
    print(
        f"batching gain at 4 clients: {min(one / four for one, four, _ in results.values()):.2f}x (smaller of the two)"
    )


if __name__ == "__main__":
    main()
