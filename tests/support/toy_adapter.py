"""A small denoising model over real mel frames, for testing the model-agnostic training loop.

It is a test fixture, not a TTS model: fast enough that a test can train, kill and resume it many
times, yet it exercises everything the loop relies on — random noise drawn from torch's global
generator inside the loss (like F5's flow matching), dropout, an optimizer with state, variable
item lengths for frame batching, DataLoader workers, and samples.

Its size is set with VOICETUNE_TOY_HIDDEN (default 64), so tests can make checkpoints big enough
to catch a save in flight. VOICETUNE_TOY_SLOW_SAMPLES=FILE makes sample synthesis as slow as a
real model's (minutes of computing): FILE is written when it starts and FILE.done when it ends,
so a test can signal the run while samples are being synthesized. Its `synthesize` replays the
reference clip, so that milestone scoring (off unless VOICETUNE_EVALUATE=true) has speech to score.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from voicetune.models.base import BaseAdapter, DataSplits, SampleAudio, SamplePrompt

N_MELS = 32


class ToyDenoiser(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(N_MELS + 1, hidden),
            torch.nn.GELU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(hidden, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, N_MELS),
        )
        # A buffer, as real models have (F5's rotary frequencies): DistributedDataParallel
        # broadcasts buffers at every forward, a collective that tests of several processes need.
        self.register_buffer("out_scale", torch.ones(1), persistent=False)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        sigma = torch.rand(mel.shape[0], 1, 1, device=mel.device)
        noisy = mel + sigma * torch.randn_like(mel)
        pred = self.net(torch.cat([noisy, sigma.expand(-1, mel.shape[1], 1)], dim=-1)) * self.out_scale
        err = ((pred - mel) ** 2).mean(-1)
        return (err * mask).sum() / mask.sum()


class MelItems(torch.utils.data.Dataset):
    def __init__(self, mels: list[torch.Tensor]):
        self.mels = mels

    def __len__(self) -> int:
        return len(self.mels)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.mels[i]


class ToyAdapter(BaseAdapter):
    name = "toy"
    sample_rate = 16000

    def __init__(self, config=None):
        self.hidden = int(os.environ.get("VOICETUNE_TOY_HIDDEN", "64"))

    def default_settings(self):
        return {"lr": 3e-3, "warmup_updates": 5}

    def architecture(self):
        return {"kind": "toy-denoiser", "hidden": self.hidden, "n_mels": N_MELS}

    def build_model(self):
        return ToyDenoiser(self.hidden)

    def load_upstream_weights(self, model, path):
        from safetensors.torch import load_file

        self.load_checkpoint_weights(model, load_file(str(path)))

    def load_data(self, data_dir: Path, cache_dir: Path) -> DataSplits:
        rows = [line.split("|") for line in (data_dir / "metadata.csv").read_text().splitlines() if line.strip()]
        mel_fn = torchaudio.transforms.MelSpectrogram(self.sample_rate, n_fft=512, hop_length=256, n_mels=N_MELS)
        mels, digest = [], hashlib.sha256()
        for item_id, *_ in rows:
            audio, rate = sf.read(data_dir / "wavs" / f"{item_id}.wav", dtype="float32")
            digest.update(audio.tobytes())
            wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, self.sample_rate)
            mels.append(torch.log(mel_fn(wave).clamp(min=1e-5)).T.contiguous() / 5)
        val = max(1, len(mels) // 8)
        train_mels, val_mels = mels[val:], mels[:val]
        return DataSplits(
            MelItems(train_mels),
            MelItems(val_mels),
            [m.shape[0] for m in train_mels],
            [m.shape[0] for m in val_mels],
            digest.hexdigest()[:16],
            f"{len(train_mels)} train / {len(val_mels)} val clips",
        )

    def collate(self, items):
        longest = max(m.shape[0] for m in items)
        mel = torch.zeros(len(items), longest, N_MELS)
        mask = torch.zeros(len(items), longest)
        for i, m in enumerate(items):
            mel[i, : m.shape[0]] = m
            mask[i, : m.shape[0]] = 1
        return {"mel": mel, "mask": mask}

    def compute_loss(self, model, batch):
        return model(batch["mel"], batch["mask"])

    def sample_prompts(self, splits, extra_texts, limit):
        mel = splits.val[0].numpy()
        return [SamplePrompt("val_0000", "denoise", mel, "")][:limit] + [
            SamplePrompt(f"text_{i}", text, mel, "") for i, text in enumerate(extra_texts, start=1)
        ]

    def synthesize_samples(self, model, prompts):
        slow = os.environ.get("VOICETUNE_TOY_SLOW_SAMPLES")
        if slow:
            Path(slow).write_text("synthesizing\n")
            busy = torch.randn(256, 256)
            for _ in range(200_000):  # minutes of real work, as an F5 model's sampling on CPU
                busy = torch.tanh(busy @ busy) / 16
            Path(f"{slow}.done").write_text("done\n")
        out = []
        for p in prompts:
            mel = torch.from_numpy(p.ref_audio)[None]
            noisy = mel + 0.5 * torch.randn_like(mel)
            pred = model.net(torch.cat([noisy, torch.full((1, mel.shape[1], 1), 0.5)], dim=-1))
            tone = np.sin(np.linspace(0, 440 * 2 * np.pi, self.sample_rate)).astype(np.float32) * 0.1
            out.append(SampleAudio(p.name, p.text, self.sample_rate, tone, tone, {"mel": pred[0].numpy()}))
        return out

    def synthesize(self, model, text, ref_audio, ref_text, speed=1.0, language=None):
        """Milestone scoring's synthesis: the toy cannot speak, so it replays the reference clip (real
        speech in the real voice), which the scorers can transcribe and compare."""
        return np.asarray(ref_audio, dtype=np.float32).copy()

    def export(self, model, out_dir, fmt):
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(dict(model.state_dict()), str(out_dir / "model.safetensors"))
        return [out_dir / "model.safetensors"]


def create(config=None) -> ToyAdapter:
    return ToyAdapter(config)
