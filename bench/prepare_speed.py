"""How many times faster than real time `voicetune prepare` runs, stage by stage, in one run.

    python bench/prepare_speed.py [--minutes 6] [--whisper-model PATH]

Builds a long espeak-ng recording (sentences with pauses of varied length and run-on stretches
without any), cut into four files (an mp3 among them), then times on this machine:

  segmentation      silero-vad and clip planning on the decoded 16 kHz audio    goal >= 200x
  ingest + segment  decode, mix, resample, loudness, then segmentation          (for reference)
  whole pipeline    `prepare` with whisper-base int8, default settings          goal >= 10x
                    and with --workers 2, and --beam-size 1

Ratios are audio seconds over wall seconds; model loading is inside the pipeline figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from voicetune.data.ingest import load_source  # noqa: E402
from voicetune.data.prepare import PrepareOptions, available_cores, prepare_dataset  # noqa: E402
from voicetune.data.segment import ClipLimits, SpeechDetector, segment_speech  # noqa: E402
from voicetune.demo_recordings import RunOn, build_recording, pause_free_sentences, talk_plan  # noqa: E402


def build_inputs(folder: Path, minutes: float) -> tuple[list[Path], float]:
    """Four recordings, about `minutes` in all: wav, flac, mp3 and 8 kHz wav."""
    import soundfile as sf
    import soxr

    sentences = pause_free_sentences()
    per_file = minutes * 60 / 4
    paths, total = [], 0.0
    for index, (name, rate) in enumerate([("a.wav", 24000), ("b.flac", 48000), ("c.mp3", 44100), ("d.wav", 8000)]):
        plan, seconds = [], 0.0
        while seconds < per_file:
            chunk = talk_plan(6, [0.35, 0.8, 1.5, 0.5, 0.3, 1.0], first=index * 7 + len(plan))
            chunk.append(RunOn(" ".join(sentences[(len(plan) + i) % len(sentences)].rstrip(".") for i in range(5)), 1.0))
            plan += chunk
            seconds += 6 * 2.3 + 5 * 2.3 + 6  # about: sentences, the run-on, the pauses
        recording = build_recording(plan, cache_dir=folder / "espeak")
        audio = soxr.resample(recording.samples, recording.sample_rate, rate)
        path = folder / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".mp3"):
            wav = path.with_suffix(".tmp.wav")
            sf.write(wav, audio, rate)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "128k", str(path)], check=True)
            wav.unlink()
        else:
            sf.write(path, audio, rate)
        paths.append(path)
        total += recording.duration
    return paths, total


def time_segmentation(paths: list[Path]) -> tuple[float, float]:
    """(wall seconds of segmentation alone, of ingest + segmentation) over all files."""
    detector, limits = SpeechDetector(), ClipLimits()
    segment_only = with_ingest = 0.0
    for path in paths:
        started = time.perf_counter()
        audio = load_source(path, 24000, -23.0)
        decoded = time.perf_counter()
        segment_speech(audio.analysis, detector, limits)
        finished = time.perf_counter()
        segment_only += finished - decoded
        with_ingest += finished - started
    return segment_only, with_ingest


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_pipeline(paths: list[Path], out: Path, model: str, **options) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one prepare run from scratch."""
    shutil.rmtree(out, ignore_errors=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = prepare_dataset(paths, out, PrepareOptions(whisper_model=model, **options), show_progress=False)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(f"    ({result.clips} clips, {result.report['totals']['hours_kept'] * 60:.1f} min kept, {result.workers} worker(s))")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="minutes of speech to build (default 6)")
    default_model = os.environ.get("VOICETUNE_WHISPER_MODEL") or str(REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2")
    parser.add_argument("--whisper-model", default=default_model)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prepare-bench-") as tmp:
        folder = Path(tmp)
        paths, seconds = build_inputs(folder, args.minutes)
        print(f"{seconds / 60:.1f} min of espeak-ng speech in {len(paths)} files; {available_cores()} CPU cores; "
              f"load average {os.getloadavg()[0]:.1f}")
        rows = []
        cpu = cpu_seconds()
        segment_only, with_ingest = time_segmentation(paths)
        rows.append(("segmentation (silero-vad + clip planning)", segment_only, None, 200))
        rows.append(("ingest + segmentation (decode, resample, loudness)", with_ingest, cpu_seconds() - cpu, None))
        for label, options in [
            ("whole pipeline, whisper-base int8, defaults (beam 5)", {}),
            ("whole pipeline, --workers 2", {"workers": 2}),
            ("whole pipeline, --workers 2 --beam-size 1", {"workers": 2, "beam_size": 1}),
        ]:
            print(f"  running: {label}")
            rows.append((label, *time_pipeline(paths, folder / "dataset", args.whisper_model, **options), 10))
        cores = available_cores()
        print(f"\nload average now {os.getloadavg()[0]:.1f}: other processes on these cores slow the wall-clock figures;")
        print(f"the last column is what the CPU time allows on {cores} otherwise idle cores (audio / (CPU s / cores)).")
        print(f"{'stage':56s} {'wall s':>7s} {'x real time':>12s}  {'goal':18s} {'CPU s':>7s} {'x if idle':>9s}")
        for label, wall, cpu_used, goal in rows:
            ratio = seconds / wall
            verdict = "" if goal is None else f">= {goal}x {'met' if ratio >= goal else 'NOT met'}"
            idle = f"{seconds / (cpu_used / cores):8.1f}x" if cpu_used else ""
            print(f"{label:56s} {wall:7.2f} {ratio:11.1f}x  {verdict:18s} {cpu_used or 0:7.1f} {idle:>9s}")


if __name__ == "__main__":
    main()
