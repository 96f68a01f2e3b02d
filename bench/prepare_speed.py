"""How fast and how accurate `voicetune prepare` is on recorded human speech, beside one plain
long-form Whisper pass over each whole recording, in one run.

    python bench/prepare_speed.py [--whisper-model PATH] [--variants]

Builds the real-speech recordings of the data tests (Asterisk's Spanish, French and Italian
telephone prompts with their index texts, pauses of varied length, hold music between some; mp3,
8 kHz wav, 48 kHz flac, opus: tests/data/real_speech.py), then times on this machine:

  segmentation      silero-vad and clip planning on the decoded 16 kHz audio
  whole-file pass   faster-whisper's own long-form transcribe over each decoded recording, as a
                    user would run it: the same whisper-base int8, faster-whisper's defaults
                    (beam 5, previous-text conditioning), word timestamps, every core
  whole pipeline    `prepare` with default settings: decode, loudness, VAD plan, transcription,
                    clip files, report and check (model loading included; beam 3) goal >= 20x

and scores both transcripts against the index texts of the prompts that prepare's clips hold
(the whole-file pass's words are taken where those clips lie, so both are judged on the same
speech). The ratio prepare / whole-file is the figure to watch (goal <= 1.10): speed figures move
with whatever else runs on these cores, the ratio of two WERs does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests" / "data"), str(REPO_ROOT / "tests")]

from real_speech import build_real_corpus, words_for_wer  # noqa: E402
from speech_corpus import word_edits  # noqa: E402

from voicetune.data.ingest import load_source  # noqa: E402
from voicetune.data.prepare import PrepareOptions, available_cores, prepare_dataset  # noqa: E402
from voicetune.data.segment import ClipLimits, SpeechDetector, segment_speech  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def whole_file_pass(corpus: dict, model_path: str) -> tuple[dict, float, float]:
    """Each recording through faster-whisper's long-form transcribe: {name: words}, wall, CPU s."""
    from faster_whisper import WhisperModel

    from voicetune.data.transcribe import whisper_device

    device, compute_type = whisper_device()
    model = WhisperModel(model_path, device=device, compute_type=compute_type, cpu_threads=available_cores())
    audio = {name: load_source(recording.path, 16000, -23.0).analysis for name, recording in corpus.items()}
    words, wall, cpu = {}, 0.0, 0.0
    for name, samples in audio.items():
        started, used = time.perf_counter(), cpu_seconds()
        segments, _ = model.transcribe(samples, beam_size=5, word_timestamps=True, condition_on_previous_text=True)
        words[name] = [word for segment in segments for word in segment.words]
        wall += time.perf_counter() - started
        cpu += cpu_seconds() - used
    return words, wall, cpu


def time_segmentation(corpus: dict) -> float:
    detector, limits, seconds = SpeechDetector(), ClipLimits(), 0.0
    for recording in corpus.values():
        audio = load_source(recording.path, 24000, -23.0)
        started = time.perf_counter()
        segment_speech(audio.analysis, detector, limits)
        seconds += time.perf_counter() - started
    return seconds


