"""`voicetune train`: fine-tune a model on a dataset folder into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from voicetune.cli.root import app


def setting(name: str, *flags: str, metavar: str | None = None, help: str | None = None):
    """A flag for a TrainConfig field: its meaning and default come from the field itself, and
    it stays None unless given, so that the config file, .env and VOICETUNE_* still apply."""
    from voicetune.config import setting_help

    text = setting_help(name)
    if help:
        text = f"{help}{text[text.index(' [default'):] if ' [default' in text else ''}"
    # "\\[" keeps rich from reading "[default: 8]" and "[required]" as markup.
    return typer.Option(None, *(flags or ("--" + name.replace("_", "-"),)), metavar=metavar,
                        help=text.replace("[", "\\["), show_default=False)


@app.command()
def train(
    data: Optional[Path] = setting("data", metavar="DATASET", help="dataset folder (LJSpeech layout, e.g. from `voicetune prepare`) [required]"),
    run: Optional[Path] = setting("run", "--run", "--run-dir", metavar="RUN", help="run folder: checkpoints, samples, TensorBoard, train.log [required]; --run-dir is the same (torchrun takes --run)"),
    model: Optional[str] = setting("model", metavar="NAME"),
    pretrained: Optional[str] = setting("pretrained", metavar="PATH|hf://REPO/FILE"),
    vocab: Optional[str] = setting("vocab", metavar="FILE"),
    language: Optional[str] = setting("language", metavar="CODE"),
    resume: Optional[str] = setting("resume", metavar="MODE|CHECKPOINT"),
    init_from: Optional[str] = setting("init_from", metavar="RUN|CHECKPOINT|FILE"),
    data_changed: Optional[str] = setting("data_changed", metavar="refuse|restart-epoch"),
    max_updates: Optional[int] = setting("max_updates", metavar="N"),
    batch_size: Optional[int] = setting("batch_size", metavar="N"),
    batch_frames: Optional[int] = setting("batch_frames", metavar="N"),
    grad_accum: Optional[int] = setting("grad_accum", metavar="N"),
    lr: Optional[float] = setting("lr", metavar="LR"),
    warmup_updates: Optional[int] = setting("warmup_updates", metavar="N"),
    save_every: Optional[int] = setting("save_every", metavar="N"),
    last_every: Optional[int] = setting("last_every", metavar="N"),
    last_every_minutes: Optional[float] = setting("last_every_minutes", metavar="MIN"),
    keep_last: Optional[int] = setting("keep_last", metavar="K"),
    keep_every: Optional[int] = setting("keep_every", metavar="K"),
    milestone_state: Optional[str] = setting("milestone_state", metavar="full|weights"),
    disk_budget: Optional[str] = setting("disk_budget", metavar="SIZE"),
    seed: Optional[int] = setting("seed", metavar="S"),
    workers: Optional[int] = setting("workers", metavar="N"),
    mixed_precision: Optional[str] = setting("mixed_precision", metavar="auto|no|fp16|bf16"),
    gradient_checkpointing: Optional[bool] = setting("gradient_checkpointing",
                                                     "--gradient-checkpointing/--no-gradient-checkpointing"),
    optimizer: Optional[str] = setting("optimizer", metavar="adamw|adamw8bit"),
    gpu_memory: Optional[str] = setting("gpu_memory", metavar="SIZE"),
    sample_text: Optional[List[str]] = setting("sample_text", metavar="TEXT"),
    eval_text: Optional[List[str]] = setting("eval_text", metavar="TEXT"),
    early_stop: Optional[int] = setting("early_stop", metavar="K"),
    whisper_model: Optional[str] = setting("whisper_model", metavar="NAME|FOLDER"),
    best_metric: Optional[str] = setting("best_metric", metavar="score|val_loss|train_loss"),
    lora_rank: Optional[int] = setting("lora_rank", metavar="R"),
    lora_alpha: Optional[float] = setting("lora_alpha", metavar="A"),
    lora_dropout: Optional[float] = setting("lora_dropout", metavar="P"),
    lora_targets: Optional[List[str]] = setting("lora_targets", metavar="NAME"),
    collective_timeout: Optional[str] = setting("collective_timeout", metavar="DURATION"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE.toml", help="TOML file of settings (below .env, VOICETUNE_* and flags)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="any setting, e.g. --set ema_decay=0.999; `--settings` lists them"),
    processes: int = typer.Option(1, "--processes", min=1, metavar="N", help="training processes on this machine (DDP), e.g. one per GPU"),
    settings: bool = typer.Option(False, "--settings", help="print every setting with its default and meaning, then exit"),
) -> None:
    """Fine-tune; resumes automatically from the newest valid checkpoint of RUN."""
    options = dict(locals())
    if settings:
        print_settings()
        return
    from voicetune.train.launch import in_child, launch

    if processes > 1 and not in_child():
        raise typer.Exit(launch(processes, relaunch_argv()))
    from voicetune.train.loop import train as run_training

    run_training(resolve_train_config(options))


def resolve_train_config(options: dict):
    """The TrainConfig of train's (and plan's) options: flags over --set over the TOML file."""
    from voicetune.config import TrainConfig, parse_set_flags

    flags = {k: v for k, v in options.items() if k in TrainConfig.model_fields and v not in (None, [])}
    return TrainConfig.resolve({**parse_set_flags(options.get("set_") or []), **flags}, toml_file=options.get("config"))


def print_settings() -> None:
    """Every TrainConfig field: its --set key, flag or TOML key, default and meaning."""
    from rich.table import Table

    from voicetune.config import TrainConfig, setting_default
    from voicetune.console import console

    table = Table(title="voicetune train settings: --set KEY=VALUE, a TOML key, VOICETUNE_KEY, or --flag")
    for column in ("key", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for name, field in TrainConfig.model_fields.items():
        default = setting_default(name)
        table.add_row(name, "-" if default is None else str(default), field.description or "")
    console.print(table)


def relaunch_argv() -> list[str]:
    """This command line without --processes, for the children."""
    import sys

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            args.append(arg)
    return args
