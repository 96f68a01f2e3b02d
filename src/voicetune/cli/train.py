"""`voicetune train`: fine-tune a model on a dataset folder into a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from voicetune.cli.root import app


def setting(name: str, *flags: str, metavar: str | None = None, help: str | None = None):
    """A flag for a TrainConfig field: its meaning and default come from the field itself, and
    it stays None unless given, so that the config file, .env and VOICETUNE_* still apply."""
    from voicetune.config import setting_help

    text = setting_help(name)
    if help:
        text = f"{help}{text[text.index(' [default') :] if ' [default' in text else ''}"
    # "\\[" keeps rich from reading "[default: 8]" and "[required]" as markup.
    return typer.Option(
        None,
        *(flags or ("--" + name.replace("_", "-"),)),
        metavar=metavar,
        help=text.replace("[", "\\["),
        show_default=False,
    )


@app.command()
def train(
    data: Path | None = setting(
        "data", metavar="DATASET", help="dataset folder (LJSpeech layout, e.g. from `voicetune prepare`) [required]"
    ),
    run: Path | None = setting(
        "run",
        "--run",
        "--run-dir",
        metavar="RUN",
        help="run folder: checkpoints, samples, TensorBoard, train.log [required]; --run-dir is the same (torchrun takes --run)",
    ),
    model: str | None = setting("model", metavar="NAME"),
    pretrained: str | None = setting("pretrained", metavar="PATH|hf://REPO/FILE"),
    vocab: str | None = setting("vocab", metavar="FILE"),
    language: str | None = setting("language", metavar="CODE"),
    language_mismatch: str | None = setting("language_mismatch", metavar="refuse|ok"),
    resume: str | None = setting("resume", metavar="MODE|CHECKPOINT"),
    init_from: str | None = setting("init_from", metavar="RUN|CHECKPOINT|FILE"),
    data_changed: str | None = setting("data_changed", metavar="refuse|restart-epoch"),
    max_updates: int | None = setting("max_updates", metavar="N"),
    batch_size: int | None = setting("batch_size", metavar="N"),
    batch_frames: int | None = setting("batch_frames", metavar="N"),
    grad_accum: int | None = setting("grad_accum", metavar="N"),
    lr: float | None = setting("lr", metavar="LR"),
    warmup_updates: int | None = setting("warmup_updates", metavar="N"),
    save_every: int | None = setting("save_every", metavar="N"),
    last_every: int | None = setting("last_every", metavar="N"),
    last_every_minutes: float | None = setting("last_every_minutes", metavar="MIN"),
    keep_last: int | None = setting("keep_last", metavar="K"),
    keep_every: int | None = setting("keep_every", metavar="K"),
    milestone_state: str | None = setting("milestone_state", metavar="full|weights"),
    disk_budget: str | None = setting("disk_budget", metavar="SIZE"),
    seed: int | None = setting("seed", metavar="S"),
    workers: int | None = setting("workers", metavar="N"),
    mixed_precision: str | None = setting("mixed_precision", metavar="auto|no|fp16|bf16"),
    gradient_checkpointing: bool | None = setting(
        "gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing"
    ),
    optimizer: str | None = setting("optimizer", metavar="adamw|adamw8bit"),
    gpu_memory: str | None = setting("gpu_memory", metavar="SIZE"),
    sample_text: list[str] | None = setting("sample_text", metavar="TEXT"),
    eval_text: list[str] | None = setting("eval_text", metavar="TEXT"),
    early_stop: int | None = setting("early_stop", metavar="K"),
    whisper_model: str | None = setting("whisper_model", metavar="NAME|FOLDER"),
    best_metric: str | None = setting("best_metric", metavar="score|val_loss|train_loss"),
    lora_rank: int | None = setting("lora_rank", metavar="R"),
    lora_alpha: float | None = setting("lora_alpha", metavar="A"),
    lora_dropout: float | None = setting("lora_dropout", metavar="P"),
    lora_targets: list[str] | None = setting("lora_targets", metavar="NAME"),
    collective_timeout: str | None = setting("collective_timeout", metavar="DURATION"),
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE.toml", help="TOML file of settings (below .env, VOICETUNE_* and flags)"
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="any setting, e.g. --set ema_decay=0.999; `--settings` lists them"
    ),
    processes: int = typer.Option(
        1, "--processes", min=1, metavar="N", help="training processes on this machine (DDP), e.g. one per GPU"
    ),
    settings: bool = typer.Option(
        False, "--settings", help="print every setting with its default and meaning, then exit"
    ),
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
