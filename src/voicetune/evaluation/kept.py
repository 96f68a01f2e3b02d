"""What each milestone's evaluation said, kept in the run folder for people to listen to.

    RUN/eval/step_00001200/
      sentence_00.ogg ...   the evaluation sentences as the scored weights spoke them (Ogg Opus,
                            a few kB per second: a milestone's set is tens of kB, not megabytes)
      sentences.json        per sentence: the text, what Whisper heard, its own WER, CER,
                            similarity and DNSMOS, and the real clip of the speaker saying it

The studio's A/B view plays two milestones' sentences one under the other, beside the real voice.
Written once per milestone, atomically (a folder replaced whole); a milestone scored again (after a
resume) replaces its folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EVAL_AUDIO_DIR = "eval"
SENTENCES_JSON = "sentences.json"
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates Opus encodes


def kept_dir(run: Path, step: int) -> Path:
    return Path(run) / EVAL_AUDIO_DIR / f"step_{step:08d}"


def keep_eval_audio(run: Path, step: int, result, eval_set, weights: str = "ema") -> Path:
    """Write the sentences of `result` (an `EvalResult` of `eval_set`) into RUN/eval/step_N/."""
    import soundfile as sf
    import soxr

    from voicetune import fsio

    rate = result.sample_rate if result.sample_rate in OPUS_RATES else 24000
    sentences = []
    with fsio.atomic_dir(kept_dir(run, step)) as folder:
        for index, (text, audio) in enumerate(zip(eval_set.texts, result.audio)):
            audio = np.asarray(audio, np.float32)
            if rate != result.sample_rate:
                audio = soxr.resample(audio, result.sample_rate, rate).astype(np.float32)
            name = f"sentence_{index:02d}.ogg"
            sf.write(folder / name, np.clip(audio, -1.0, 1.0), rate, format="OGG", subtype="OPUS")
            scores = result.clip_scores[index] if index < len(result.clip_scores) else {}
            heard = result.transcripts[index] if index < len(result.transcripts) else None
            real = eval_set.real_clips[index] if index < len(eval_set.real_clips) else None
            sentences.append(
                {
                    "text": text,
                    "file": name,
                    "heard": heard,
                    **scores,
                    "real_clip": real,
                    "seconds": round(len(audio) / rate, 2),
                }
            )
        fsio.atomic_write_json(
            folder / SENTENCES_JSON,
            {"step": step, "weights": weights, "measures": result.measures(), "sentences": sentences},
        )
    return kept_dir(run, step)


@dataclass(frozen=True)
class KeptSentence:
    text: str
    audio: Path
    heard: str | None
    measures: dict[str, float | None]
    real_clip: Path | None


@dataclass(frozen=True)
class KeptEvaluation:
    step: int
    weights: str
    measures: dict[str, float | None]
    sentences: list[KeptSentence]


def read_kept(run: Path, step: int) -> KeptEvaluation | None:
    """The kept evaluation of milestone `step`, or None when it has none (not scored, or scored
    before evaluations were kept)."""
    folder = kept_dir(run, step)
    try:
        data: dict[str, Any] = json.loads((folder / SENTENCES_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sentences = [
        KeptSentence(
            s["text"],
            folder / s["file"],
            s.get("heard"),
            {k: s.get(k) for k in ("wer", "cer", "similarity", "dnsmos")},
            Path(s["real_clip"]) if s.get("real_clip") else None,
        )
        for s in data.get("sentences", [])
    ]
    return KeptEvaluation(
        int(data.get("step", step)), data.get("weights") or "ema", data.get("measures", {}), sentences
    )


def kept_steps(run: Path) -> list[int]:
    """Milestones with a kept evaluation, by step."""
    folder = Path(run) / EVAL_AUDIO_DIR
    found = [int(p.name[5:]) for p in folder.glob("step_*") if p.name[5:].isdigit() and (p / SENTENCES_JSON).is_file()]
    return sorted(found)
