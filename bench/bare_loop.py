"""A bare training loop over voicetune's own adapter: forward, loss, backward, step, nothing else.

The anchor `bench/train_step.py` measures `voicetune train` against (it stands in for the
community fine-tuning scripts, which are not packages). Same model, same data, same batch sizes,
same optimizer; no checkpoints, EMA, logging, sampler state or signal handling. Prints one JSON
line: {"updates_per_second": ...}.

    python bench/bare_loop.py CORPUS CACHE --model chatterbox-tiny --updates 40 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def batches(lengths: list[int], batch_size: int | None, batch_frames: int | None) -> list[list[int]]:
    """Items in fixed batches of `batch_size`, or (by length) batches of at most `batch_frames`."""
    order = list(range(len(lengths)))
    if batch_frames is None:
        size = batch_size or 4
        return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    out: list[list[int]] = [[]]
    for i in sorted(order, key=lambda i: lengths[i]):
        if out[-1] and sum(lengths[j] for j in out[-1]) + lengths[i] > batch_frames:
            out.append([])
        out[-1].append(i)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--batch-frames", type=int, default=None)
    args = parser.parse_args()
    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter

    random = args.model.startswith("f5") or not args.model.endswith("-tiny")  # as train_step.random_weights
    config = TrainConfig(model=args.model, data=str(args.corpus), pretrained="none" if random else None)
    adapter = create_adapter(config)
    torch.manual_seed(0)
    model = adapter.build_model()
    model.train()
    splits = adapter.load_data(args.corpus, args.cache)
    lr = adapter.default_settings().get("lr", 1e-4)
    optimizer = torch.optim.AdamW(adapter.trainable_parameters(model), lr=lr)
    plan = batches(list(splits.train_lengths), args.batch_size, args.batch_frames)
    done, start = 0, 0.0
    while done < args.updates:
        for indices in plan:
            if done == args.skip:
                start = time.perf_counter()
            batch = adapter.collate([splits.train[i] for i in indices])
            loss = adapter.compute_loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done >= args.updates:
                break
    seconds = time.perf_counter() - start
    print(json.dumps({"updates_per_second": (args.updates - args.skip) / seconds}))


if __name__ == "__main__":
    main()
