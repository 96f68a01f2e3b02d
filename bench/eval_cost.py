"""What scoring a milestone costs, over the training time between two milestones, in one run.

f5-tiny trains on the demo's espeak-ng corpus (32 clips at 24 kHz, the model's default frame
batches) without scoring, for its updates/s; then one checkpoint is scored the way training scores
a milestone (the default evaluation set synthesized with the EMA weights, WER/CER with whisper,
similarity, DNSMOS). The ratio is

    time of one milestone evaluation / time of save_every updates

for the demo configuration (save_every 80) and for f5-tiny at save_every 1000. The evaluation's
one-time set-up (loading whisper, the speaker encoder and DNSMOS; scoring the real clips for the
ceiling) happens once per training session and is printed on its own line.

    python bench/eval_cost.py [--updates 20] [--whisper-model PATH] [--clips 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_SAVE_EVERY = 80
F5_SAVE_EVERY = 1000
GOAL = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20, help="updates timed for the training speed")
    parser.add_argument("--skip", type=int, default=3, help="first updates left out of the rate")
    parser.add_argument("--whisper-model", default=str(REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2"))
    parser.add_argument("--clips", type=int, default=None, help="held-out sentences (default: the training default)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step import run_ours

    from voicetune.demo import DemoPlan
    from voicetune.demo.corpus import write_ljspeech_corpus
    from voicetune.evaluation import DEFAULT_EVAL_CLIPS, choose_eval_set, evaluate_model, score_real_voice
    from voicetune.synthesis.inference import load_trained_model
    from voicetune.models.f5.spec import model_spec
    from voicetune.scoring import get_scorers

    clips = args.clips or DEFAULT_EVAL_CLIPS
    batch_frames = model_spec("f5-tiny").default_batch_frames
    with tempfile.TemporaryDirectory(prefix="eval-cost-bench-") as tmp:
        tmp = Path(tmp)
        plan = DemoPlan(tmp)
        corpus = write_ljspeech_corpus(tmp / "corpus", n_items=plan.clips, sample_rate=plan.sample_rate)
        print(f"f5-tiny, demo corpus of {plan.clips} espeak-ng clips, batches of {batch_frames} frames; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        updates_per_s, _ = run_ours(corpus, tmp / "run", args.updates, batch_frames, args.skip,
                                    weights_milestone_at=args.updates)
        trained = load_trained_model(tmp / "run")
        started = time.perf_counter()
        scorers = get_scorers(args.whisper_model)
        eval_set = choose_eval_set(corpus, None, clips, "en")
        real = score_real_voice(eval_set, scorers)
        setup = time.perf_counter() - started
        evaluate_model(trained.adapter, trained.model, eval_set, real, scorers)  # warm: what every later milestone costs
        started = time.perf_counter()
        result = evaluate_model(trained.adapter, trained.model, eval_set, real, scorers)
        seconds = time.perf_counter() - started
    print(f"training: {updates_per_s:.3f} updates/s")
    print(f"one milestone evaluation ({len(eval_set.texts)} sentences): {seconds:.1f} s; "
          f"once per session before it: {setup:.1f} s (models, ceiling); score {result.score}")
    for label, save_every in (("demo (save_every 80)", DEMO_SAVE_EVERY), ("f5-tiny at save_every 1000", F5_SAVE_EVERY)):
        between = save_every / updates_per_s
        ratio = seconds / between
        verdict = "ok" if ratio <= GOAL else f"ABOVE the goal {GOAL}"
        print(f"{label}: evaluation / training between milestones = {seconds:.1f} s / {between:.0f} s = {ratio:.3f} ({verdict})")


if __name__ == "__main__":
    main()
