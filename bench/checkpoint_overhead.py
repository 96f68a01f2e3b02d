"""Checkpoint overhead, measured side by side in one run on the same disk.

Prints two ratios:
  commit / torch.save   our committed save (atomic directory, sha256 manifest, fsync of every
                        file and directory) over a plain torch.save of the same full state
                        (goal <= 1.10)
  commit / torch.save+fsync   the same over a torch.save whose file is then fsynced: the cost of
                        durability is the disk's, and torch.save alone leaves it in the page cache
  async stall / sync    how long the training thread stops for an asynchronous save (snapshot
                        to host memory + hand-over) over the time of a synchronous save
                        (goal <= 0.2)

The state is shaped like a real run's: model weights, their EMA, and AdamW's two moments.

    python bench/checkpoint_overhead.py [--params 25e6] [--repeats 3] [--dir /path/on/target/disk]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from voicetune.checkpoints.saver import BackgroundSaver
from voicetune.checkpoints.store import CheckpointPayload, CheckpointStore
from voicetune.train.state import snapshot_tensors


def make_state(n_params: int) -> dict[str, dict[str, torch.Tensor]]:
    """Model split into transformer-like blocks, EMA, AdamW exp_avg and exp_avg_sq."""
    gen = torch.Generator().manual_seed(0)
    block = 1024 * 1024
    shapes = [(1024, 1024)] * (n_params // block) + [(n_params % block,)]
    model = {f"layer{i}.weight": torch.randn(*shape, generator=gen) for i, shape in enumerate(shapes)}
    return {
        "model": model,
        "ema": {k: v.clone() for k, v in model.items()},
        "optimizer": {
            f"state/{i}/{m}": torch.randn_like(v)
            for i, v in enumerate(model.values())
            for m in ("exp_avg", "exp_avg_sq")
        },
    }


def drop_caches_hint(path: Path) -> None:
    # Remove what the previous repeat wrote so every measurement writes new files.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=25e6, help="model parameters (full state is 4x this in fp32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="a folder on the disk to measure (default: a temp dir)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="vt-bench-", dir=args.dir))
    state = make_state(int(args.params))
    total = sum(t.numel() * t.element_size() for part in state.values() for t in part.values())
    print(f"full state: {total / 1e6:.0f} MB in {sum(len(p) for p in state.values())} tensors; disk: {root}")
    plain, durable, ours, sync, stall = [], [], [], [], []
    try:
        for repeat in range(args.repeats):
            drop_caches_hint(root / "plain")
            t0 = time.perf_counter()
            torch.save(state, root / "plain" / "checkpoint.pt")
            plain.append(time.perf_counter() - t0)

            drop_caches_hint(root / "plain")
            t0 = time.perf_counter()
            with open(root / "plain" / "checkpoint.pt", "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            durable.append(time.perf_counter() - t0)

            store = CheckpointStore(root / f"run{repeat}")
            t0 = time.perf_counter()
            store.commit(
                CheckpointPayload(
                    step=1, role="milestone", kind="full", tensor_files=state, json_files={"loop": {"step": 1}}
                )
            )
            ours.append(time.perf_counter() - t0)

            # Synchronous save as a training loop without a background writer would do it:
            # snapshot, then commit, on the training thread.
            t0 = time.perf_counter()
            snap = {k: snapshot_tensors(v) for k, v in state.items()}
            store.commit(CheckpointPayload(step=2, role="milestone", kind="full", tensor_files=snap, json_files={}))
            sync.append(time.perf_counter() - t0)
            del snap

            # Asynchronous: the training thread pays the snapshot and the hand-over only.
            saver = BackgroundSaver(store, after_commit=lambda stored: None)
            t0 = time.perf_counter()
            snap = {k: snapshot_tensors(v) for k, v in state.items()}
            saver.submit(CheckpointPayload(step=3, role="milestone", kind="full", tensor_files=snap, json_files={}))
            stall.append(time.perf_counter() - t0)
            saver.wait()
            del snap
            shutil.rmtree(store.run_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = statistics.median
    print(f"torch.save (no fsync)           {med(plain):7.3f} s  ({total / med(plain) / 1e6:.0f} MB/s)")
    print(f"torch.save + fsync              {med(durable):7.3f} s  ({total / med(durable) / 1e6:.0f} MB/s)")
    print(f"voicetune commit (hash, fsync)  {med(ours):7.3f} s  ({total / med(ours) / 1e6:.0f} MB/s)")
    print(f"synchronous save (snapshot+commit) {med(sync):7.3f} s")
    print(f"async save: training stall      {med(stall):7.3f} s")
    print(f"ratio commit / torch.save       {med(ours) / med(plain):.2f}   (goal <= 1.10)")
    print(f"ratio commit / torch.save+fsync {med(ours) / med(durable):.2f}")
    print(f"ratio async stall / sync save   {med(stall) / med(sync):.2f}   (goal <= 0.20)")


if __name__ == "__main__":
    main()
