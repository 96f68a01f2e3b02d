"""Run upstream F5-TTS's own `f5_tts.model.Trainer` on an LJSpeech-layout corpus, on CPU.

Produces a real upstream Trainer checkpoint (model_last.pt) for the tests of voicetune's importer
and `--init-from`, and measures the upstream Trainer's updates per second for bench/train_step.py.

How upstream is driven, unchanged:
- The dataset is what upstream's `prepare_csv_wavs.py` writes: rows {audio_path, text converted
  with convert_char_to_pinyin, duration} in raw.arrow via its own `save_prepped_dataset`, plus
  duration.json, loaded the way `load_dataset(..., "CustomDataset")` loads it (`Dataset.from_file`
  + `CustomDataset`, which computes mels from the audio in its DataLoader workers). The
  `prepare_csv_wavs_dir` front end is not called: it installs SIGINT/SIGTERM handlers for good.
- The model is CFM(DiT) with voicetune's architecture of the same name and upstream's vocab.txt,
  built as upstream's finetune_cli builds it.
- `Trainer(..., logger=None)` is the supported way to run without wandb; accelerate picks the CPU
  by itself when there is no GPU. The Trainer hardcodes `persistent_workers=True`, so it needs
  num_workers >= 1. It only stops at the end of an epoch:
  - batches of `batch_size` clips (batch_size_type "sample"): the dataset is sized to give exactly
    the requested number of updates in one epoch (clips cycled: updates * batch_size rows);
  - batches of `batch_frames` frames (batch_size_type "frame", upstream's DynamicBatchSampler):
    whole epochs over the corpus, as many as reach the requested number of updates, so the run
    may do a few more (`UpstreamRun.updates` says how many).
- Updates per second come from a post-step hook on the Trainer's own optimizer, from the
  `skip`-th update on: start-up (DataLoader workers, first batches) and the final save excluded.

Also a command: python tests/support/upstream_f5.py CORPUS OUT [--updates N] [--batch-size B | --batch-frames F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


@dataclass
class UpstreamRun:
    checkpoint: Path  # OUT/ckpts/model_last.pt, written by upstream's Trainer.save_checkpoint
    updates: int
    updates_per_second: float  # from update `skip` to the last one
    measured_updates: int
    seconds_total: float  # Trainer.train() wall time, start-up and final save included
    frames_per_update: float  # mean mel frames in a batch (upstream's get_frame_len)


def prepare_upstream_dataset(corpus: Path, out_dir: Path) -> tuple[list[dict], list[float]]:
    """Rows and durations of an LJSpeech corpus as upstream's prepare_csv_wavs.py makes them; also
    written to OUT/raw.arrow + duration.json with upstream's own save_prepped_dataset."""
    import soundfile as sf
    from f5_tts.model.utils import convert_char_to_pinyin
    from f5_tts.train.datasets.prepare_csv_wavs import save_prepped_dataset

    from voicetune.models.f5.data import dataset_rows

    train, val = dataset_rows(corpus)
    rows = sorted(train + val, key=lambda r: r.id)
    texts = convert_char_to_pinyin([r.text for r in rows], polyphone=True)
    result = [
        {"audio_path": str(r.wav.resolve()), "text": t, "duration": sf.info(r.wav).duration}
        for r, t in zip(rows, texts)
    ]
    durations = [r["duration"] for r in result]
    save_prepped_dataset(out_dir, result, durations, set(), is_finetune=False)
    return result, durations


