"""`voicetune eval`: the scores of checkpoints, runs and upstream weight files on one evaluation set.

Targets are resolved (a run's every valid checkpoint, a checkpoint, an upstream file), loaded one at
a time (a trained checkpoint through `synthesis.inference`, an upstream file through its adapter),
synthesized and scored by `evaluation.sets.evaluate_weights`: a trained checkpoint with both its
weight sets (EMA and raw), its score being the chosen set's as at a training milestone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicetune.console import say_once
from voicetune.data.language import FALLBACK_LANGUAGE, dataset_language, stale_language_warning
from voicetune.errors import UsageError
from voicetune.evaluation.sets import (
    DEFAULT_EVAL_CLIPS,
    EvalSet,
    choose_eval_set,
    evaluate_weights,
    score_real_voice,
    scored_row,
)
from voicetune.models.registry import model_names
from voicetune.scoring import Summary


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
    texts: list[str] = field(default_factory=list)
    flags: list[list[str]] = field(default_factory=list)
    nfe: int | None = None  # the sampling steps the clips were said with (None: a model without steps)

    def to_json(self) -> dict[str, Any]:
        clips = [
            {"text": t, "transcript": heard, "flags": f}
            for t, heard, f in zip(self.texts, self.transcripts, self.flags)
        ]
        return {"checkpoint": self.checkpoint, "step": self.step, **self.measures, "clips": clips, "nfe": self.nfe}


@dataclass
class EvalReport:
    rows: list[EvalRow]
    ceiling: Summary
    eval_set: EvalSet

    def standing(self):
        """Where the rows stand by score, by the checkpoint manager's rule
        (`RetentionPolicy.standing`, paired over the set's sentences and seeds); upstream files
        (step 0) first. Its infos are named by the rows' indexes."""
        from voicetune.checkpoints.policy import CheckpointInfo, RetentionPolicy

        infos = [
            CheckpointInfo(str(i), row.step, "milestone", "full", 0, row.measures) for i, row in enumerate(self.rows)
        ]
        return RetentionPolicy(best_metric="score", best_mode="max").standing(infos)

    def best(self) -> EvalRow | None:
        best = self.standing().best
        return self.rows[int(best.name)] if best is not None else None

    def to_json(self) -> list[dict[str, Any]]:
        """The rows, each with `best` and `compared` (what comparing it with the best found)."""
        standing = self.standing()
        rows = []
        for index, row in enumerate(self.rows):
            found = standing.comparisons.get(str(index))
            best = standing.best is not None and standing.best.name == str(index)
            rows.append({**row.to_json(), "best": best, "compared": found.to_json() if found else None})
        return rows


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


def default_plot_path(targets: list[Target]) -> Path:
    """Where `voicetune eval` draws its picture when --plot is not given: beside what was scored,
    never into the current directory. A run's checkpoints: RUN/eval-cli.png (RUN/eval.png is the
    training's own); an upstream file: FILE.eval.png beside it."""
    first = targets[0]
    if first.upstream:
        return first.path.with_name(first.path.name + ".eval.png")
    run = first.path.parent.parent if first.path.parent.name == "checkpoints" else first.path
    return run / "eval-cli.png"


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


def eval_set_for(
    targets: list[Target],
    data: Path | None,
    texts: list[str],
    clips: int,
    language: str | None,
    ref: Path | None,
    ref_text: str | None,
) -> EvalSet:
    """--data's set, else the first run's stored set, else one chosen from the dataset a checkpoint
    was trained on; --text adds sentences, --ref replaces the voice prompt."""
    eval_set = None
    if data is None:
        eval_set = next((s for s in map(_run_eval_set, targets) if s is not None), None)
        if eval_set is None:
            data = next((Path(c["data"]) for c in map(_config_of, targets) if c and c.get("data")), None)
    if eval_set is None:
        if data is None or not Path(data).is_dir():
            raise UsageError(
                "--data DATASET: needed to choose what to say and the real voice to compare with "
                f"({'no dataset folder ' + str(data) if data else 'an upstream weight file names no dataset'})"
            )
        config_language = next((c.get("language") for c in map(_config_of, targets) if c and c.get("language")), None)
        eval_set = choose_eval_set(
            Path(data), None, clips, language or config_language or dataset_language(Path(data)) or FALLBACK_LANGUAGE
        )
    if texts:
        eval_set.texts = eval_set.texts + [t for t in texts if t.strip()]
    if language:
        eval_set.language = language
    if ref is not None:
        if not Path(ref).is_file():
            raise UsageError(f"--ref {ref}: no such file; give a wav of the voice (a few seconds)")
        if not ref_text:
            raise UsageError(
                "--ref-text: give the transcript of --ref (models that read the reference's words need it)"
            )
        eval_set.ref_audio, eval_set.ref_text = str(Path(ref).resolve()), ref_text
    return eval_set


def load_target(target: Target, model_name: str | None, eval_set: EvalSet, data: Path | None):
    """(adapter, model, weight sets) of a target, on the GPU when there is one: a trained
    checkpoint's {"ema": tensors, "raw": tensors}, an upstream file's {"model": None} (as loaded)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else None
    if not target.upstream:
        from voicetune.checkpoints import keys
        from voicetune.checkpoints.store import load_checkpoint
        from voicetune.synthesis.inference import load_trained_model, weight_sets

        trained = load_trained_model(target.path, device=device)
        sets = weight_sets(load_checkpoint(trained.checkpoint, components=[keys.MODEL, keys.EMA_FILE]))
        return trained.adapter, trained.model, {name: sets[name] for name in ("ema", "raw") if name in sets}
    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter

    dataset = data or Path(eval_set.real_clips[0]).parent.parent
    config = TrainConfig.resolve(
        {
            "model": model_name,
            "pretrained": str(target.path),
            "data": dataset,
            "language": eval_set.language or FALLBACK_LANGUAGE,
        }
    )
    adapter = create_adapter(config)
    model = adapter.build_model()
    model.eval()
    if device:
        model.to(device)
    return adapter, model, {"model": None}


def evaluate_targets(
    paths: list[Path],
    whisper_model: str | None,
    texts: list[str] | None = None,
    data: Path | None = None,
    model_name: str | None = None,
    clips: int = DEFAULT_EVAL_CLIPS,
    language: str | None = None,
    ref: Path | None = None,
    ref_text: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    note: Callable[[str], None] | None = None,
    nfe: int | None = None,
) -> EvalReport:
    """Score every target on one evaluation set, against the ceiling of its real clips; `nfe`:
    the sampling steps of models that have them (default: what each target samples with)."""
    from voicetune.scoring import get_scorers
    from voicetune.synthesis.inference import set_sampling_steps

    targets = resolve_targets(paths)
    # Said before any model is loaded: a weight file alone does not tell which architecture it is.
    unnamed = next((t for t in targets if t.upstream and not model_name), None)
    if unnamed is not None:
        raise UsageError(f"--model: name the architecture of {unnamed.path} (one of {', '.join(model_names())})")
    eval_set = eval_set_for(targets, data, list(texts or []), clips, language, ref, ref_text)
    if language is None:
        for target in targets:
            warning = None if target.upstream else stale_language_warning(target.path.parent.parent, target.label)
            if warning:
                say_once(warning, logging.WARNING, "voicetune.eval")
    scorers = get_scorers(whisper_model, note)
    real = score_real_voice(eval_set, scorers)
    rows = []
    for index, target in enumerate(targets):
        if progress:
            progress(index, len(targets), target.label)
        adapter, model, sets = load_target(target, model_name, eval_set, data)
        set_sampling_steps(adapter, nfe)
        results = evaluate_weights(adapter, model, sets, eval_set, real, scorers)
        if "model" in results:  # an upstream file: its one weight set
            chosen = results["model"]
            measures = chosen.measures()
        else:
            measures = scored_row({name: r.measures() for name, r in results.items()})
            chosen = results[str(measures["weights"])]
        steps = getattr(adapter, "nfe_steps", None)
        rows.append(
            EvalRow(target.label, target.step, measures, chosen.transcripts, eval_set.texts, chosen.flags, steps)
        )
        del model
    if progress:
        progress(len(targets), len(targets), "")
    return EvalReport(rows, real.ceiling, eval_set)
