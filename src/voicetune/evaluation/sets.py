"""Scoring voices a model makes: a fixed evaluation set, synthesized and scored, against the
real voice's own scores (the ceiling).

    EvalSet         what is said (validation sentences + extra texts), in the voice of which
                    fixed reference clip, compared with which held-out real clips, with what seed
    RealVoice       the real clips scored once: the speaker embedding and the ceiling
    evaluate_model  synthesize the set with a model (through its adapter) and score it
    plot_eval       eval.png: every measure over steps, the real voice and the best marked
(`voicetune eval` over runs, checkpoints and upstream files is `evaluation.targets`.)

The same set gives the same numbers: synthesis is seeded per sentence, and every scorer is
deterministic. Synthesis goes through the adapter protocol (`ModelAdapter.synthesize`); nothing
here knows a model.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voicetune.errors import UsageError
from voicetune.scoring import Summary, composite_score, summarize
from voicetune.scoring.composite import MEASURES

log = logging.getLogger("voicetune.eval")

DEFAULT_EVAL_CLIPS = 4  # held-out sentences per evaluation (bench/eval_cost.py keeps its cost <= 0.15)
MAX_REFERENCE_SECONDS = 12.0
MIN_REFERENCE_SECONDS = 2.0
EVAL_SEED = 777
MEASURE_KEYS = (*MEASURES, "score")


@dataclass
class EvalSet:
    """A fixed evaluation set: chosen once (at the start of a run) and stored in run.json."""

    texts: list[str]  # what the model says: held-out sentences first, then extra texts
    real_clips: list[str]  # held-out real recordings of the speaker (paths): similarity target, ceiling
    real_texts: list[str]
    ref_audio: str  # the fixed voice prompt (a real clip that is not among real_clips)
    ref_text: str
    language: str | None = "en"
    seed: int = EVAL_SEED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "EvalSet":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def choose_eval_set(data_dir: Path, extra_texts: list[str] | None = None, clips: int = DEFAULT_EVAL_CLIPS,
                    language: str | None = "en", seed: int = EVAL_SEED, val_fraction: float = 0.1) -> EvalSet:
    """Held-out clips of a dataset (its validation split, never trained on) and a reference clip.

    The reference (the voice prompt) is the first training clip, by id, of 2 to 12 seconds, so that
    no sentence is spoken from its own recording. Without a validation split the held-out clips
    are training clips other than the reference (said in a log line: they were trained on)."""
    import soundfile as sf

    from voicetune.data.ljspeech import read_ljspeech

    data_dir = Path(data_dir)
    train, val = read_ljspeech(data_dir, val_fraction)

    def seconds(item) -> float:
        try:
            return sf.info(str(item.audio_path)).duration
        except RuntimeError:
            return 0.0

    pool = sorted(train, key=lambda i: i.item_id) or sorted(val, key=lambda i: i.item_id)
    ref = next((i for i in pool if MIN_REFERENCE_SECONDS <= seconds(i) <= MAX_REFERENCE_SECONDS), None) or pool[0]
    held_out = sorted(val, key=lambda i: i.item_id)
    if not held_out:
        log.warning("%s has no validation clips: the evaluation set uses training clips", data_dir)
        held_out = [i for i in pool if i is not ref]
    held_out = [i for i in held_out if i is not ref][:clips] or [ref]
    extra = [t.strip() for t in (extra_texts or []) if t and t.strip()]
    return EvalSet([i.text for i in held_out] + extra, [str(i.audio_path.resolve()) for i in held_out],
                   [i.text for i in held_out], str(ref.audio_path.resolve()), ref.text, language, seed)


@dataclass
class RealVoice:
    """The real clips of an evaluation set, scored once: what synthesized clips are compared with."""

    speaker: np.ndarray | None  # normed centroid of the real clips' speaker embeddings
    ceiling: Summary  # the real clips' own scores


def score_real_voice(eval_set: EvalSet, scorers) -> RealVoice:
    """Embed and score the held-out real clips. The speaker is the centroid of their embeddings
    and the reference clip's; the real clips' similarity is leave-one-out (each against the
    centroid of all the others), what a new recording of the speaker would score."""
    from voicetune.data.ljspeech import load_audio
    from voicetune.scoring import SCORING_RATE, centroid, cosine

    clips = [load_audio(Path(p), SCORING_RATE) for p in eval_set.real_clips]
    scores = scorers.score(clips, eval_set.real_texts, eval_set.language)
    embeddings = scorers.embed([*clips, load_audio(Path(eval_set.ref_audio), SCORING_RATE)])
    speaker = None
    if embeddings is not None:
        speaker = centroid(embeddings)
        for index, score in enumerate(scores):
            others = np.delete(embeddings, index, axis=0)
            score.similarity = float(cosine(embeddings[index:index + 1], centroid(others))[0])
    return RealVoice(speaker, summarize(scores, digits=4))


@dataclass
class EvalResult:
    """The scores of one model on an evaluation set."""

    summary: Summary
    score: float | None
    transcripts: list[str | None] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)  # what was synthesized, at sample_rate
    sample_rate: int = 0
    flags: list[list[str]] = field(default_factory=list)  # per clip: what `scoring.checks` caught

    def measures(self) -> dict[str, float | None]:
        """{wer, cer, similarity, dnsmos, score}."""
        return {**{k: getattr(self.summary, k) for k in MEASURES}, "score": self.score}


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synthesize_eval_set(adapter, model, eval_set: EvalSet) -> list[np.ndarray]:
    """Every text of the set spoken by `model` in the reference's voice; sentence i is seeded with
    seed + i, so that it comes out the same whatever else is said."""
    import torch

    from voicetune.data.ingest import read_reference

    ref_audio, ref_rate = read_reference(Path(eval_set.ref_audio))
    if ref_rate != adapter.sample_rate:
        import soxr

        ref_audio = soxr.resample(ref_audio, ref_rate, adapter.sample_rate).astype(np.float32)
    out = []
    with torch.no_grad():
        for index, text in enumerate(eval_set.texts):
            seed_everything(eval_set.seed + index)
            audio = adapter.synthesize(model, text, ref_audio, eval_set.ref_text, language=eval_set.language)
            out.append(np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0))
    return out


def evaluate_model(adapter, model, eval_set: EvalSet, real: RealVoice, scorers) -> EvalResult:
    """Synthesize the set with `model` (weights as loaded: the EMA weights) and score it."""
    from voicetune.scoring import to_scoring_rate

    audio = synthesize_eval_set(adapter, model, eval_set)
    clips = [to_scoring_rate(a, adapter.sample_rate) for a in audio]
    scores = scorers.score(clips, eval_set.texts, eval_set.language, speaker=real.speaker)
    summary = summarize(scores, digits=4)
    return EvalResult(summary, composite_score(summary, real.ceiling), [s.transcript for s in scores], audio,
                      adapter.sample_rate, clip_flags(clips, scores, eval_set))


def clip_flags(clips: list[np.ndarray], scores, eval_set: EvalSet) -> list[list[str]]:
    """The take check of each clip (`scoring.checks`: wrong words, too long or short for the
    reference's pace, sound after the last word, a cut last word); [] where whisper did not run."""
    from voicetune.data.ljspeech import load_audio
    from voicetune.scoring import SCORING_RATE
    from voicetune.scoring.checks import check_take, speaking_rate

    rate = speaking_rate(load_audio(Path(eval_set.ref_audio), SCORING_RATE), eval_set.ref_text)
    return [check_take(clip, text, score.heard, eval_set.language, rate).flags if score.heard is not None else []
            for clip, text, score in zip(clips, eval_set.texts, scores)]


# ---- the picture ------------------------------------------------------------------------------


def plot_eval(rows: list[dict[str, Any]], ceiling: Summary | None, path: Path, best_step: int | None = None,
              title: str = "") -> Path:
    """eval.png: each measure over steps (WER and CER, similarity, DNSMOS, score), the real voice's
    value as a dashed line, the best step marked."""
    import io

    from voicetune.plotting import pyplot

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    from voicetune.data.files import atomic_write_bytes

    rows = sorted(rows, key=lambda r: r["step"])
    steps = [r["step"] for r in rows]
    panels = [("WER / CER (lower is better)", ("wer", "cer")), ("speaker similarity", ("similarity",)),
              ("DNSMOS (1-5)", ("dnsmos",)), ("score (1.0 = the real voice)", ("score",))]
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=100, sharex=True)
    for axis, (label, keys) in zip(axes.flat, panels):
        for key, style in zip(keys, ("-o", "--s")):
            values = [r.get(key) for r in rows]
            points = [(s, v) for s, v in zip(steps, values) if v is not None]
            if points:
                axis.plot(*zip(*points), style, markersize=4, label=key)
            real = 1.0 if key == "score" else (getattr(ceiling, key, None) if ceiling else None)
            if real is not None:
                axis.axhline(real, color="#55a868", linestyle=":", linewidth=1.5,
                             label="real voice" if key == keys[0] else None)
        if best_step is not None and best_step in steps:
            axis.axvline(best_step, color="#c44e52", linewidth=1, alpha=0.6)
            best = next(r for r in rows if r["step"] == best_step)
            if best.get(keys[0]) is not None:
                axis.plot([best_step], [best[keys[0]]], "*", color="#c44e52", markersize=14, label="best")
        axis.set_title(label, fontsize=10)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    for axis in axes[1]:
        axis.set_xlabel("step")
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
