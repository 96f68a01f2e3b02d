"""Mel spectrogram -> waveform for F5-TTS samples: upstream's Vocos, or Griffin-Lim without it.

Vocos (charactr/vocos-mel-24khz, what upstream F5-TTS uses) is looked for, in order:
1. the path given to the adapter (`vocos=`), or the VOICETUNE_VOCOS environment variable: a folder
   with config.yaml and pytorch_model.bin (what `hf download charactr/vocos-mel-24khz` gives);
2. the local Hugging Face cache;
3. the Hub, unless HF_HUB_OFFLINE is set.
With none of these, Griffin-Lim inverts the vocos mel settings: intelligible but metallic, good
enough to hear whether training progresses. Which one is used is said once in the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from voicetune.errors import UsageError, VoicetuneError
from voicetune.models.hub import HubFile, cached_hub_file, download_hub_file, hub_offline, hub_reachable

log = logging.getLogger("voicetune.models.f5")

VOCOS_REPO = "charactr/vocos-mel-24khz"
VOCOS_FILES = ("config.yaml", "pytorch_model.bin")
VOCOS_ENV = "VOICETUNE_VOCOS"
GRIFFIN_LIM_ITERS = 32

Vocoder = Callable[[torch.Tensor], torch.Tensor]  # mel (b, n_mels, frames) -> audio (b, samples)


def find_vocos(path: str | os.PathLike | None) -> Path | None:
    """The folder holding Vocos' config.yaml and pytorch_model.bin, or None when there is none."""
    given = path or os.environ.get(VOCOS_ENV)
    if given:
        folder = Path(given).expanduser()
        if not all((folder / name).is_file() for name in VOCOS_FILES):
            source = "vocos setting" if path else VOCOS_ENV
            raise UsageError(
                f"{source} {folder}: needs config.yaml and pytorch_model.bin of {VOCOS_REPO} "
                f"(`hf download {VOCOS_REPO} --local-dir {folder}` on a machine with internet)"
            )
        return folder
    cached = [cached_hub_file(HubFile(VOCOS_REPO, name)) for name in VOCOS_FILES]
    if all(cached):
        return cached[0].parent
    if hub_offline() or not hub_reachable():
        return None
    try:
        files = [download_hub_file(HubFile(VOCOS_REPO, name), flag="vocoder") for name in VOCOS_FILES]
    except VoicetuneError as err:
        log.info("Vocos not available: %s", err)
        return None
    return files[0].parent


def load_vocos(folder: Path) -> Any:
    """Vocos as upstream's load_vocoder(is_local=True) builds it (weights read tensors-only)."""
    from vocos import Vocos

    vocoder = Vocos.from_hparams(str(folder / "config.yaml"))
    state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    vocoder.load_state_dict(state)
    return vocoder.eval()


class GriffinLim(torch.nn.Module):
    """Inverse of upstream's vocos mel (log of an HTK, unnormalized, magnitude mel) by Griffin-Lim."""

    def __init__(self, mel: dict[str, Any], n_iter: int = GRIFFIN_LIM_ITERS):
        super().__init__()
        import torchaudio

        n_fft, rate = int(mel["n_fft"]), int(mel["target_sample_rate"])
        filters = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, rate / 2, int(mel["n_mel_channels"]), rate, norm=None, mel_scale="htk"
        )  # (freqs, mels)
        self.register_buffer("inverse", torch.linalg.pinv(filters.T), persistent=False)  # (freqs, mels)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft,
            win_length=int(mel["win_length"]),
            hop_length=int(mel["hop_length"]),
            power=1.0,
            n_iter=n_iter,
            momentum=0.99,
            rand_init=False,
        )

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        magnitude_mel = log_mel.float().exp()
        inverse: torch.Tensor = self.inverse  # type: ignore[assignment]  # a buffer: Module.__getattr__ says Tensor | Module
        linear = torch.matmul(inverse.to(magnitude_mel.device), magnitude_mel).clamp(min=0.0)
        return self.griffin_lim(linear)


def make_vocoder(mel: dict[str, Any], vocos_path: str | os.PathLike | None) -> tuple[Vocoder, str]:
    """(mel -> audio function, description): Vocos when its weights can be found, else Griffin-Lim."""
    folder = find_vocos(vocos_path)
    if folder is not None:
        vocos = load_vocos(folder)
        return (lambda m: vocos.to(m.device).decode(m.float())), f"Vocos ({folder})"
    griffin_lim = GriffinLim(mel)
    return (lambda m: griffin_lim.to(m.device)(m)), (
        f"Griffin-Lim: no Vocos weights ({VOCOS_REPO}) found; samples will sound metallic. For upstream-quality "
        f"audio: `hf download {VOCOS_REPO} --local-dir DIR` (online, once), then set {VOCOS_ENV}=DIR"
    )
