"""Scoring voices a model makes: a fixed evaluation set, synthesized and scored, against the
real voice's own scores (the ceiling).

    EvalSet         what is said (validation sentences + extra texts), in the voice of which
                    fixed reference clip, compared with which held-out real clips, with what seed
    RealVoice       the real clips scored once: the speaker embedding and the ceiling
    evaluate_model  synthesize the set with a model (through its adapter) and score it
    evaluate_targets  `voicetune eval`: runs (every kept checkpoint), checkpoints, upstream files

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

    from voicetune.inference import read_reference

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
                      adapter.sample_rate)


# ---- voicetune eval -------------------------------------------------------------------------


@dataclass
class Target:
    """One model to score: a checkpoint directory, or an upstream weight file (step 0)."""

    label: str
    step: int
    path: Path
    upstream: bool = False


@dataclass
class EvalRow:
    checkpoint: str
    step: int
    measures: dict[str, float | None]
    transcripts: list[str | None] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "step": self.step, **self.measures}


@dataclass
class EvalReport:
    rows: list[EvalRow]
    ceiling: Summary
    eval_set: EvalSet


def resolve_targets(paths: list[Path]) -> list[Target]:
    """Runs (every valid checkpoint, by step), checkpoint directories and upstream weight files."""
    from voicetune.checkpoints.store import CheckpointStore, read_checkpoint_dir

    targets: list[Target] = []
    for path in map(Path, paths):
        if (path / "manifest.json").is_file():
            ckpt = read_checkpoint_dir(path)
            if ckpt.problem:
                raise UsageError(f"{path}: {ckpt.problem}; see `voicetune ckpt verify {path}`")
            targets.append(Target(str(path), ckpt.step, path))
        elif (path / "checkpoints").is_dir():
            valid = sorted((c for c in CheckpointStore(path).scan() if c.problem is None), key=lambda c: c.step)
            if not valid:
                raise UsageError(f"{path}: a run folder without valid checkpoints; nothing to score")
            targets.extend(Target(str(c.path), c.step, c.path) for c in valid)
        elif path.is_file():
            targets.append(Target(str(path), 0, path, upstream=True))
        else:
            raise UsageError(f"{path}: not a run folder, a checkpoint directory or a weight file; give one of those")
    return sorted(targets, key=lambda t: (t.step, not t.upstream, t.label))


def _config_of(target: Target) -> dict[str, Any] | None:
    """The resolved training config a checkpoint was made with (its loop.json)."""
    if target.upstream:
        return None
    try:
        return json.loads((target.path / "loop.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError):
        return None


def _run_eval_set(target: Target) -> EvalSet | None:
    """The evaluation set a run stored in run.json at its start, if it has one."""
    if target.upstream:
        return None
    run_json = target.path.parent.parent / "run.json"
    try:
        stored = json.loads(run_json.read_text(encoding="utf-8")).get("eval_set")
    except (OSError, ValueError):
        return None
    return EvalSet.from_json(stored["set"]) if stored and stored.get("set") else None


def eval_set_for(targets: list[Target], data: Path | None, texts: list[str], clips: int, language: str | None,
                 ref: Path | None, ref_text: str | None) -> EvalSet:
    """--data's set, else the first run's stored set, else one chosen from the dataset a checkpoint
    was trained on; --text adds sentences, --ref replaces the voice prompt."""
    eval_set = None
    if data is None:
        eval_set = next((s for s in map(_run_eval_set, targets) if s is not None), None)
        if eval_set is None:
            data = next((Path(c["data"]) for c in map(_config_of, targets) if c and c.get("data")), None)
    if eval_set is None:
        if data is None or not Path(data).is_dir():
            raise UsageError("--data DATASET: needed to choose what to say and the real voice to compare with "
                             f"({'no dataset folder ' + str(data) if data else 'an upstream weight file names no dataset'})")
        config_language = next((c.get("language") for c in map(_config_of, targets) if c and c.get("language")), None)
        eval_set = choose_eval_set(Path(data), None, clips, language or config_language or "en")
    if texts:
        eval_set.texts = eval_set.texts + [t for t in texts if t.strip()]
    if language:
        eval_set.language = language
    if ref is not None:
        if not Path(ref).is_file():
            raise UsageError(f"--ref {ref}: no such file; give a wav of the voice (a few seconds)")
        if not ref_text:
            raise UsageError("--ref-text: give the transcript of --ref (F5-TTS needs it)")
        eval_set.ref_audio, eval_set.ref_text = str(Path(ref).resolve()), ref_text
    return eval_set


def load_target(target: Target, model_name: str | None, eval_set: EvalSet, data: Path | None):
    """(adapter, model) of a target, EMA weights loaded, on the GPU when there is one."""
    import torch

    device = "cuda" if torch.cuda.is_available() else None
    if not target.upstream:
        from voicetune.inference import load_trained_model

        trained = load_trained_model(target.path, device=device)
        return trained.adapter, trained.model
    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter

    dataset = data or Path(eval_set.real_clips[0]).parent.parent
    config = TrainConfig.resolve({"model": model_name, "pretrained": str(target.path), "data": dataset,
                                  "language": eval_set.language or "en"})
    adapter = create_adapter(config)
    model = adapter.build_model()
    model.eval()
    if device:
        model.to(device)
    return adapter, model


def evaluate_targets(paths: list[Path], whisper_model: str | None, texts: list[str] | None = None,
                     data: Path | None = None, model_name: str | None = None, clips: int = DEFAULT_EVAL_CLIPS,
                     language: str | None = None, ref: Path | None = None, ref_text: str | None = None,
                     progress: Callable[[int, int, str], None] | None = None, note: Callable[[str], None] | None = None,
                     ) -> EvalReport:
    """Score every target on one evaluation set, against the ceiling of its real clips."""
    from voicetune.scoring import get_scorers

    targets = resolve_targets(paths)
    # Said before any model is loaded: a weight file alone does not tell which architecture it is.
    unnamed = next((t for t in targets if t.upstream and not model_name), None)
    if unnamed is not None:
        raise UsageError(f"--model: name the architecture of {unnamed.path} (e.g. f5-v1-base, xtts-v2)")
    eval_set = eval_set_for(targets, data, list(texts or []), clips, language, ref, ref_text)
    scorers = get_scorers(whisper_model, note)
    real = score_real_voice(eval_set, scorers)
    rows = []
    for index, target in enumerate(targets):
        if progress:
            progress(index, len(targets), target.label)
        adapter, model = load_target(target, model_name, eval_set, data)
        result = evaluate_model(adapter, model, eval_set, real, scorers)
        rows.append(EvalRow(target.label, target.step, result.measures(), result.transcripts))
        del model
    if progress:
        progress(len(targets), len(targets), "")
    return EvalReport(rows, real.ceiling, eval_set)


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
