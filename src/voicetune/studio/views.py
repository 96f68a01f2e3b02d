"""What the studio's pages show, computed from the workspace's files without a browser: the
checkpoint table and pickers with their scores, the clip list's pages, the A/B view of two
milestones' evaluation sentences. The pages (`studio.app`) only lay these out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicetune.checkpoints.maintenance import CheckpointRow, list_checkpoints
from voicetune.config import format_size
from voicetune.errors import UsageError
from voicetune.evaluation.kept import KeptEvaluation, KeptSentence, kept_steps, read_kept
from voicetune.studio.workspace import Workspace

CKPT_COLUMNS = [
    "checkpoint",
    "step",
    "role",
    "state",
    "size",
    "score",
    "WER",
    "similarity",
    "DNSMOS",
    "weights",
    "spread",
    "flags",
    "val_loss",
    "best",
    "status",
]
CKPT_COLUMN_WIDTHS: list[str | int] = [
    "140px",
    "50px",
    "100px",
    "65px",
    "90px",
    "65px",
    "60px",
    "110px",
    "80px",
    "80px",
    "70px",
    "80px",
    "85px",
    "95px",
    "95px",
]  # every header, role and "tie with 15" on one line in a 1360-px window
CLIP_ORDERS = ("id", "flags first", "longest first", "shortest first", "removed last")


# ---- checkpoints and their scores --------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """The scores a checkpoint row carries (None where not measured): those of the weights its
    evaluation chose ("ema" until raw weights are scored too), their spread over seeds, the
    hallucination flags and whether it ties with the best."""

    score: float | None
    wer: float | None
    similarity: float | None
    dnsmos: float | None
    weights: str | None
    spread: float | None
    flags: str
    tie: str

    @classmethod
    def of(cls, row: CheckpointRow | dict[str, Any]) -> Scores:
        # A row's fields, those it gained (weights, score_spread, flags, tie...) and its manifest metrics.
        data = {**vars(row), **row.to_json()} if isinstance(row, CheckpointRow) else dict(row)
        merged = {**(data.get("metrics") or {}), **{k: v for k, v in data.items() if v is not None}}
        score = _number(merged.get("score"))
        weights = merged.get("weights") or ("ema" if score is not None else None)
        return cls(
            score,
            _number(merged.get("wer")),
            _number(merged.get("similarity")),
            _number(merged.get("dnsmos")),
            weights,
            _number(merged.get("score_spread")),
            _flags(merged.get("flags")),
            _tie(merged.get("tied_with")),
        )

    def short(self) -> str:
        """'score 0.512 ±0.020 · WER 0.300 · similarity 0.712 · DNSMOS 2.10 · ema' (what was measured)."""
        parts = []
        if self.score is not None:
            parts.append(f"score {self.score:.3f}" + (f" ±{self.spread:.3f}" if self.spread is not None else ""))
        for label, value, digits in (
            ("WER", self.wer, 3),
            ("similarity", self.similarity, 3),
            ("DNSMOS", self.dnsmos, 2),
        ):
            if value is not None:
                parts.append(f"{label} {value:.{digits}f}")
        if self.weights:
            parts.append(self.weights)
        if self.flags:
            parts.append(f"flags: {self.flags}")
        return " · ".join(parts) or "not scored"


def checkpoint_table(rows: list[CheckpointRow]) -> list[list]:
    """The Checkpoints page's table: `ckpt list` with every score."""
    table = []
    for r in rows:
        s = Scores.of(r)
        val = r.metrics.get("val_loss")
        status = "ok" if r.status == "ok" else ("committed" if r.status == "unverified" else (r.problem or r.status))
        best = "★" if r.best else ""
        if s.tie:
            best = f"{best} {s.tie}".strip()
        table.append(
            [
                r.name,
                r.step,
                r.role,
                r.kind,
                format_size(r.size_bytes),
                _cell(s.score, 3),
                _cell(s.wer, 3),
                _cell(s.similarity, 3),
                _cell(s.dnsmos, 2),
                s.weights or "",
                "" if s.spread is None else f"±{s.spread:.3f}",
                s.flags,
                _cell(val, 4),
                best,
                status,
            ]
        )
    return table


def checkpoint_choices(ws: Workspace, runs: list[str] | None = None) -> list[tuple[str, str]]:
    """(label, workspace path) of every run's best and each of its checkpoints, labelled with
    their scores: what the Synthesize page's pickers offer."""
    choices = []
    for run in ws.names("runs") if runs is None else runs:
        folder = ws.root / "runs" / run
        if not any((folder / "checkpoints").glob("step_*/manifest.json")):
            continue
        rows = [r for r in list_checkpoints(folder)[0] if r.status != "invalid" and r.problem is None]
        best = next((r for r in rows if r.best), None)
        choices.append(
            (f"{run} (best{': ' + best.name + ' · ' + Scores.of(best).short() if best else ''})", f"runs/{run}")
        )
        choices += [(f"{run} / {r.name} · {Scores.of(r).short()}", f"runs/{run}/checkpoints/{r.name}") for r in rows]
    return choices


def export_choices(rows: list[CheckpointRow]) -> list[tuple[str, str]]:
    """The Checkpoints page's export picker: the best ("" ) and every checkpoint, with scores."""
    best = next((r for r in rows if r.best), None)
    head = f"the best ({best.name} · {Scores.of(best).short()})" if best else "the best"
    return [(head, "")] + [(f"{r.name} · {Scores.of(r).short()}", r.name) for r in rows]


