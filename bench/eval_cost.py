"""What scoring a milestone costs, over the training time between two milestones, in one run.

f5-tiny trains on the demo's espeak-ng corpus (32 clips at 24 kHz, the model's default frame
batches, the EMA averaging from the start so that its weights differ from the raw ones, as at
every milestone of a real run) without scoring, for its updates/s; then one checkpoint is scored
the way training scores a milestone, side by side in the same process:

    before  every draw (issue 29's starting point): the EMA and the raw weights each say the
            default evaluation set with every seed (default 2); WER/CER, similarity, DNSMOS in
            speechmos's windows (a 3 s take repeated to 12 s is rated in 3 windows)
    after   the defaults now: draws as needed (both sets say it with the first seed; the other
            seeds are said by the chosen set alone when those pairs tell the sets apart), DNSMOS
            in one window for a take shorter than a window

The ratio is

    time of one milestone evaluation / time of save_every updates

for the demo configuration (`voicetune demo`: a milestone every 500 updates) and for f5-tiny at save_every 1000. The evaluation's
one-time set-up (loading whisper, the speaker encoder and DNSMOS; scoring the real clips for the
ceiling) happens once per training session and is printed on its own line, as is where the time
of one evaluation goes (saying the takes, and measuring them).

    python bench/eval_cost.py [--updates 20] [--whisper-model PATH] [--clips 4] [--seeds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
F5_SAVE_EVERY = 1000
GOAL = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20, help="updates timed for the training speed")
    parser.add_argument("--skip", type=int, default=3, help="first updates left out of the rate")
    parser.add_argument("--whisper-model", default=str(REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2"))
    parser.add_argument("--clips", type=int, default=None, help="held-out sentences (default: the training default)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sentence (default: the training default)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step import run_ours

    from voicetune.checkpoints import keys
    from voicetune.checkpoints.store import load_checkpoint
    from voicetune.demo import DemoPlan
    from voicetune.demo.corpus import write_ljspeech_corpus
    from voicetune.evaluation import (
        DEFAULT_EVAL_CLIPS,
        DEFAULT_EVAL_SEEDS,
        choose_eval_set,
        evaluate_weights,
        score_real_voice,
    )
    from voicetune.models.f5.spec import model_spec
    from voicetune.scoring import get_scorers
    from voicetune.synthesis.inference import load_trained_model

    clips, seeds = args.clips or DEFAULT_EVAL_CLIPS, args.seeds or DEFAULT_EVAL_SEEDS
    batch_frames = model_spec("f5-tiny").default_batch_frames
    with tempfile.TemporaryDirectory(prefix="eval-cost-bench-") as tmp:
        tmp = Path(tmp)
        plan = DemoPlan(tmp)
        corpus = write_ljspeech_corpus(tmp / "corpus", n_items=plan.clips, sample_rate=plan.sample_rate)
        print(
            f"f5-tiny, demo corpus of {plan.clips} espeak-ng clips, batches of {batch_frames} frames; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        os.environ["VOICETUNE_EMA_UPDATE_AFTER"] = "0"  # an EMA of its own, not a copy of the weights
        os.environ["VOICETUNE_EVALUATE"] = "false"  # the milestone is scored below, side by side
        updates_per_s, _ = run_ours(
            corpus, tmp / "run", args.updates, batch_frames, args.skip, weights_milestone_at=args.updates
        )
        trained = load_trained_model(tmp / "run", weights="raw")
        loaded = load_checkpoint(trained.checkpoint, components=[keys.MODEL, keys.EMA_FILE])
        raw, ema = loaded.tensors[keys.MODEL], loaded.tensors[keys.EMA_FILE]
        started = time.perf_counter()
        scorers = get_scorers(args.whisper_model)
        eval_set = choose_eval_set(corpus, None, clips, "en", seeds=seeds)
        real = score_real_voice(eval_set, scorers)
        setup = time.perf_counter() - started
        measuring = Stopwatch(scorers)

        def evaluate(draws):
            sets = {"raw": raw, "ema": ema}
            return evaluate_weights(trained.adapter, trained.model, sets, eval_set, real, scorers, draws=draws)

        evaluate("all")  # warm: what every later milestone costs
        seconds: dict[str, float] = {}
        measured: dict[str, float] = {}
        for label, draws in (("before", "all"), ("after", "as needed")) * 2:
            if scorers.quality is not None:
                scorers.quality.count_repetitions = label == "before"
            measuring.seconds = 0.0
            started = time.perf_counter()
            results = evaluate(draws)
            took = time.perf_counter() - started
            if took < seconds.get(label, float("inf")):
                seconds[label], measured[label] = took, measuring.seconds
            takes = {k: sum(p is not None for p in r.pairs) for k, r in results.items()}
    print(f"training: {updates_per_s:.3f} updates/s")
    print(
        f"evaluation set: {len(eval_set.texts)} sentences x {seeds} seeds; once per session before the first "
        f"milestone: {setup:.1f} s (models, ceiling); scores now: "
        + ", ".join(f"{k} {r.score} (spread {r.score_spread}, {takes[k]} takes)" for k, r in results.items())
    )
    for label in ("before", "after"):
        print(
            f"one milestone evaluation, {label}: {seconds[label]:.1f} s, of which measuring (whisper, encoder, "
            f"DNSMOS) {measured[label]:.1f} s and saying the takes {seconds[label] - measured[label]:.1f} s"
        )
    print(f"after / before: {seconds['after'] / seconds['before']:.2f}x (best of two each)")
    demo_every = plan.save_every
    for label, save_every in (
        (f"demo (save_every {demo_every})", demo_every),
        ("f5-tiny at save_every 1000", F5_SAVE_EVERY),
    ):
        between = save_every / updates_per_s
        ratios = {k: v / between for k, v in seconds.items()}
        verdict = "ok" if ratios["after"] <= GOAL else f"ABOVE the goal {GOAL}"
        print(
            f"{label}: evaluation / training between milestones ({between:.0f} s): before {ratios['before']:.3f}, "
            f"after {ratios['after']:.3f} ({verdict})"
        )


class Stopwatch:
    """Adds up the time `scorers.score` takes (whisper, the speaker encoder, DNSMOS)."""

    def __init__(self, scorers):
        self.seconds = 0.0
        score = scorers.score

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return score(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        scorers.score = timed


if __name__ == "__main__":
    main()
