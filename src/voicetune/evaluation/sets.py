"""Scoring voices a model makes: a fixed evaluation set, synthesized and scored, against the
real voice's own scores (the ceiling).

    EvalSet         what is said (validation sentences + extra texts), in the voice of which
                    fixed reference clip, compared with which held-out real clips, with what
                    seeds (every sentence is said once per seed)
    RealVoice       the real clips scored once: the speaker embedding and the ceiling
    evaluate_model  synthesize the set with a model (through its adapter) and score it: the mean
                    over seeds and its spread
    evaluate_weights  the same for several weight sets of one model (EMA and raw), sharing the work
    plot_eval       eval.png: every measure over steps, the spread as a band, the real voice and
                    the best marked
(`voicetune eval` over runs, checkpoints and upstream files is `evaluation.targets`.)

The same set gives the same numbers: synthesis is seeded per sentence and seed, and every scorer
is deterministic. Synthesis goes through the adapter protocol (`ModelAdapter.synthesize`); nothing
here knows a model.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voicetune.checkpoints.policy import PAIR_SET, pairs_key
from voicetune.scoring import Summary, composite_score, summarize
from voicetune.scoring.composite import MEASURES

log = logging.getLogger("voicetune.eval")

DEFAULT_EVAL_CLIPS = 4  # held-out sentences per evaluation (bench/eval_cost.py keeps its cost <= 0.15)
DEFAULT_EVAL_SEEDS = 2  # each sentence said with this many seeds: the score is their mean, with its spread
SEED_STRIDE = 1000  # sentence i with seed k is seeded seed + i + SEED_STRIDE * k (k = 0: the one-seed numbers)
MAX_REFERENCE_SECONDS = 12.0
MIN_REFERENCE_SECONDS = 2.0
EVAL_SEED = 777
# Torch threads the evaluation set is synthesized on. A CPU result depends on the thread count
# (how sums are split between threads), and whisper can hear two such renderings differently: a
# fixed count makes a checkpoint's scores the same in every process and on every machine's core
# count. One thread: f5-tiny's evaluation sentence took 0.8 s on one thread, 8 s on two while other
# work shared the 2 cores (OpenMP threads wait for each other); on a GPU the count hardly matters.
SYNTHESIS_THREADS = 1
MEASURE_KEYS = (*MEASURES, "score")
Draws = Literal["as needed", "all"]  # which (weight set, seed) draws `evaluate_weights` says


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
    seeds: int = DEFAULT_EVAL_SEEDS  # each text is said once per seed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalSet:
        # A set stored before seeds existed was said once: its run keeps scoring it that way.
        return cls(**{"seeds": 1, **{k: data[k] for k in cls.__dataclass_fields__ if k in data}})

    def seed_of(self, text_index: int, seed_index: int) -> int:
        return self.seed + text_index + SEED_STRIDE * seed_index

    def fingerprint(self) -> str:
        """What pairs of two scorings are said alike: the same texts, voice prompt, language and
        seeds give the same fingerprint (a result's `pair_set`)."""
        import hashlib
        import json

        said = [self.texts, self.ref_audio, self.ref_text, self.language, self.seed, self.seeds]
        return hashlib.sha256(json.dumps(said).encode()).hexdigest()[:12]


def choose_eval_set(
    data_dir: Path,
    extra_texts: list[str] | None = None,
    clips: int = DEFAULT_EVAL_CLIPS,
    language: str | None = "en",
    seed: int = EVAL_SEED,
    val_fraction: float = 0.1,
    seeds: int = DEFAULT_EVAL_SEEDS,
) -> EvalSet:
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
    return EvalSet(
        [i.text for i in held_out] + extra,
        [str(i.audio_path.resolve()) for i in held_out],
        [i.text for i in held_out],
        str(ref.audio_path.resolve()),
        ref.text,
        language,
        seed,
        seeds,
    )


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
            score.similarity = float(cosine(embeddings[index : index + 1], centroid(others))[0])
    return RealVoice(speaker, summarize(scores, digits=4))


@dataclass
class EvalResult:
    """The scores of one model on an evaluation set: means over the seeds, and the score's spread
    (the highest seed's score minus the lowest: how far apart two draws of the same model land);
    `pairs`, each sentence and seed's own score (seed by seed, sentences in the set's order), what
    two models said alike are compared by (`checkpoints.policy.compare`)."""

    summary: Summary
    score: float | None
    score_spread: float | None = None
    transcripts: list[str | None] = field(default_factory=list)  # of the first seed
    audio: list[np.ndarray] = field(default_factory=list)  # what the first seed said, at sample_rate
    sample_rate: int = 0
    clip_scores: list[dict[str, float | None]] = field(default_factory=list)  # each sentence's own measures
    flags: list[list[str]] = field(default_factory=list)  # per clip: what `scoring.checks` caught
    pairs: list[float | None] = field(default_factory=list)
    pair_set: str | None = None  # `EvalSet.fingerprint` of the set the pairs were said from

    def measures(self) -> dict[str, Any]:
        """{wer, cer, similarity, dnsmos, score, score_spread, score_pairs, pair_set}."""
        return {
            **{k: getattr(self.summary, k) for k in MEASURES},
            "score": self.score,
            "score_spread": self.score_spread,
            pairs_key("score"): self.pairs,
            PAIR_SET: self.pair_set,
        }


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reference_audio(adapter, eval_set: EvalSet) -> np.ndarray:
    """The set's voice prompt as float32 mono at the adapter's rate."""
    from voicetune.data.ingest import read_reference

    ref_audio, ref_rate = read_reference(Path(eval_set.ref_audio))
    if ref_rate != adapter.sample_rate:
        import soxr

        ref_audio = soxr.resample(ref_audio, ref_rate, adapter.sample_rate).astype(np.float32)
    return ref_audio


def synthesize_eval_set(
    adapter,
    model,
    eval_set: EvalSet,
    seed_index: int = 0,
    progress: Callable[[str], None] | None = None,
    ref_audio: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Every text of the set spoken by `model` in the reference's voice with seed `seed_index`;
    each sentence is seeded on its own (`EvalSet.seed_of`), so that it comes out the same whatever
    else is said, on SYNTHESIS_THREADS threads, so that it comes out the same whatever the process
    did before. `progress` hears "synthesizing, 2 of 4 sentences" before each one. `ref_audio`:
    the voice prompt when the caller has read it already (`reference_audio`)."""
    import torch

    from voicetune.scoring.measures import torch_threads

    if ref_audio is None:
        ref_audio = reference_audio(adapter, eval_set)

    out = []
    with torch.no_grad(), torch_threads(SYNTHESIS_THREADS):
        for index, text in enumerate(eval_set.texts):
            if progress:
                progress(f"synthesizing, {index + 1} of {len(eval_set.texts)} sentences")
            seed_everything(eval_set.seed_of(index, seed_index))
            audio = adapter.synthesize(model, text, ref_audio, eval_set.ref_text, language=eval_set.language)
            out.append(np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0))
    return out


def evaluate_model(
    adapter, model, eval_set: EvalSet, real: RealVoice, scorers, progress: Callable[[str], None] | None = None
) -> EvalResult:
    """Synthesize the set with `model` (weights as loaded) once per seed and score it."""
    return evaluate_weights(adapter, model, {"model": None}, eval_set, real, scorers, progress)["model"]


def evaluate_weights(
    adapter,
    model,
    weight_sets: dict[str, dict[str, Any] | None],
    eval_set: EvalSet,
    real: RealVoice,
    scorers,
    progress: Callable[[str], None] | None = None,
    draws: Draws = "as needed",
) -> dict[str, EvalResult]:
    """Score several weight sets of one model (EMA and raw): each set (checkpoint tensors, loaded
    into `model` with the adapter; None: the model as it is) says the evaluation set with every
    seed, and the clips are scored in batches (whisper, the speaker encoder and DNSMOS). A set
    equal to one before it (an EMA that still copies the weights) is said and scored once.

    `draws` "as needed": with two weight sets and several seeds, both first say the set with the
    first seed; when those pairs decide between them (`checkpoints.policy.choose_weights`), only
    the chosen set says it with the other seeds (the other set's result holds its first draw:
    its pairs of later seeds are None). The chosen set always has every seed, so that milestones
    pair alike. "all": every set with every seed. `progress` hears each take ("scoring 3 of 8
    takes (ema, seed 2)") and the measuring."""
    from voicetune.checkpoints.policy import choose_weights, compare

    seeds = max(1, eval_set.seeds)
    same_as: dict[str, str] = {}
    for index, (name, tensors) in enumerate(weight_sets.items()):
        earlier = [other for other in list(weight_sets)[:index] if other not in same_as]
        twin = next((other for other in earlier if _equal(weight_sets[other], tensors)), None)
        if twin is not None:
            same_as[name] = twin
    distinct = [name for name in weight_sets if name not in same_as]
    staged = draws == "as needed" and set(distinct) == {"ema", "raw"} and seeds > 1
    first = [(name, 0) for name in distinct] if staged else [(n, k) for n in distinct for k in range(seeds)]
    # The takes planned: every set with every seed, until the first draws show what is needed.
    work = _Takes(progress, len(distinct) * seeds * len(eval_set.texts), len(weight_sets) > 1)
    ref_audio = reference_audio(adapter, eval_set)  # read once for every set and seed
    pace = reference_pace(eval_set)  # of the voice prompt: once for every set
    heard: dict[tuple[str, int], tuple[list[np.ndarray], list[Any]]] = {}  # (clips at 16 kHz, scores)
    said: dict[tuple[str, int], list[np.ndarray]] = {}
    _say_and_score(adapter, model, weight_sets, eval_set, real, scorers, first, ref_audio, said, heard, work)
    if staged:
        partial = {n: _result(n, eval_set, real, said, heard, adapter, pace).measures() for n in distinct}
        chosen = choose_weights(partial)
        found = compare(partial["raw"], partial["ema"], "score", "max")
        decided = found.verdict != "tie" and found.stderr is not None  # paired evidence, not one take each
        rest = [(n, k) for n in distinct for k in range(1, seeds) if not decided or n == chosen]
        work.planned = work.done + len(rest) * len(eval_set.texts)
        _say_and_score(adapter, model, weight_sets, eval_set, real, scorers, rest, ref_audio, said, heard, work)
    return {name: _result(same_as.get(name, name), eval_set, real, said, heard, adapter, pace) for name in weight_sets}


class _Takes:
    """Progress by takes (one sentence said by one weight set with one seed)."""

    def __init__(self, progress: Callable[[str], None] | None, planned: int, named: bool):
        self.progress, self.planned, self.named, self.done = progress, planned, named, 0

    def told(self, name: str, seed_index: int) -> Callable[[str], None]:
        """What `synthesize_eval_set` calls before each sentence: one more take of this draw."""

        def take(_: str) -> None:
            self.done += 1
            if self.progress:
                label = f"{name}, seed {seed_index + 1}" if self.named else f"seed {seed_index + 1}"
                self.progress(f"scoring {self.done} of {self.planned} takes ({label})")

        return take

    def measuring(self, clips: int) -> None:
        if self.progress:
            self.progress(f"measuring {clips} takes (WER, similarity, DNSMOS)")


def _say_and_score(
    adapter, model, weight_sets, eval_set: EvalSet, real: RealVoice, scorers, draws, ref_audio, said, heard, work
) -> None:
    """Say `draws` ((set, seed index) pairs), then score all their clips in one pass."""
    from voicetune.scoring import to_scoring_rate

    if not draws:
        return
    loaded = None
    for name, seed_index in draws:
        tensors = weight_sets[name]
        if tensors is not None and loaded != name:
            adapter.load_checkpoint_weights(model, tensors)
            loaded = name
        said[name, seed_index] = synthesize_eval_set(
            adapter, model, eval_set, seed_index, work.told(name, seed_index), ref_audio
        )
    clips = [to_scoring_rate(a, adapter.sample_rate) for key in draws for a in said[key]]
    work.measuring(len(clips))
    scores = scorers.score(clips, list(eval_set.texts) * len(draws), eval_set.language, speaker=real.speaker)
    n = len(eval_set.texts)
    for i, key in enumerate(draws):
        heard[key] = (clips[i * n : (i + 1) * n], scores[i * n : (i + 1) * n])


def _result(name: str, eval_set: EvalSet, real: RealVoice, said, heard, adapter, pace) -> EvalResult:
    """The result of weight set `name` from the draws it said: the means over them, the spread
    when it said every seed; the pairs of seeds it did not say are None."""
    seeds, n = max(1, eval_set.seeds), len(eval_set.texts)
    draws = [summarize(heard[name, k][1], digits=6) for k in range(seeds) if (name, k) in heard]
    values = [composite_score(d, real.ceiling) for d in draws]
    pairs = [
        composite_score(summarize([score]), real.ceiling) if score is not None else None
        for k in range(seeds)
        for score in (heard[name, k][1] if (name, k) in heard else [None] * n)
    ]
    clips, first = heard[name, 0]
    return EvalResult(
        mean_summary(draws),
        _mean_or_none(values, 6),
        _spread_or_none(values) if len(values) == seeds else None,
        [s.transcript for s in first],
        said[name, 0],
        adapter.sample_rate,
        [{k: getattr(s, k) for k in MEASURES} for s in first],
        clip_flags(clips, first, eval_set, pace),
        pairs,
        eval_set.fingerprint(),
    )


def _equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    import torch

    if a is None or b is None:
        return False
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def scored_row(measures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The scores of a checkpoint from the measures of each of its weight sets ({"ema": ...,
    "raw": ...}): the chosen set's measures (`checkpoints.policy.choose_weights`) at the top,
    `weights` naming it, and every set's under `scores`. Non-finite numbers become None (a
    manifest is strict JSON)."""
    from voicetune.checkpoints.policy import choose_weights

    scores = {name: {k: _finite_or_none(v) for k, v in m.items()} for name, m in measures.items()}
    chosen = choose_weights(scores)
    return {**scores[chosen], "weights": chosen, "scores": scores}


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def mean_summary(draws: list[Summary]) -> Summary:
    """The measures of several draws of the same clips, each the mean over the draws (4 digits)."""
    return Summary(
        **{k: _mean_or_none([getattr(d, k) for d in draws], 4) for k in MEASURES}, clips=sum(d.clips for d in draws)
    )


def _mean_or_none(values: list[float | None], digits: int) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), digits) if present else None


def _spread_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(max(present) - min(present), 6) if present else None


def reference_pace(eval_set: EvalSet) -> float | None:
    """The speaking rate of the set's voice prompt (what `clip_flags` judges durations by)."""
    from voicetune.data.ljspeech import load_audio
    from voicetune.scoring import SCORING_RATE
    from voicetune.scoring.checks import speaking_rate

    return speaking_rate(load_audio(Path(eval_set.ref_audio), SCORING_RATE), eval_set.ref_text)


def clip_flags(clips: list[np.ndarray], scores, eval_set: EvalSet, rate: float | None) -> list[list[str]]:
    """The take check of each clip (`scoring.checks`: wrong words, too long or short for the
    reference's pace `rate`, sound after the last word, a cut last word); [] where whisper did not run."""
    from voicetune.scoring.checks import check_take

    return [
        check_take(clip, text, score.heard, eval_set.language, rate).flags if score.heard is not None else []
        for clip, text, score in zip(clips, eval_set.texts, scores)
    ]


# ---- the picture ------------------------------------------------------------------------------


def plot_eval(
    rows: list[dict[str, Any]], ceiling: Summary | None, path: Path, best_step: int | None = None, title: str = ""
) -> Path:
    """eval.png: each measure over steps (WER and CER, similarity, DNSMOS, score), the real voice's
    value as a dashed line, the best step marked; the score's spread over seeds as a band around it,
    and each weight set's score (EMA, raw) as faint marks."""
    import io

    from voicetune.data.files import atomic_write_bytes
    from voicetune.plotting import pyplot

    figure = eval_figure(rows, ceiling, best_step, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    pyplot().close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def eval_figure(rows: list[dict[str, Any]], ceiling: Summary | None, best_step: int | None = None, title: str = ""):
    """The matplotlib figure of `plot_eval` (the caller closes it)."""
    from voicetune.plotting import pyplot

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    rows = sorted(rows, key=lambda r: r["step"])
    steps = [r["step"] for r in rows]
    panels = [
        ("WER / CER (lower is better)", ("wer", "cer")),
        ("speaker similarity", ("similarity",)),
        ("DNSMOS (1-5)", ("dnsmos",)),
        ("score (1.0 = the real voice)", ("score",)),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=100, sharex=True)
    for axis, (label, keys) in zip(axes.flat, panels):
        for key, style in zip(keys, ("-o", "--s")):
            values = [r.get(key) for r in rows]
            points = [(s, v) for s, v in zip(steps, values) if v is not None]
            if points:
                axis.plot(*zip(*points), style, markersize=4, label=key)
            real = 1.0 if key == "score" else (getattr(ceiling, key, None) if ceiling else None)
            if real is not None:
                axis.axhline(
                    real, color="#55a868", linestyle=":", linewidth=1.5, label="real voice" if key == keys[0] else None
                )
        if keys == ("score",):
            _plot_spread_and_weights(axis, rows)
        if best_step is not None and best_step in steps:
            axis.axvline(best_step, color="#c44e52", linewidth=1, alpha=0.6)
            best = next(r for r in rows if r["step"] == best_step)
            if best.get(keys[0]) is not None:
                axis.plot([best_step], [best[keys[0]]], "*", color="#c44e52", markersize=14, label="best")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:  # a measure never taken: no legend (and no warning)
            axis.legend(fontsize=8, loc="best")
    # Steps are whole: a few milestones are their own ticks (MaxNLocator falls back to fractions
    # when the view holds fewer than two integers, as around a single milestone).
    if 0 < len(steps) <= 8:
        axes.flat[0].set_xticks(steps)
        if len(steps) == 1:
            axes.flat[0].set_xlim(steps[0] - 1, steps[0] + 1)
    else:
        axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in axes[1]:
        axis.set_xlabel("step")
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def _plot_spread_and_weights(axis, rows: list[dict[str, Any]]) -> None:
    """The score's band (as wide as its spread over seeds, centred on the score: with two seeds,
    from the one to the other) and the score of each weight set, the chosen one being the line."""
    banded = [
        (r["step"], r["score"], r["score_spread"])
        for r in rows
        if r.get("score") is not None and r.get("score_spread") is not None
    ]
    if banded:
        steps, scores, spreads = zip(*banded)
        axis.fill_between(
            steps,
            [s - d / 2 for s, d in zip(scores, spreads)],
            [s + d / 2 for s, d in zip(scores, spreads)],
            color="#4c72b0",
            alpha=0.2,
            linewidth=0,
            label="spread over seeds",
        )
    for name, marker in (("ema", "^"), ("raw", "v")):
        points = [
            (r["step"], r["scores"][name]["score"])
            for r in rows
            if isinstance(r.get("scores"), dict) and (r["scores"].get(name) or {}).get("score") is not None
        ]
        if points:
            axis.plot(
                *zip(*points),
                marker,
                color="#8172b3" if name == "raw" else "#937860",
                alpha=0.6,
                markersize=5,
                linestyle="none",
                label=f"{name} weights",
            )