def run_upstream_trainer(
    corpus: Path,
    out_dir: Path,
    *,
    updates: int = 2,
    model: str = "f5-tiny",
    batch_size: int = 4,
    batch_frames: int | None = None,
    max_samples: int = 64,
    lr: float = 1e-4,
    warmup_updates: int = 1,
    seed: int = 0,
    num_workers: int = 1,
    skip: int = 2,
    mixed_precision: str = "no",
) -> UpstreamRun:
    """Train `model` for exactly `updates` updates with upstream's Trainer; see the module docstring."""
    import torch
    from datasets import Dataset
    from f5_tts.model import CFM, DiT, Trainer
    from f5_tts.model.dataset import CustomDataset, DynamicBatchSampler
    from f5_tts.model.utils import get_tokenizer

    from voicetune.models.f5.spec import model_spec
    from voicetune.models.f5.vocab import UPSTREAM_VOCAB

    out_dir = Path(out_dir)
    data_dir, ckpt_dir = out_dir / "data", out_dir / "ckpts"
    if ckpt_dir.exists() and any(ckpt_dir.glob("*.pt")):
        raise FileExistsError(f"{ckpt_dir} has checkpoints: upstream's Trainer would resume from them")
    _, durations = prepare_upstream_dataset(Path(corpus), data_dir)
    raw = Dataset.from_file(str(data_dir / "raw.arrow"))
    spec = model_spec(model)
    if batch_frames is None:
        # One epoch of exactly `updates` full batches: cycle the clips (upstream shuffles them).
        order = [i % len(raw) for i in range(updates * batch_size)]
        train_dataset = CustomDataset(raw.select(order), durations=[durations[i] for i in order], **spec.mel)
        epochs, batch_type, batch_per_gpu, expected = 1, "sample", batch_size, updates
    else:
        train_dataset = CustomDataset(raw, durations=durations, **spec.mel)
        per_epoch = len(
            DynamicBatchSampler(
                torch.utils.data.SequentialSampler(train_dataset),
                batch_frames,
                max_samples=max_samples,
                random_seed=666,
            )
        )
        epochs, batch_type, batch_per_gpu = -(-updates // per_epoch), "frame", batch_frames
        expected = epochs * per_epoch
    frames = sum(train_dataset.get_frame_len(i) for i in range(len(train_dataset)))
    frames_per_update = frames * epochs / expected

    vocab_char_map, vocab_size = get_tokenizer(str(UPSTREAM_VOCAB), "custom")
    torch.manual_seed(seed)
    cfm = CFM(
        transformer=DiT(**spec.arch, text_num_embeds=vocab_size, mel_dim=spec.mel["n_mel_channels"]),
        mel_spec_kwargs=spec.mel,
        vocab_char_map=vocab_char_map,
    )
    trainer = Trainer(
        cfm,
        epochs=epochs,
        learning_rate=lr,
        num_warmup_updates=warmup_updates,
        save_per_updates=10**9,
        last_per_updates=10**9,
        checkpoint_path=str(ckpt_dir),
        batch_size_per_gpu=batch_per_gpu,
        batch_size_type=batch_type,
        max_samples=max_samples,
        grad_accumulation_steps=1,
        max_grad_norm=1.0,
        logger=None,
        log_samples=False,
        mel_spec_type=spec.mel["mel_spec_type"],
        accelerate_kwargs={"mixed_precision": mixed_precision},
    )
    stamps: list[float] = []
    trainer.optimizer.optimizer.register_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
    started = time.perf_counter()
    trainer.train(train_dataset, num_workers=num_workers, resumable_with_seed=666)
    total = time.perf_counter() - started
    skip = max(0, min(skip, len(stamps) - 2))
    measured = len(stamps) - 1 - skip
    rate = measured / (stamps[-1] - stamps[skip]) if measured > 0 else float("nan")
    return UpstreamRun(ckpt_dir / "model_last.pt", len(stamps), rate, measured, total, frames_per_update)


def upstream_checkpoint(corpus: Path, out_dir: Path, updates: int = 2) -> Path:
    """model_last.pt of `updates` updates of upstream's Trainer on f5-tiny (batches of 2 clips)."""
    return run_upstream_trainer(corpus, out_dir, updates=updates, batch_size=2).checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--model", default="f5-tiny")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batch-frames", type=int, default=None, help="frame batches (DynamicBatchSampler)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mixed-precision", default="no", help="no | bf16 | fp16 (accelerate's, on a GPU)")
    args = parser.parse_args(argv)
    run = run_upstream_trainer(
        args.corpus,
        args.out,
        updates=args.updates,
        model=args.model,
        batch_size=args.batch_size,
        batch_frames=args.batch_frames,
        lr=args.lr,
        num_workers=args.workers,
        mixed_precision=args.mixed_precision,
    )
    print(json.dumps({**asdict(run), "checkpoint": str(run.checkpoint)}))


if __name__ == "__main__":
    main()
