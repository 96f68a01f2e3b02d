"""Scores of every milestone of a run: the evaluation set synthesized with the EMA weights and
with the raw (trained) weights, each sentence with every seed of the set, and scored against the
real voice; the better weight set is the milestone's score (`checkpoints.policy.choose_weights`);
eval.jsonl, eval.png, TensorBoard eval/*, one printed line, the chosen weights' sentences
themselves (RUN/eval/step_N/, `evaluation.kept`); the early-stop decision. While it works it tells
the reporter what it does ("ema weights, draw 1 of 2: synthesizing, 2 of 4 sentences").

A milestone's metrics (its manifest, its eval.jsonl row): score, wer, cer, similarity, dnsmos and
score_spread of the chosen weights, `weights` ("ema" or "raw"), and `scores` with the same measures
of each weight set ({"ema": {...}, "raw": {...}}).

The evaluation set is chosen when a run starts and stored in run.json with the real clips'
scores (the ceiling) and the speaker embedding, so that every session of the run, resumed or
not, scores against the same things; the ceiling is computed once per run.

Only rank 0 evaluates; the training loop makes one call per milestone (`evaluate`) and reads
`stop_reason` afterwards.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from voicetune import fsio
from voicetune.checkpoints.policy import CheckpointInfo, RetentionPolicy, Standing
from voicetune.checkpoints.scores import EVAL_JSONL, read_eval_rows
from voicetune.errors import UsageError
from voicetune.evaluation import (
    EvalSet,
    RealVoice,
    choose_eval_set,
    evaluate_weights,
    plot_eval,
    score_real_voice,
    scored_row,
)
from voicetune.evaluation.kept import keep_eval_audio
from voicetune.faults import pause_point
from voicetune.scoring import Summary
from voicetune.train.run_folder import RUN_JSON

log = logging.getLogger("voicetune.train")

EVAL_PNG = "eval.png"
RUN_JSON_KEY = "eval_set"
SCORE_RULE = RetentionPolicy(best_metric="score", best_mode="max")  # the best row: the manager's rule, on eval rows


def can_score(adapter) -> bool:
    """Whether milestones of this model can be scored: it must synthesize speech."""
    return callable(getattr(adapter, "synthesize", None))


def default_best(config, adapter) -> tuple[str, str]:
    """(best_metric, best_mode) for settings left unset: the score, highest best, for models whose
    milestones are scored; else the validation loss, lowest best."""
    scored = config.evaluate and can_score(adapter)
    if config.early_stop and not scored:
        raise UsageError(
            f"--early-stop {config.early_stop}: needs milestone scores, which "
            + (
                "--set evaluate=false turns off"
                if not config.evaluate
                else f"model {config.model} cannot make (it does not synthesize)"
            )
        )
    metric = config.best_metric or ("score" if scored else "val_loss")
    return metric, config.best_mode or ("max" if metric == "score" else "min")


class MilestoneEvaluator:
    """Scores milestones of one training session (rank 0; a disabled one does nothing)."""

    def __init__(self, config, adapter, run, reporter, start_step: int, enabled: bool = True):
        self.config, self.adapter, self.run, self.reporter = config, adapter, run, reporter
        self.enabled = enabled and config.evaluate and can_score(adapter)
        self.stop_reason: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.eval_set: EvalSet | None = None
        self.real: RealVoice | None = None
        self._scorers: Any = None  # scoring's Scorers, loaded at the first milestone
        if not self.enabled:
            return
        # Rows of steps after the one this session starts from belong to a future that was
        # abandoned (a crash after the milestone, before the checkpoint): they are scored again.
        self.rows = [r for r in read_eval_rows(run.path / EVAL_JSONL) if r["step"] <= start_step]
        _write_rows(run.path / EVAL_JSONL, self.rows)

    # ---- set-up, once per run (stored in run.json) -------------------------------------------

    def _prepare(self) -> None:
        from voicetune.scoring import get_scorers

        self._scorers = get_scorers(
            self.config.whisper_model, note=lambda m: self.reporter.say(f"note: {m}", logging.WARNING)
        )
        stored = self.run.read_run_json().get(RUN_JSON_KEY)
        if stored:
            self.eval_set = EvalSet.from_json(stored["set"])
            speaker = stored.get("speaker")
            self.real = RealVoice(
                np.asarray(speaker, np.float32) if speaker else None, Summary.from_json(stored["ceiling"]) or Summary()
            )
            return
        self.eval_set = choose_eval_set(
            Path(self.config.data),
            self.config.eval_text,
            self.config.eval_clips,
            self.config.language,
            seed=1000 + self.config.seed,
            seeds=self.config.eval_seeds,
        )
        self.real = score_real_voice(self.eval_set, self._scorers)
        speaker = None if self.real.speaker is None else [round(float(v), 7) for v in self.real.speaker]
        info = self.run.read_run_json()
        info[RUN_JSON_KEY] = {
            "set": self.eval_set.to_json(),
            "ceiling": self.real.ceiling.to_json(),
            "speaker": speaker,
        }
        fsio.atomic_write_json(self.run.path / RUN_JSON, info)
        # The rounded embedding, as later sessions read it back: the same numbers in every session.
        self.real = RealVoice(None if speaker is None else np.asarray(speaker, np.float32), self.real.ceiling)
        self.reporter.say(
            f"evaluation set: {len(self.eval_set.texts)} sentence{'s' * (len(self.eval_set.texts) != 1)} x "
            f"{self.eval_set.seeds} seed{'s' * (self.eval_set.seeds != 1)} in the voice of "
            f"{Path(self.eval_set.ref_audio).name}; the real voice scores {_describe(self.real.ceiling.to_json())}"
        )

    # ---- one call per milestone ----------------------------------------------------------------

    def evaluate(self, step: int, model, ema, weights) -> dict[str, Any]:
        """Score the EMA and the raw weights at milestone `step`; returns the metrics for its
        manifest (see the module docstring; those measured). Never raises: a failure is a line."""
        if not self.enabled:
            return {}
        from voicetune.train import state as st

        saved_rng = st.capture_rng()  # synthesis seeds its own generators; training's are put back
        working = lambda what: self.reporter.working(step, what)  # noqa: E731
        try:
            if self.eval_set is None:
                working("loading the scorers and scoring the real voice")
                self._prepare()
            pause_point("scoring")
            results = self._score_weight_sets(model, ema, weights, working)
        except Exception as err:
            log.exception("evaluation of step %d failed", step)
            self.reporter.say(
                f"evaluation of step {step} failed: {type(err).__name__}: {err} (training goes on)", logging.WARNING
            )
            return {}
        finally:
            st.restore_rng(saved_rng)
        row = {"step": step, **scored_row({name: r.measures() for name, r in results.items()})}
        self.rows = [r for r in self.rows if r["step"] != step] + [row]
        try:  # for people to listen to (the studio's A/B view): a failure costs only that
            keep_eval_audio(self.run.path, step, results[row["weights"]], self.eval_set, row["weights"])
        except Exception as err:  # noqa: BLE001
            log.warning("the evaluation audio of step %d was not kept: %s", step, err)
        _write_rows(self.run.path / EVAL_JSONL, self.rows)
        metrics = {k: v for k, v in row.items() if k != "step" and v is not None}
        self.reporter.scalars(
            step,
            {f"eval/{k}": v for k, v in metrics.items() if _is_number(v)}
            | {
                f"eval/{name}/{k}": v
                for name, scores in row["scores"].items()
                for k, v in scores.items()
                if _is_number(v)
            },
        )
        standing = self.standing()
        try:
            assert self.real is not None  # set by _prepare before any score
            plot_eval(
                self.rows,
                self.real.ceiling,
                self.run.path / EVAL_PNG,
                standing.best.step if standing.best else None,
                f"{self.run.path.name}: scores at milestones",
            )
        except Exception as err:  # noqa: BLE001
            log.warning("eval.png not written: %s", err)
        self.reporter.say(f"eval step {step}: {_describe_row(row)}{_describe_best(standing, step)}")
        self._watch_progress(step, standing)
        return metrics

    def score_cut_short(self, resumed, model, ema, weights) -> bool:
        """Score the milestone this session resumed from when a stop reached it during its
        scoring (committed without a score): first, before any update, with the weights it holds
        (the state just loaded from it). Its manifest stays as committed; the score goes to
        eval.jsonl, where the checkpoint store finds it (`checkpoints.scores`), and the best is
        reconsidered with it. Whether it scored it."""
        if not self.enabled or resumed is None or resumed.role != "milestone" or "score" in resumed.metrics:
            return False
        if any(r["step"] == resumed.step for r in self.rows):
            return False
        self.reporter.say(
            f"step {resumed.step}: scoring the milestone that the stop cut short (first; its manifest stays "
            f"as committed, the score goes to {EVAL_JSONL})"
        )
        started = time.monotonic()
        scored = self.evaluate(resumed.step, model, ema, weights)
        self.reporter.milestone_done(time.monotonic() - started, resumed.step)  # its time: the ETA's measure
        return bool(scored)

    def _score_weight_sets(self, model, ema, weights, progress=None) -> dict[str, Any]:
        """Both weight sets said and scored on one copy of the model; an EMA equal to the raw
        weights (a copy of them, as in its first `ema_update_after` updates) is scored once."""
        assert self.eval_set is not None and self.real is not None  # set by _prepare
        listener = copy.deepcopy(model)
        listener.eval()
        try:
            return evaluate_weights(
                self.adapter,
                listener,
                {"raw": weights, "ema": ema.weights_like(weights)},
                self.eval_set,
                self.real,
                self._scorers,
                progress,
            )
        finally:
            del listener

    def standing(self) -> Standing:
        """The best row by score (the checkpoint manager's rule, `RetentionPolicy.standing`), the
        rows the evidence cannot tell from it, what each comparison found, and how many came after it."""
        return SCORE_RULE.standing([row_info(r) for r in self.rows])

    def _watch_progress(self, step: int, standing: Standing) -> None:
        """A warning when the score fell two milestones in a row; the early-stop decision."""
        scores = [r["score"] for r in sorted(self.rows, key=lambda r: r["step"]) if _is_number(r.get("score"))]
        if len(scores) >= 3 and scores[-1] < scores[-2] < scores[-3]:
            self.reporter.say(
                f"the score fell two milestones in a row ({scores[-3]:.3f} -> {scores[-2]:.3f} -> "
                f"{scores[-1]:.3f}); listen to RUN/samples and see {EVAL_PNG}",
                logging.WARNING,
            )
        patience = self.config.early_stop
        if patience and standing.best is not None and standing.since_best >= patience:
            self.stop_reason = (
                f"early stop at step {step}: the score has not improved for {standing.since_best} "
                f"milestones (best {standing.best.metrics['score']:.3f} at step {standing.best.step}; "
                f"a milestone the evidence cannot tell from the best is not progress; --early-stop {patience})"
            )


def row_info(row: dict[str, Any]) -> CheckpointInfo:
    """An eval.jsonl row as the checkpoint policies see a milestone."""
    return CheckpointInfo(f"step_{row['step']:08d}", row["step"], "milestone", "full", 0, row)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe_row(row: dict[str, Any]) -> str:
    text = _describe(row)
    spread = row.get("score_spread")
    if spread is not None and "score" in text:
        text += f" (spread {spread:.3f})"
    others = {name: s.get("score") for name, s in row.get("scores", {}).items() if name != row.get("weights")}
    if row.get("weights"):
        text += f"; {row['weights']} weights" + "".join(
            f" (the {name} weights score {value:.3f})" for name, value in others.items() if value is not None
        )
    return text


def _describe_best(standing: Standing, step: int) -> str:
    """ "; best score 0.061 at step 45 (better than step 15: +0.029 ± 0.008 (paired, 8 pairs))", or
    what comparing milestone `step` with the best found."""
    if standing.best is None:
        return ""
    text = f"; best score {standing.best.metrics['score']:.3f} at step {standing.best.step}"
    found = standing.comparisons.get(f"step_{step:08d}")
    if found is None:
        return text
    if standing.best.step == step:
        return f"{text} ({found.describe()})"
    kept = ": the earlier stays best" if found.verdict == "tie" else ""
    return f"{text} (step {step} {found.describe()}{kept})"


def _describe(measures: dict[str, Any]) -> str:
    parts = []
    for key, label, digits in (
        ("wer", "WER", 3),
        ("cer", "CER", 3),
        ("similarity", "similarity", 3),
        ("dnsmos", "DNSMOS", 2),
        ("score", "score", 3),
    ):
        value = measures.get(key)
        if value is not None:
            parts.append(f"{label} {value:.{digits}f}")
    return ", ".join(parts) or "nothing (no scorer could load)"


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    from voicetune.data.files import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["step"])))
