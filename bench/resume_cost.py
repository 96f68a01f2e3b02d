"""What a resume costs beyond reading the checkpoint once, measured side by side in one run.

A resume must verify every file against its manifest's sha256 and load it. voicetune does both
in one pass over a copy-on-write memory map (the tensors are views of the mapped pages), so a
resume should take about as long as hashing the same bytes once, and add almost no memory
beyond the loaded tensors. For comparison the plain way is measured too: read the whole file
(`read_bytes`), hash it, and parse it with `safetensors.torch.load` (which copies).

Prints:
  resume time / hash once     a resume (manager.start: choose, verify, load) over sha256 of the
                              same files (goal <= 1.3)
  extra memory / size         peak RSS while loading minus RSS once loaded, over the
                              checkpoint's size (goal <= 0.2)
for voicetune's resume and for the plain read_bytes way. Each load runs in a fresh process
(peak RSS is a process's lifetime high-water mark); the files are in the page cache for both.

    python bench/resume_cost.py [--params 50e6] [--repeats 3] [--dir /path/on/target/disk]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from voicetune import fsio
from voicetune.checkpoints.store import CheckpointPayload, CheckpointStore

CHILD = r"""
import json, sys, time
from pathlib import Path

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import torch, hashlib
from voicetune.checkpoints.manager import CheckpointManager
from voicetune.checkpoints.store import load_checkpoint
mode, run = sys.argv[1], Path(sys.argv[2])
before = status("VmRSS:")
started = time.perf_counter()
if mode == "voicetune":
    start = CheckpointManager(run).start("auto", None)
    tensors = start.loaded.tensors
else:
    from safetensors.torch import load
    ckpt = next((run / "checkpoints").iterdir())
    manifest = json.loads((ckpt / "manifest.json").read_text())
    tensors = {}
    for name, expected in manifest["files"].items():
        data = (ckpt / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected["sha256"]
        if name.endswith(".safetensors"):
            tensors[name] = load(data)
        del data
seconds = time.perf_counter() - started
loaded = status("VmRSS:")
print(json.dumps({"seconds": seconds, "peak": status("VmHWM:"), "loaded": loaded, "before": before,
                  "tensor_bytes": sum(t.numel() * t.element_size() for part in tensors.values() for t in part.values())}))
"""


def make_checkpoint(root: Path, n_params: int) -> tuple[Path, int]:
    """A full-state checkpoint shaped like a real run's: model, EMA, AdamW's two moments."""
    gen = torch.Generator().manual_seed(0)
    block = 1024 * 1024
    shapes = [(1024, 1024)] * (n_params // block) + [(max(1, n_params % block),)]
    model = {f"layer{i}.weight": torch.randn(*s, generator=gen) for i, s in enumerate(shapes)}
    optimizer = {
        f"state/{i}/{m}": torch.randn(*s, generator=gen)
        for i, s in enumerate(shapes)
        for m in ("exp_avg", "exp_avg_sq")
    }
    store = CheckpointStore(root)
    stored = store.commit(
        CheckpointPayload(
            step=1,
            role="rolling",
            kind="full",
            tensor_files={"model": model, "ema": {k: v.clone() for k, v in model.items()}, "optimizer": optimizer},
            json_files={"loop": {"step": 1}},
        )
    )
    return stored.path, stored.size_bytes


def hash_once(ckpt: Path) -> float:
    started = time.perf_counter()
    for file in sorted(ckpt.iterdir()):
        fsio.sha256_file(file)
    return time.perf_counter() - started


def load_in_child(mode: str, run: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(run)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=float, default=50e6, help="model parameters (the checkpoint holds 4x in fp32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoint (default: a temp folder)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="voicetune-resume-", dir=args.dir))
    try:
        ckpt, size = make_checkpoint(root, int(args.params))
        hash_once(ckpt)  # warm the page cache: every measure below reads cached pages
        hashes, runs = [], {"voicetune": [], "read_bytes": []}
        for _ in range(args.repeats):
            hashes.append(hash_once(ckpt))
            for mode in runs:
                runs[mode].append(load_in_child(mode, root))
        hash_s = statistics.median(hashes)
        print(
            f"checkpoint: {size / 2**20:.0f} MiB in {len(list(ckpt.iterdir()))} files; sha256 of it once: {hash_s:.2f} s"
        )
        for mode, results in runs.items():
            seconds = statistics.median(r["seconds"] for r in results)
            extra = statistics.median(r["peak"] - r["loaded"] for r in results)
            print(
                f"{mode:>10}: resume {seconds:.2f} s  resume time / hash once = {seconds / hash_s:.2f}  "
                f"extra memory / size = {extra / size:.2f}  (RSS {results[0]['before'] / 2**20:.0f} MiB before, "
                f"{results[0]['loaded'] / 2**20:.0f} MiB loaded, peak {results[0]['peak'] / 2**20:.0f} MiB)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