def time_pipeline(folder: Path, out: Path, model: str, **options) -> tuple[float, float, list[dict]]:
    """(wall seconds, CPU seconds, manifest) of one prepare run from scratch."""
    shutil.rmtree(out, ignore_errors=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = prepare_dataset([folder], out, PrepareOptions(whisper_model=model, **options), show_progress=False)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(
        f"    ({result.clips} clips, {result.report['totals']['hours_kept'] * 60:.1f} min kept, {result.workers} worker(s))"
    )
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return elapsed, cpu, manifest


def score(corpus: dict, manifest: list[dict], whole_words: dict) -> dict[str, tuple[int, int, int]]:
    """{language: (reference words, prepare's edits, the whole-file pass's edits)} over the
    speech prepare kept."""
    totals: dict[str, list[int]] = {}
    for name, recording in corpus.items():
        clips = sorted(
            (c for c in manifest if Path(c["source"]).resolve() == recording.path.resolve()), key=lambda c: c["start"]
        )
        said = " ".join(recording.recording.text_between(c["start"], c["end"]) for c in clips)
        reference = words_for_wer(said, recording.language)
        ours = words_for_wer(" ".join(c["text"] for c in clips), recording.language)
        theirs = words_for_wer(
            "".join(
                w.word for w in whole_words[name] if any(c["start"] <= (w.start + w.end) / 2 < c["end"] for c in clips)
            ),
            recording.language,
        )
        row = totals.setdefault(recording.language, [0, 0, 0])
        row[0] += len(reference)
        row[1] += word_edits(reference, ours)
        row[2] += word_edits(reference, theirs)
    return {language: tuple(row) for language, row in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = os.environ.get("VOICETUNE_WHISPER_MODEL") or str(
        REPO_ROOT.parent / "shared" / "models" / "whisper-base-ct2"
    )
    parser.add_argument("--whisper-model", default=default_model)
    parser.add_argument("--variants", action="store_true", help="also time --beam-size 5 and --workers 1")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prepare-bench-") as tmp:
        folder = Path(tmp) / "recordings"
        corpus = build_real_corpus(folder)
        seconds = sum(recording.recording.duration for recording in corpus.values())
        cores = available_cores()
        print(
            f"{seconds / 60:.1f} min of recorded speech (es, fr, it) in {len(corpus)} files; {cores} CPU cores; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        rows = [("segmentation (silero-vad + clip planning)", time_segmentation(corpus), None)]
        print("  running: whole-file whisper pass")
        whole_words, wall, cpu = whole_file_pass(corpus, args.whisper_model)
        rows.append(("whole-file whisper pass alone (beam 5, conditioned)", wall, cpu))
        whole_wall, whole_cpu = wall, cpu
        print("  running: whole pipeline, defaults")
        wall, cpu, manifest = time_pipeline(folder, Path(tmp) / "dataset", args.whisper_model)
        rows.append(("whole pipeline, whisper-base int8, defaults", wall, cpu))
        pipeline_ratio = seconds / wall
        speedup = f"prepare's speed / the whole-file pass's, same run: {whole_wall / wall:.2f} (wall), {whole_cpu / cpu:.2f} (CPU)"
        if args.variants:
            for label, options in [
                ("whole pipeline, --beam-size 5", {"beam_size": 5}),
                ("whole pipeline, --workers 1", {"workers": 1}),
            ]:
                print(f"  running: {label}")
                rows.append((label, *time_pipeline(folder, Path(tmp) / "dataset", args.whisper_model, **options)[:2]))
        print(
            f"\nload average now {os.getloadavg()[0]:.1f}: other processes on these cores slow the wall-clock figures;"
        )
        print(f"the last column is what the CPU time allows on {cores} otherwise idle cores (audio / (CPU s / cores)).")
        print(f"{'stage':56s} {'wall s':>7s} {'x real time':>12s} {'CPU s':>7s} {'x if idle':>9s}")
        for label, wall, cpu_used in rows:
            idle = f"{seconds / (cpu_used / cores):8.1f}x" if cpu_used else ""
            print(f"{label:56s} {wall:7.2f} {seconds / wall:11.1f}x {cpu_used or 0:7.1f} {idle:>9s}")
        scores = score(corpus, manifest, whole_words)
        print("\nword error rate against the index texts, over the speech prepare kept:")
        for language, (words, ours, theirs) in scores.items():
            print(f"  {language}: prepare {ours / words:.3f}, whole-file {theirs / words:.3f} ({words} words)")
        words, ours, theirs = (sum(row[i] for row in scores.values()) for i in range(3))
        print(f"  all: prepare {ours / words:.3f}, whole-file {theirs / words:.3f}")
        print(speedup)
        print(f"whole pipeline: {pipeline_ratio:.1f}x real time")
        print(f"WER prepare / whole-file: {ours / max(theirs, 1):.2f}")


if __name__ == "__main__":
    main()
