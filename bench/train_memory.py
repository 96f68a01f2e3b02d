"""Peak host memory of f5-tiny training with and without milestone scoring, side by side in one run.

Two `voicetune train` processes train f5-tiny on the demo's espeak-ng corpus with the same
settings (a milestone every `--save-every` updates, one DataLoader worker), the one scoring its
milestones (the default evaluation set: whisper, the speaker encoder, DNSMOS, both weight sets),
the other not (`--set evaluate=false`). Each one's peak resident set (the training process's own,
from wait4's rusage) is printed, and their ratio (goal: <= 1.5, issue 29). `voicetune plan` states
these figures for the tiny models (`models.registry.HOST_PEAK_MEASURED`).

    python bench/train_memory.py [--updates 6] [--save-every 3] [--whisper-model PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.5


def peak_rss(args: list[str], extra_env: dict[str, str]) -> tuple[int, str]:
    """(peak RSS in bytes of `python -m voicetune ARGS`, its output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "PYTHONUNBUFFERED": "1", **extra_env}
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "voicetune", *args], env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"voicetune {' '.join(args[:1])} failed:\n{text[-3000:]}")
    return usage.ru_maxrss * 1024, text  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--save-every", type=int, default=3)
    parser.add_argument("--whisper-model", default=str(REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from voicetune.demo import DemoPlan
    from voicetune.demo.corpus import write_ljspeech_corpus

    mib = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="train-memory-bench-") as tmp:
        tmp = Path(tmp)
        plan = DemoPlan(tmp)
        corpus = write_ljspeech_corpus(tmp / "corpus", n_items=plan.clips, sample_rate=plan.sample_rate)
        common = ["--model", "f5-tiny", "--data", str(corpus), "--max-updates", str(args.updates)]
        common += ["--save-every", str(args.save_every), "--workers", "1", "--set", "max_sample_prompts=0"]
        peaks = {}
        for label, evaluate in (("without scoring", "false"), ("with scoring", "true")):
            run = tmp / label.replace(" ", "-")
            peaks[label], _ = peak_rss(
                ["train", "--run", str(run), *common],
                {"VOICETUNE_EVALUATE": evaluate, "VOICETUNE_WHISPER_MODEL": args.whisper_model},
            )
    print(
        f"f5-tiny, demo corpus of {plan.clips} clips, {args.updates} updates, a milestone every {args.save_every}; "
        f"{os.cpu_count()} CPUs"
    )
    for label, peak in peaks.items():
        print(f"peak host memory (RSS of the training process) {label}: {peak / mib:.0f} MiB")
    ratio = peaks["with scoring"] / peaks["without scoring"]
    verdict = "ok" if ratio <= GOAL else f"ABOVE the goal {GOAL}"
    print(f"with / without scoring: {ratio:.2f}x ({verdict})")


if __name__ == "__main__":
    main()
