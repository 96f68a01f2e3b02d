"""GPU checks of voicetune, one script, about 6-8 minutes on one GPU (bench/gpu_check.sh runs it).

Prints, each measured in this run:
  1. speed      f5-v1-base (random weights, bf16) frames/s: ours / upstream f5-tts Trainer on the
                same corpus and frame batches (bench/train_step.py)
  2. memory     peak GPU memory of that training run (torch.cuda.max_memory_allocated) against the
                plan's estimate: the formula, and the measured probe (`voicetune plan --json`)
  3. OOM        recovery from a real CUDA out-of-memory: f5-v1-base held to --gpu-memory 12G with a
                batch that cannot fit; the run must log the split, finish every update and record it
  4. resume     f5-tiny on the GPU, bf16, stopped with SIGTERM and resumed: weights bit-equal to a
                straight run with deterministic algorithms (--set deterministic=true); the largest
                difference without them

    bench/gpu_check.sh [OUT_DIR]                 the whole check (exit 1 if a check fails)
    python bench/gpu_check.py --cpu-dry-run      the same steps with f5-tiny on a CPU (no OOM step):
                                                 checks the script itself where there is no GPU
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "src")]

GIB = 1024**3
FAILED: list[str] = []


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT / "src"), e.get("PYTHONPATH", "")])
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def voicetune(*args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voicetune", *map(str, args)],
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check(name: str, ok: bool, detail: str) -> None:
    print(f"  [{'ok' if ok else 'FAILED'}] {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# ---- 1 and 2: speed, peak memory against the plan -------------------------------------------


def speed_and_memory(out: Path, model: str, precision: str, frames: int, updates: int, clips: int) -> None:
    print(f"\n== 1. speed: {model} {precision}, {frames}-frame batches, ours / upstream Trainer", flush=True)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "train_step.py"),
            "--model",
            model,
            "--mixed-precision",
            precision,
            "--batch-frames",
            str(frames),
            "--updates",
            str(updates),
            "--clips",
            str(clips),
            "--out",
            str(out / "speed"),
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=420,
    )
    print(result.stdout[-2500:], flush=True)
    check(
        "speed bench ran", result.returncode == 0, result.stderr[-800:] if result.returncode else "see the table above"
    )

    print("\n== 2. memory: peak of that run against voicetune plan", flush=True)
    ours = out / "speed" / "ours0"
    peaks = [r["perf/gpu_memory_gib"] for r in metrics(ours) if "perf/gpu_memory_gib" in r]
    corpus = out / "speed" / "corpus"
    common = [
        "--model",
        model,
        "--pretrained",
        "none",
        "--data",
        corpus,
        "--batch-frames",
        str(frames),
        "--mixed-precision",
        precision,
        "--json",
    ]
    formula = voicetune("plan", *common, "--no-probe")
    measured = voicetune("plan", *common, "--probe", timeout=300)
    for name, result in (("formula", formula), ("probe", measured)):
        if result.returncode != 0:
            check(f"plan ({name})", False, result.stderr[-500:])
    if not peaks or formula.returncode or measured.returncode:
        check(
            "peak memory against the plan",
            False,
            "no GPU memory figures (is this a GPU?)" if not peaks else "plan failed",
        )
        return
    peak = max(peaks) * GIB
    for result in (formula, measured):
        plan = json.loads(result.stdout)
        # The plan counts the CUDA context, which max_memory_allocated does not see.
        estimate = plan["peak_memory_bytes"] - plan["memory"]["parts"].get("cuda_context", 0)
        ratio = peak / estimate
        check(
            f"peak / plan ({plan['estimate']})",
            0.7 <= ratio <= 1.3,
            f"measured {peak / GIB:.2f} GiB, plan {estimate / GIB:.2f} GiB, ratio {ratio:.2f} (goal 0.7-1.3); "
            f"largest --batch-frames for {plan['gpu_memory_source']}: {plan.get('max_batch_frames')}",
        )


# ---- 3: recovery from a real CUDA out-of-memory -----------------------------------------------


def oom_recovery(out: Path, model: str, precision: str, budget: str, frames: int) -> None:
    print(f"\n== 3. out-of-memory: {model} held to --gpu-memory {budget}, {frames}-frame batches", flush=True)
    corpus = out / "speed" / "corpus"
    run = out / "oom"
    result = voicetune(
        "train",
        "--model",
        model,
        "--pretrained",
        "none",
        "--data",
        corpus,
        "--run",
        run,
        "--batch-frames",
        str(frames),
        "--gpu-memory",
        budget,
        "--mixed-precision",
        precision,
        "--max-updates",
        "4",
        "--save-every",
        "1000",
        "--last-every",
        "1000",
        "--workers",
        "2",
        "--set",
        "max_sample_prompts=0",
        "--set",
        "log_every=1",
        timeout=400,
    )
    lines = [line for line in result.stdout.splitlines() if "out of memory at step" in line]
    run_json = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    changes = run_json.get("memory_changes", [])
    done = [r["step"] for r in metrics(run)]
    check(
        "a real CUDA OOM was met and recovered",
        result.returncode == 0 and bool(lines) and bool(changes),
        (lines[0] if lines else "no OOM line") + f"; exit {result.returncode}; updates logged {len(done)}; "
        f"run.json memory_changes {changes}" + (f"\n{result.stderr[-1500:]}" if result.returncode else ""),
    )
    check("no update lost", done == list(range(1, 5)), f"steps {done}")


# ---- 4: exact resume on the GPU ---------------------------------------------------------------


def straight_and_resumed(
    out: Path, name: str, model: str, precision: str, updates: int, stop_at: int, extra: list[str]
) -> tuple[Path, Path]:
    from support.harness import Training, cli_env, last_logged_step, wait_until

    corpus = out / "speed" / "corpus"
    base = [
        "--model",
        model,
        "--pretrained",
        "none",
        "--data",
        str(corpus),
        "--max-updates",
        str(updates),
        "--batch-frames",
        "700",
        "--save-every",
        "10",
        "--last-every",
        "5",
        "--workers",
        "1",
        "--mixed-precision",
        precision,
        "--set",
        "max_sample_prompts=0",
        *extra,
    ]
    straight, run = out / f"{name}_straight", out / f"{name}_resumed"
    result = voicetune("train", *base, "--run", straight)
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-1000:] + result.stderr[-1000:])
    training = Training([*base, "--run", str(run)], env=cli_env(), log=out / f"{name}.log")
    wait_until(lambda: last_logged_step(run) >= stop_at, timeout=300, proc=training.proc)
    training.signal(signal.SIGTERM)
    code = training.wait(300)
    if code != 143:
        raise RuntimeError(f"SIGTERM exit {code}: {training.output()[-1000:]}")
    result = voicetune("train", *base, "--run", run)
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-1000:] + result.stderr[-1000:])
    return straight, run


def weight_distance(a: Path, b: Path) -> tuple[bool, float]:
    import torch
    from safetensors.torch import load_file

    from voicetune.checkpoints.store import CheckpointStore

    fa = max(CheckpointStore(a).scan(), key=lambda c: c.step).path / "model.safetensors"
    fb = max(CheckpointStore(b).scan(), key=lambda c: c.step).path / "model.safetensors"
    ta, tb = load_file(str(fa)), load_file(str(fb))
    equal = ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    distance = max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta)
    return equal, distance


def exact_resume(out: Path, precision: str) -> None:
    print(f"\n== 4. exact resume: f5-tiny {precision}, SIGTERM at step >= 12 of 30, resumed", flush=True)
    try:
        straight, run = straight_and_resumed(
            out, "deterministic", "f5-tiny", precision, 30, 12, ["--set", "deterministic=true"]
        )
        equal, distance = weight_distance(straight, run)
        check("bit-equal with deterministic algorithms", equal, f"largest weight difference {distance:.3g}")
        straight, run = straight_and_resumed(out, "default", "f5-tiny", precision, 30, 12, [])
        equal, distance = weight_distance(straight, run)
        print(f"  [info] without deterministic algorithms: bit-equal {equal}, largest weight difference {distance:.3g}")
    except Exception as err:  # noqa: BLE001 - a report line, not a crash of the whole check
        check("exact resume", False, f"{type(err).__name__}: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--cpu-dry-run", action="store_true", help="f5-tiny on the CPU, tiny sizes, no OOM step")
    args = parser.parse_args()
    import torch

    out = args.out or Path(tempfile.mkdtemp(prefix="voicetune-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.cpu_dry_run:
        print(f"CPU dry run into {out}: the steps of the GPU check with f5-tiny", flush=True)
        speed_and_memory(out, "f5-tiny", "no", 700, 8, 12)
        exact_resume(out, "no")
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU here: run with --cpu-dry-run to check the script itself")
        props = torch.cuda.get_device_properties(0)
        print(
            f"{props.name}, {props.total_memory / GIB:.0f} GiB, torch {torch.__version__}; output in {out}", flush=True
        )
        speed_and_memory(out, "f5-v1-base", "bf16", 3200, 30, 48)
        oom_recovery(out, "f5-v1-base", "bf16", "12G", 12000)
        exact_resume(out, "bf16")
    print(
        f"\n{len(FAILED)} check(s) failed{': ' + ', '.join(FAILED) if FAILED else ''}; "
        f"{time.monotonic() - started:.0f} s",
        flush=True,
    )
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
