"""How well `prepare --speaker` keeps one voice of two that take turns, per pair of voices, in one run.

    python bench/speaker_pairs.py [--pairs es+fr,fr+ru] [--rates 8000,16000]

Builds the pairs of tests/data/voice_pairs.py (Asterisk's telephone voices, and espeak-ng voices
with different settings as a floor): two recordings per pair (a wav and an mp3, about 110 s
each) where the target speaks two turns in three, in turns of 3-8 s with pauses of 0.4-1.6 s, at
8 kHz and resampled to 16 kHz, and 12 s of the target's other prompts as the reference. Then runs
the filter on each pair as `prepare` does (decode, voice activity, windows, clustering, clip
planning; no transcription, which does not change which speech is kept), in both modes:

  REF    --speaker reference.wav
  auto   --speaker auto over the pair's two recordings (stopped: no voice holds MAJORITY)

and scores the planned clips against where each voice speaks:

  precision   the share of kept clips that hold at most 1 s of the other voice   goal >= 0.95
  recall      the share of the target's speech that lies in a kept clip          goal >= 0.80
              (judged: the share judged the target's before clips are planned; the rest is
              turns too short for a clip of --min-seconds between two turns of the other voice)
  estimated   the purity the filter estimates (mean of its clips' p_target), beside the measured
              precision: what report.json says about a dataset with no ground truth
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests" / "data"), str(REPO_ROOT / "tests")]

from voice_pairs import ESPEAK_PAIRS, REAL_PAIRS, build_pair, score_pair  # noqa: E402

GOALS = {"precision": 0.95, "recall": 0.80}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    every = [f"{t}+{o}" for t, o in REAL_PAIRS + ESPEAK_PAIRS]
    parser.add_argument("--pairs", default="", help="target+other names to run (default: all), e.g. es+fr")
    parser.add_argument("--rates", default="8000,16000")
    args = parser.parse_args()
    wanted = set(args.pairs.split(",")) - {""}
    rates = tuple(int(r) for r in args.rates.split(","))
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="speaker-pairs-") as folder:
        for target, other in REAL_PAIRS + ESPEAK_PAIRS:
            if (
                wanted
                and f"{target}+{other}" not in wanted
                and f"{target.split('|')[0]}+{other.split('|')[0]}" not in wanted
            ):
                continue
            for pair in build_pair(Path(folder), target, other, rates):
                for row in score_pair(pair):
                    rows.append(row)
                    print(_line(row), flush=True)
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s ({', '.join(every)} available)")
    for mode in ("REF", "auto"):
        for real in (True, False):
            mine = [r for r in rows if r["mode"] == mode and r["real"] == real]
            if not mine:
                continue
            scored = [r for r in mine if not r.get("stopped")]
            worst = min(
                scored,
                key=lambda r: min(r["precision"] / GOALS["precision"], r["recall"] / GOALS["recall"]),
                default=None,
            )
            print(
                f"{mode:4s} {'real pairs' if real else 'espeak-ng '}: precision min {min((r['precision'] for r in scored), default=0):.3f}"
                f" mean {_mean(scored, 'precision'):.3f}, recall min {min((r['recall'] for r in scored), default=0):.3f}"
                f" mean {_mean(scored, 'recall'):.3f}; stopped {len(mine) - len(scored)} of {len(mine)}"
                + (f"; worst pair {worst['pair']} at {worst['rate'] // 1000} kHz" if worst else "")
            )


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows) if rows else 0.0


def _line(row: dict) -> str:
    head = f"{row['pair']:28s} {row['rate'] // 1000:2d} kHz {row['mode']:4s}"
    if row.get("stopped"):
        return f"{head} stopped: the voice that speaks most holds {row['share']:.0%}"
    verdict = "ok" if row["precision"] >= GOALS["precision"] and row["recall"] >= GOALS["recall"] else "BELOW GOAL"
    share = f" share {row['share']:.0%}" if "share" in row else ""
    return (
        f"{head} clips {row['clips']:3d} precision {row['precision']:.3f} recall {row['recall']:.3f}"
        f" (judged {row['judged_recall']:.3f}) estimated {row['estimated']:.3f} most other kept {row['other_kept']:.1f} s{share} {verdict}"
    )


if __name__ == "__main__":
    main()
