"""`voicetune eval`: score runs, checkpoints and upstream weight files on one evaluation set."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from voicetune.cli.root import NFE_HELP, app
from voicetune.models.registry import model_names


@app.command("eval")
def eval_(
    targets: list[Path] = typer.Argument(
        ...,
        metavar="TARGET...",
        help="run folders (every kept checkpoint), checkpoint directories, upstream weight files (step 0)",
    ),
    whisper_model: str = typer.Option(
        "small", envvar="VOICETUNE_WHISPER_MODEL", help="model name (downloaded once) or local CTranslate2 folder"
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="print a JSON list of {checkpoint, step, wer, cer, similarity, dnsmos, score, score_spread, score_pairs, weights, scores, clips, nfe, best, compared}",
    ),
    text: list[str] = typer.Option([], "--text", help="a sentence to say besides the held-out ones (repeatable)"),
    data: Path | None = typer.Option(
        None, "--data", help="dataset whose held-out clips are said and compared with; default: the run's"
    ),
    model: str | None = typer.Option(
        None, "--model", help=f"architecture of upstream weight files ({', '.join(model_names())})"
    ),
    clips: int = typer.Option(
        4, "--clips", min=1, help="held-out clips in a set chosen here (a run's stored set is used as it is)"
    ),
    language: str | None = typer.Option(None, "--language", help="language of the texts; default: the run's"),
    ref: Path | None = typer.Option(None, "--ref", help="voice prompt to use instead of the set's reference clip"),
    ref_text: str | None = typer.Option(None, "--ref-text", help="transcript of --ref"),
    nfe: int | None = typer.Option(None, "--nfe", help=NFE_HELP),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="where to write the picture of the scores over steps; default: beside what was scored (RUN/eval-cli.png, FILE.eval.png)",
    ),
) -> None:
    """Score TARGETs: intelligibility (WER/CER), speaker similarity, DNSMOS, and the score relative to the real voice."""
    from voicetune.console import advance, console, progress_bar
    from voicetune.evaluation import default_plot_path, evaluate_targets, plot_eval, resolve_targets

    # With --json, stdout holds the JSON alone: what models say while loading goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet, progress_bar(transient=True) as bar:  # on stderr: beside --json too
        task = bar.add_task("scoring checkpoints", total=None, status="")
        report = evaluate_targets(
            targets,
            whisper_model,
            text,
            data,
            model,
            clips,
            language,
            ref,
            ref_text,
            progress=lambda done, total, label: advance(bar, task, done, total, Path(label).name),
            nfe=nfe,
        )
    rows = report.to_json()
    best = next((row for row in rows if row["best"]), None)
    plot = plot or default_plot_path(resolve_targets(targets))
    plot_eval(rows, report.ceiling, plot, best["step"] if best else None, "voicetune eval")
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    print_eval_table(rows, report.ceiling, best, console)
    steps = {row.nfe for row in report.rows if row.nfe}
    sampled = f", {', '.join(map(str, sorted(steps)))} sampling steps" if steps else ""
    console.print(
        f"{len(report.eval_set.texts)} sentences in the voice of {report.eval_set.ref_audio}{sampled}; plot: {plot}"
    )


def print_eval_table(rows: list[dict], ceiling, best: dict | None, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    def cell(value, digits):
        return "" if value is None else f"{value:.{digits}f}"

    from voicetune.cli.tables import weights_cell

    table = Table(title="scores (score 1.0 = as good as the real voice)", title_justify="left")
    for column in ("checkpoint", "step", "WER", "CER", "similarity", "DNSMOS", "score", "spread", "weights", "best"):
        table.add_column(column, justify="left" if column in ("checkpoint", "weights", "best") else "right")
    for r in rows:
        table.add_row(
            escape(r["checkpoint"]),
            str(r["step"]),
            cell(r["wer"], 3),
            cell(r["cer"], 3),
            cell(r["similarity"], 3),
            cell(r["dnsmos"], 2),
            cell(r["score"], 3),
            cell(r.get("score_spread"), 3),
            weights_cell(r),
            "[bold yellow]*[/]" if r is best else "",
        )
    table.add_row(
        "[green]real voice[/]",
        "",
        cell(ceiling.wer, 3),
        cell(ceiling.cer, 3),
        cell(ceiling.similarity, 3),
        cell(ceiling.dnsmos, 2),
        "1.000",
        "",
        "",
        "",
    )
    console.print(table)
    compared = [r for r in rows if r.get("compared")]
    if compared:
        console.print(
            "compared with the best (score difference ± its standard error, on the same sentences and seeds):"
        )
        for r in compared:
            console.print(
                f"  {escape(Path(r['checkpoint']).name)}{' (best)' if r is best else ''}: {r['compared']['text']}"
            )
