"""`voicetune train`: fine-tune a model on a dataset folder into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from voicetune.cli import app


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="dataset folder (LJSpeech layout, e.g. from `voicetune prepare`)"),
    run: Optional[Path] = typer.Option(None, "--run", help="run folder: checkpoints, samples, TensorBoard, train.log"),
    model: Optional[str] = typer.Option(None, "--model", help="f5-tiny | f5-v1-small | f5-v1-base | xtts-tiny | xtts-v2"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="upstream weights: local path or hf://REPO/FILE"),
    resume: Optional[str] = typer.Option(None, "--resume", help="auto (default) | latest | never | CHECKPOINT_DIR"),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="start at step 0 from a run's or checkpoint's weights"),
    data_changed: Optional[str] = typer.Option(None, "--data-changed", help="restart-epoch: resume over a changed dataset "
                                               "(weights and optimizer kept, a fresh epoch over the new data)"),
    max_updates: Optional[int] = typer.Option(None, "--max-updates"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    batch_frames: Optional[int] = typer.Option(None, "--batch-frames", help="batch by total mel frames"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    warmup_updates: Optional[int] = typer.Option(None, "--warmup-updates"),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="milestone every N updates"),
    last_every: Optional[int] = typer.Option(None, "--last-every", help="rolling full checkpoint every N updates"),
    last_every_minutes: Optional[float] = typer.Option(None, "--last-every-minutes"),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="newest milestones kept"),
    keep_every: Optional[int] = typer.Option(None, "--keep-every", help="also keep every K-th milestone"),
    milestone_state: Optional[str] = typer.Option(None, "--milestone-state", help="full | weights"),
    disk_budget: Optional[str] = typer.Option(None, "--disk-budget", help="most disk the checkpoints may use, e.g. 20G"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader workers (default cores-1, max 8)"),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="auto | no | fp16 | bf16"),
    sample_text: Optional[List[str]] = typer.Option(None, "--sample-text", help="extra text to synthesize at milestones"),
    lora_rank: Optional[int] = typer.Option(None, "--lora-rank", help="train LoRA adapters of this rank"),
    lora_alpha: Optional[float] = typer.Option(None, "--lora-alpha"),
    lora_dropout: Optional[float] = typer.Option(None, "--lora-dropout"),
    lora_targets: Optional[List[str]] = typer.Option(None, "--lora-targets", help="module names to adapt"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of settings (below env and flags)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="any other setting, KEY=VALUE (e.g. --set ema_decay=0.999)"),
    processes: int = typer.Option(1, "--processes", min=1, help="training processes on this machine (DDP), e.g. one per GPU"),
) -> None:
    """Fine-tune; resumes automatically from the newest valid checkpoint of RUN."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "processes") and v not in (None, [])}
    from voicetune.train.launch import in_child, launch

    if processes > 1 and not in_child():
        raise typer.Exit(launch(processes, relaunch_argv()))
    from voicetune.config import TrainConfig, parse_set_flags
    from voicetune.train.loop import train as run_training

    resolved = TrainConfig.resolve({**parse_set_flags(set_ or []), **flags}, toml_file=config)
    run_training(resolved)


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
