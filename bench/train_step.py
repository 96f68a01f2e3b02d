"""Training speed, ours over upstream's own Trainer (F5-TTS) and over a bare loop (every model),
measured side by side in one run.

The bare loop (bench/bare_loop.py) is forward, loss, backward and step on the same model, data and
batch sizes with nothing else; it stands in for the community scripts that fine-tune Chatterbox
and XTTS. Its ratio is printed last: `updates/s ours / bare loop: R.RR` (goal >= 0.95).

Both train f5-tiny for the same number of updates on the same espeak-ng corpus, with batches of
the same number of mel frames (upstream's DynamicBatchSampler, our `--batch-frames`), one
DataLoader worker each, each in its own fresh subprocess on the same cores. The first `--skip`
updates (start-up, first batches) are left out of both rates.

Prints:
  updates/s   ours / upstream Trainer                                      goal >= 1.0
  frames/s    ours / upstream (the batches differ a little in how full they are)
  bytes       a weights-only milestone / a full-state checkpoint of the same run

    python bench/train_step.py [--updates 40] [--batch-frames 1200] [--repeats 1]
    python bench/train_step.py --model f5-v1-base --mixed-precision bf16 --batch-frames 3200   # on a GPU
    python bench/train_step.py --model chatterbox-tiny     # or xtts-tiny: batches of --batch-size clips
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_RUNNER = REPO_ROOT / "tests" / "support" / "upstream_f5.py"
BARE_RUNNER = REPO_ROOT / "bench" / "bare_loop.py"


def random_weights(model: str) -> list[str]:
    """The flag that starts `model` from random weights (tiny models other than F5's always do)."""
    return ["--pretrained", "none"] if model.startswith("f5") or not model.endswith("-tiny") else []


def batch_flags(model: str, batch_frames: int, batch_size: int) -> list[str]:
    """F5 batches by mel frames; the other families by clips."""
    return ["--batch-frames", str(batch_frames)] if model.startswith("f5") else ["--batch-size", str(batch_size)]


def run_bare(corpus: Path, cache: Path, updates: int, skip: int, model: str, flags: list[str]) -> float:
    """updates/s of the bare loop."""
    result = subprocess.run(
        [sys.executable, str(BARE_RUNNER), str(corpus), str(cache), "--model", model, "--updates", str(updates),
         "--skip", str(skip), *flags],
        env=env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"bare loop failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["updates_per_second"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT / "src"), e.get("PYTHONPATH", "")])
    e["PYTHONUNBUFFERED"] = "1"
    return e


def run_upstream(
    corpus: Path, out: Path, updates: int, batch_frames: int, skip: int, model: str = "f5-tiny", precision: str = "no"
) -> tuple[float, float]:
    """(updates/s, frames/s) of upstream's Trainer."""
    result = subprocess.run(
        [
            sys.executable,
            str(UPSTREAM_RUNNER),
            str(corpus),
            str(out),
            "--updates",
            str(updates),
            "--batch-frames",
            str(batch_frames),
            "--workers",
            "1",
            "--model",
            model,
            "--mixed-precision",
            precision,
        ],
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"upstream Trainer failed:\n{result.stderr[-3000:]}")
    run = json.loads(result.stdout.strip().splitlines()[-1])
    return run["updates_per_second"], run["updates_per_second"] * run["frames_per_update"]


def run_ours(
    corpus: Path,
    run: Path,
    updates: int,
    batch_frames: int,
    skip: int,
    weights_milestone_at: int | None = None,
    model: str = "f5-tiny",
    precision: str = "no",
    flags: list[str] | None = None,
) -> tuple[float, float]:
    """(updates/s, frames/s) of `voicetune train`, from its per-update metrics."""
    save_every = weights_milestone_at or 10**6
    # Random weights, as upstream's Trainer here starts from (and no download).
    args = [
        sys.executable,
        "-m",
        "voicetune",
        "train",
        "--model",
        model,
        *random_weights(model),
        "--mixed-precision",
        precision,
        "--data",
        str(corpus),
        "--run",
        str(run),
        "--max-updates",
        str(updates),
        *(flags or ["--batch-frames", str(batch_frames)]),
        "--workers",
        "1",
        "--save-every",
        str(save_every),
        "--last-every",
        str(10**6),
        "--set",
        "log_every=1",
        "--set",
        "milestone_state=weights",
        "--set",
        "max_sample_prompts=0",
    ]
    result = subprocess.run(args, env=env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"voicetune train failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in records if "perf/updates_per_s" in r and r["step"] > skip + 1}
    seconds = sum(1 / r["perf/updates_per_s"] for r in steps.values())
    frames = sum(r.get("perf/frames_per_s", 0.0) / r["perf/updates_per_s"] for r in steps.values())
    return len(steps) / seconds, frames / seconds


def checkpoint_bytes(run: Path) -> dict[str, int]:
    """{"weights": bytes of the weights-only milestone, "full": bytes of the full final checkpoint}."""
    sizes = {}
    for manifest_path in (run / "checkpoints").glob("*/manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        size = sum(f.stat().st_size for f in manifest_path.parent.iterdir() if f.is_file())
        sizes[manifest.get("kind", "?")] = size
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--batch-frames", type=int, default=1200)
    parser.add_argument("--skip", type=int, default=3, help="first updates left out of the rates")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two this many times")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per batch (models other than F5)")
    parser.add_argument(
        "--model",
        default="f5-tiny",
        help="f5-tiny | f5-v1-small | f5-v1-base | xtts-tiny | chatterbox-tiny (random weights)",
    )
    parser.add_argument("--mixed-precision", default="no", help="no | bf16 | fp16 (GPU), the same for both")
    parser.add_argument("--clips", type=int, default=24, help="espeak-ng clips in the corpus")
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the corpus and runs here (default: a temporary folder)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from voicetune.demo.corpus import write_ljspeech_corpus

    with tempfile.TemporaryDirectory(prefix="train-step-bench-") as tmp:
        tmp = Path(args.out or tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        corpus = write_ljspeech_corpus(tmp / "corpus", n_items=args.clips, sample_rate=24000)
        print(
            f"{args.model} ({args.mixed_precision}), {args.updates} updates of {args.batch_frames} frames, corpus of "
            f"{args.clips} espeak-ng clips; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        flags = batch_flags(args.model, args.batch_frames, args.batch_size)
        if not args.model.startswith("f5"):  # no upstream trainer: the bare loop alone
            compare_with_bare(args, corpus, tmp, flags)
            return
        ours, theirs, sizes = [], [], {}
        for repeat in range(args.repeats):
            theirs.append(
                run_upstream(
                    corpus,
                    tmp / f"upstream{repeat}",
                    args.updates,
                    args.batch_frames,
                    args.skip,
                    args.model,
                    args.mixed_precision,
                )
            )
            run = tmp / f"ours{repeat}"
            ours.append(
                run_ours(
                    corpus,
                    run,
                    args.updates,
                    args.batch_frames,
                    args.skip,
                    weights_milestone_at=args.updates // 2,
                    model=args.model,
                    precision=args.mixed_precision,
                )
            )
            sizes = checkpoint_bytes(run)
            print(f"  round {repeat + 1}: upstream {theirs[-1][0]:.3f} updates/s, ours {ours[-1][0]:.3f} updates/s")
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        ups_ratio = mean([o[0] for o in ours]) / mean([t[0] for t in theirs])
        fps_ratio = mean([o[1] for o in ours]) / mean([t[1] for t in theirs])
        print(f"\n{'measure':44s} {'ours':>10s} {'upstream':>10s} {'ratio':>7s}  goal")
        print(
            f"{'updates/s (ours / upstream Trainer)':44s} {mean([o[0] for o in ours]):10.3f} "
            f"{mean([t[0] for t in theirs]):10.3f} {ups_ratio:7.2f}  >= 1.0 {'met' if ups_ratio >= 1 else 'NOT met'}"
        )
        print(
            f"{'frames/s (ours / upstream Trainer)':44s} {mean([o[1] for o in ours]):10.0f} "
            f"{mean([t[1] for t in theirs]):10.0f} {fps_ratio:7.2f}"
        )
        if "weights" in sizes and "full" in sizes:
            print(
                f"{'bytes: weights-only milestone / full state':44s} {sizes['weights']:10d} {sizes['full']:10d} "
                f"{sizes['weights'] / sizes['full']:7.2f}"
            )
        print(f"load average now {os.getloadavg()[0]:.1f} (other work on these cores makes both slower)")
        compare_with_bare(args, corpus, tmp, flags)


def compare_with_bare(args: argparse.Namespace, corpus: Path, tmp: Path, flags: list[str]) -> None:
    """`voicetune train` and the bare loop alternated `--repeats` times; the ratio printed last."""
    ours, bare = [], []
    for repeat in range(args.repeats):
        bare.append(run_bare(corpus, tmp / f"bare-cache{repeat}", args.updates, args.skip, args.model, flags))
        ours.append(
            run_ours(
                corpus, tmp / f"ours-vs-bare{repeat}", args.updates, args.batch_frames, args.skip,
                model=args.model, precision=args.mixed_precision, flags=flags,
            )[0]
        )  # fmt: skip
        print(f"  round {repeat + 1}: bare loop {bare[-1]:.3f} updates/s, ours {ours[-1]:.3f} updates/s")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    print(f"updates/s ours / bare loop: {sum(ours) / sum(bare):.2f}")


if __name__ == "__main__":
    main()