# ---- clips -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipPage:
    clips: list  # the ClipEntry objects of this page
    number: int
    pages: int


def order_clips(clips: list, order: str) -> list:
    """Clips in the order chosen on the Data page. By id, a removed clip keeps its place (marked
    removed, with Restore) instead of jumping to the last page; "removed last" gathers them."""
    keys = {
        "id": lambda c: c.clip_id,
        "flags first": lambda c: (-len(c.flags), c.clip_id),
        "longest first": lambda c: (-c.duration, c.clip_id),
        "shortest first": lambda c: (c.duration, c.clip_id),
        "removed last": lambda c: (c.removed, c.clip_id),
    }
    if order not in keys:
        raise UsageError(f"sort clips by {order!r}: choose one of {', '.join(CLIP_ORDERS)}")
    return sorted(clips, key=keys[order])


def clip_page(clips: list, order: str, page: int | None, per_page: int) -> ClipPage:
    """Page `page` (1-based, clamped to the pages there are) of the ordered clips."""
    ordered = order_clips(clips, order)
    pages = max(1, (len(ordered) + per_page - 1) // per_page)
    number = min(max(int(page or 1), 1), pages)
    return ClipPage(ordered[(number - 1) * per_page : number * per_page], number, pages)


def page_of(clips: list, order: str, clip_id: str, per_page: int) -> int:
    """The page on which `clip_id` is listed in this order."""
    ids = [c.clip_id for c in order_clips(clips, order)]
    return ids.index(clip_id) // per_page + 1 if clip_id in ids else 1


# ---- the A/B view ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ABSentence:
    text: str
    real_clip: Path | None  # the speaker saying it (a held-out recording), when the set has one
    a: KeptSentence | None
    b: KeptSentence | None
    no_clip: str = ""  # why there is no real clip to play (said in place of it)


@dataclass(frozen=True)
class ABView:
    a: KeptEvaluation
    b: KeptEvaluation
    sentences: list[ABSentence]


def ab_choices(ws: Workspace, run_name: str) -> list[tuple[str, int]]:
    """(label, step) of the run's milestones whose evaluation sentences were kept, newest first."""
    run = ws.named("runs", run_name)
    choices = []
    for step in reversed(kept_steps(run)):
        kept = read_kept(run, step)
        if kept is not None:
            choices.append((f"step {step} · {Scores.of({**kept.measures, 'weights': kept.weights}).short()}", step))
    return choices


def ab_view(ws: Workspace, run_name: str, step_a: int, step_b: int) -> ABView:
    """Two milestones' evaluation sentences side by side with the real voice's clips. Every file
    it names is inside the workspace (a real clip that is not is left out)."""
    run = ws.named("runs", run_name)
    kept = []
    for step in (step_a, step_b):
        evaluation = read_kept(run, int(step)) if step is not None else None
        if evaluation is None:
            raise UsageError(
                f"run {run_name}: step {step} has no kept evaluation (not scored, or scored before "
                "voicetune kept the evaluation sentences); choose a milestone from the list"
            )
        sentences = [
            KeptSentence(
                s.text,
                ws.inside(str(s.audio), "evaluation audio"),
                s.heard,
                s.measures,
                s.real_clip,
            )
            for s in evaluation.sentences
        ]
        kept.append(KeptEvaluation(evaluation.step, evaluation.weights, evaluation.measures, sentences))
    a, b = kept
    rows = []
    for index in range(max(len(a.sentences), len(b.sentences))):
        first = a.sentences[index] if index < len(a.sentences) else None
        second = b.sentences[index] if index < len(b.sentences) else None
        either = first if first is not None else second
        assert either is not None  # index < the longer of the two lists
        playable, why = _real_clip(ws, either.real_clip)
        rows.append(ABSentence(either.text, playable, first, second, why))
    return ABView(a, b, rows)


def sentence_scores(sentence: KeptSentence) -> str:
    """'WER 0.250 · similarity 0.701 · DNSMOS 2.31 · heard: "..."'."""
    m = sentence.measures
    parts = [
        f"{label} {m[key]:.{digits}f}"
        for key, label, digits in (("wer", "WER", 3), ("similarity", "similarity", 3), ("dnsmos", "DNSMOS", 2))
        if m.get(key) is not None
    ]
    if sentence.heard is not None:
        parts.append(f'heard: "{sentence.heard}"')
    return " · ".join(parts) or "not scored"


def _real_clip(ws: Workspace, path: Path | None) -> tuple[Path | None, str]:
    """(the real clip to play, or None and why not): an extra text has no recording; a clip
    outside the workspace (a run copied in from elsewhere) is not served; a moved one is gone."""
    if path is None:
        return None, "no recording of this sentence: an extra evaluation text"
    try:
        resolved = ws.inside(str(path), "real clip")
    except UsageError:
        return None, (
            f"the recording of this sentence, {path}, lies outside the workspace (a run copied in?): "
            "the studio plays files inside it only; copy the dataset into the workspace"
        )
    if not resolved.is_file():
        return None, f"the recording of this sentence, {path}, is missing"
    return resolved, ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _flags(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k} ×{v}" if isinstance(v, int) and v > 1 else str(k) for k, v in value.items() if v)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _tie(tied_with: Any) -> str:
    """What `ckpt list` says of a checkpoint the evidence cannot tell from the best."""
    if tied_with is None or isinstance(tied_with, bool):
        return ""
    return f"tie with {tied_with}"
