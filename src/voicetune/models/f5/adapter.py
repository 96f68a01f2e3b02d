"""The F5-TTS model adapter: upstream's CFM with the DiT backbone, trained and sampled as upstream does.

What is upstream's and what is voicetune's:
- The model is `f5_tts.model.CFM(transformer=DiT(...))` built as upstream's `load_model` builds it;
  the loss is its forward called as upstream's Trainer calls it.
- Data, the vocabulary and the weight files: see data.py, vocab.py and weights.py.
- Samples port upstream's `infer_batch_process` (reference loudness, duration from the ratio of
  text lengths, EPSS steps, cfg 2, sway -1) onto voicetune's vocabulary, and decode with Vocos or
  Griffin-Lim (vocoder.py).

Exact resume: CFM.forward draws its noise, times and masks from torch's global generator, but
its classifier-free-guidance drops from Python's `random.random()`. `compute_loss` seeds Python's
generator from torch's for the call and restores it afterwards, so the loss consumes torch's
generator only and leaves Python's untouched.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voicetune.console import say as console_say
from voicetune.console import say_once
from voicetune.data.ljspeech import load_audio
from voicetune.errors import CheckpointError, UsageError
from voicetune.models.base import (
    BaseAdapter,
    DataSplits,
    SampleAudio,
    SamplePrompt,
    SizeEstimate,
    TransformerShape,
    cross_fade,
)
from voicetune.models.f5 import data as f5_data
from voicetune.models.f5.spec import RUNTIME_ARCH_FIELDS, F5Spec, model_spec
from voicetune.models.f5.vocab import Vocabulary, read_vocab
from voicetune.models.f5.weights import (
    TEXT_EMBED_KEY,
    export_f5,
    export_state_dict,
    fit_upstream_weights,
    read_upstream_weights,
)
from voicetune.models.hub import resolve_file
from voicetune.models.lora import LoraSettings, has_lora, merge_lora

log = logging.getLogger("voicetune.models.f5")

NFE_ENV = "VOICETUNE_F5_NFE_STEPS"
# upstream inference defaults (f5_tts.infer.utils_infer)
TARGET_RMS = 0.1
CFG_STRENGTH = 2.0
SWAY_SAMPLING_COEF = -1.0
CROSS_FADE_SECONDS = 0.15
# The DiT blocks' attention (to_q, to_k, to_v, to_out.0) and feed-forward (ff.ff.0.0, ff.ff.2).
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.ff.0.0", "ff.ff.2")
LORA_LR = 1e-4
MAX_REFERENCE_SECONDS = 12.0  # upstream clips reference audio to ~12 s


def chunk_text(text: str, max_chars: int = 135) -> list[str]:
    """Upstream's `f5_tts.infer.utils_infer.chunk_text`, line for line: sentences (split after
    punctuation) packed into chunks of at most `max_chars` bytes. A copy, not an import: importing
    utils_infer costs about 2 s (transformers, vocos, pydub, matplotlib) in every process that
    synthesizes; tests/models/test_f5_adapter.py checks that both chunk alike."""
    chunks = []
    current_chunk = ""
    sentences = re.split(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])", text)
    for sentence in sentences:
        if not sentence:
            continue
        if len(current_chunk.encode("utf-8")) + len(sentence.encode("utf-8")) <= max_chars:
            current_chunk += sentence + " " if sentence and len(sentence[-1].encode("utf-8")) == 1 else sentence
        else:
            if current_chunk:
                chunks.append(current_chunk.strip())
            current_chunk = sentence + " " if sentence and len(sentence[-1].encode("utf-8")) == 1 else sentence
    if current_chunk:
        chunks.append(current_chunk.strip())
    return chunks


def say(message: str, level: int = logging.INFO) -> None:
    console_say(message, level, log.name)


class F5Adapter(BaseAdapter):
    """F5-TTS v1 (CFM + DiT) for voicetune's training loop. See the module docstring."""

    sample_rate = 24000
    export_format = "f5"

    def __init__(
        self, config: Any, spec: F5Spec, *, vocos: str | os.PathLike | None = None, nfe_steps: int | None = None
    ):
        self.config = config
        self.spec = spec
        self.name = spec.name
        self.sample_rate = int(spec.mel["target_sample_rate"])
        self.hop_length = int(spec.mel["hop_length"])
        # Settings TrainConfig may not have: read when it does, else arguments, env, defaults.
        self.vocos_path = vocos or getattr(config, "vocoder", None)
        self.nfe_steps = int(
            nfe_steps or getattr(config, "sample_steps", None) or os.environ.get(NFE_ENV) or spec.nfe_steps
        )
        self._vocab: Vocabulary | None = None
        self._vocoder = None
        self.lora = LoraSettings.from_config(config, DEFAULT_LORA_TARGETS)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started with "spawn" receive the adapter (collate is its method):
        # the vocoder (a closure) stays behind and is made again where it is needed.
        return {**self.__dict__, "_vocoder": None}

    # ---- settings and shapes ------------------------------------------------------------------

    def size_estimate(self) -> SizeEstimate:
        return SIZE_ESTIMATES[self.name]

    def default_settings(self) -> dict[str, Any]:
        # LoRA adapters start at zero and learn at higher rates than full fine-tuning (1e-5).
        lr = max(self.spec.default_lr, LORA_LR) if self.lora else self.spec.default_lr
        defaults: dict[str, Any] = {
            "lr": lr,
            "warmup_updates": self.spec.default_warmup,
            "batch_frames": self.spec.default_batch_frames,
        }
        if self.spec.default_pretrained:
            defaults["pretrained"] = self.spec.default_pretrained
        return defaults

    @property
    def pretrained(self) -> str | None:
        """--pretrained, else the model's default (f5-v1-base: the released weights); 'none': none."""
        value = getattr(self.config, "pretrained", None) or self.spec.default_pretrained
        return None if value is None or str(value).lower() == "none" else str(value)

    def weights_source(self) -> str | None:
        return self.pretrained

    def without_pretrained(self) -> F5Adapter:
        """The same DiT and vocabulary (the package's vocab.txt, or --vocab, plus the dataset's
        characters), weights left as initialized: nothing is read or downloaded."""
        plain = F5Adapter(
            self.config.model_copy(update={"pretrained": "none"}),
            self.spec,
            vocos=self.vocos_path,
            nfe_steps=self.nfe_steps,
        )
        plain._vocab = self.vocabulary
        return plain

    @property
    def vocabulary(self) -> Vocabulary:
        """--vocab (default: upstream's vocab.txt) plus the characters of --data it lacks."""
        if self._vocab is None:
            data = getattr(self.config, "data", None)
            texts: list[str] = []
            if data is not None and Path(data).is_dir():
                texts = f5_data.dataset_texts(Path(data))
            else:
                log.info("no dataset folder (%s): vocabulary without dataset characters", data)
            self._set_vocabulary(texts)
        assert self._vocab is not None  # _set_vocabulary sets it
        return self._vocab

    def _set_vocabulary(self, texts: list[str]) -> None:
        base = read_vocab(getattr(self.config, "vocab", None))
        self._vocab = base.extended(texts)
        if self._vocab.added:
            say(
                f"vocabulary: {len(self._vocab.added)} characters of the dataset are not in "
                f"{'upstream vocab.txt' if base.source == 'upstream' else base.source}; added as new tokens "
                f"{' '.join(repr(t) for t in self._vocab.added)} ({len(base)} -> {len(self._vocab)} tokens; "
                "the export includes the extended vocab.txt)"
            )

    def architecture(self) -> dict[str, Any]:
        vocab = self.vocabulary
        arch = {k: v for k, v in self.spec.arch.items() if k not in RUNTIME_ARCH_FIELDS}
        return {
            "model": self.name,
            "backbone": self.spec.backbone,
            **arch,
            "mel": self.spec.mel,
            "tokenizer": vocab.tokenizer,
            "vocab_size": len(vocab),
            "vocab_sha256": vocab.sha256,
            "vocab_added": list(vocab.added),
            "lora": self.lora.describe() if self.lora else None,
        }

    def memory_shape(self) -> TransformerShape:
        """The DiT for voicetune's memory plan: a batch is counted in mel frames, one token each
        (text is padded to the mel length); the text ConvNeXt blocks and the input and output
        projections count as extra layers, scaled by their width."""
        arch = self.spec.arch
        extra = arch.get("conv_layers", 0) * arch.get("text_dim", arch["dim"]) / arch["dim"] + 1
        return TransformerShape(
            layers=int(arch["depth"]),
            width=int(arch["dim"]),
            heads=int(arch["heads"]),
            ff_mult=float(arch.get("ff_mult", 4)),
            batch_unit="frames",
            tokens_per_unit=1.0,
            extra_layers=extra,
        )

    # ---- model and weights --------------------------------------------------------------------

    def build_model(self) -> torch.nn.Module:
        """CFM(DiT) on CPU in fp32, as upstream's load_model builds it, with --pretrained loaded (a
        LoRA checkpoint holds only the adapters: the base weights always come from there)."""
        import f5_tts.model as f5_model

        vocab = self.vocabulary
        backbone = getattr(f5_model, self.spec.backbone)
        arch = dict(self.spec.arch)
        if getattr(self.config, "gradient_checkpointing", False):
            arch["checkpoint_activations"] = True  # upstream DiT's own lever: each block recomputed in backward
        model = f5_model.CFM(
            transformer=backbone(**arch, text_num_embeds=len(vocab), mel_dim=self.spec.mel["n_mel_channels"]),
            mel_spec_kwargs=self.spec.mel,
            odeint_kwargs={"method": "euler"},
            vocab_char_map=vocab.char_map,
        )
        if self.pretrained:
            self.load_upstream_weights(model, self.pretrained)
        if self.lora:
            if not self.pretrained:
                log.warning(
                    "LoRA without --pretrained: the adapters train on top of random weights (a fresh DiT's "
                    "zero-initialized gates pass them no gradient); give --pretrained"
                )
            # After the pretrained weights (their keys are the plain layout) and before a checkpoint's.
            self.lora.apply(model)
        return model

    def load_upstream_weights(
        self, model: torch.nn.Module, path: str | os.PathLike, flag: str = "--pretrained"
    ) -> None:
        """Released .safetensors or upstream Trainer .pt (local path or hf://), EMA weights preferred;
        the text embedding grows for tokens the vocabulary added."""
        local = resolve_file(path, flag)
        weights = read_upstream_weights(local)
        grown = fit_upstream_weights(model, weights, local, self.vocabulary, self.name)
        grew = f"; text embedding grown by {grown} rows for the added tokens" if grown else ""
        say(f"loaded the {weights.description} from {local}{grew}")

    def load_checkpoint_weights(self, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
        embed, expected = weights.get(TEXT_EMBED_KEY), model.state_dict().get(TEXT_EMBED_KEY)
        if embed is not None and expected is not None and embed.shape != expected.shape:
            raise CheckpointError(
                f"the checkpoint's vocabulary has {embed.shape[0] - 1} tokens, this model's {expected.shape[0] - 1}: "
                f"the dataset folder ({getattr(self.config, 'data', None)}) whose characters extended it is "
                "missing or changed; pass --vocab with the run's exported vocab.txt, or the original --data"
            )
        super().load_checkpoint_weights(model, weights)

    # ---- data ---------------------------------------------------------------------------------

    def load_data(self, data_dir: Path, cache_dir: Path) -> DataSplits:
        train_rows, val_rows = f5_data.dataset_rows(Path(data_dir))
        if not train_rows:
            raise UsageError(
                f"--data {data_dir}: no training clips (all {len(val_rows)} went to validation); add clips"
            )
        texts = [r.text for r in train_rows + val_rows]
        if self._vocab is None:
            self._set_vocabulary(texts)
        else:
            unknown = set().union(*(self._vocab.unknown(t) for t in texts))
            if unknown:
                say(
                    f"{len(unknown)} characters of {data_dir} are not in the model's vocabulary and are read as "
                    f"spaces: {' '.join(sorted(map(repr, unknown)))}",
                    logging.WARNING,
                )
        cache = f5_data.MelCache(Path(cache_dir), self.spec.mel)
        skipped: list[str] = []
        train = f5_data.build_clips(train_rows, cache, self._vocab.encode, skipped)
        val = f5_data.build_clips(val_rows, cache, self._vocab.encode, skipped)
        if skipped:
            say(
                f"{len(skipped)} clips are outside {f5_data.MIN_SECONDS}-{f5_data.MAX_SECONDS:.0f} s and are not used "
                f"(as upstream): {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}",
                logging.WARNING,
            )
        if not train:
            raise UsageError(
                f"--data {data_dir}: no training clip between {f5_data.MIN_SECONDS} and "
                f"{f5_data.MAX_SECONDS:.0f} seconds"
            )
        log.info(
            "mels: %d computed, %d from the cache %s", cache.computed, len(train) + len(val) - cache.computed, cache.dir
        )
        hours = sum(c.frames for c in train + val) * self.hop_length / self.sample_rate / 3600
        return DataSplits(
            train=f5_data.MelTextDataset(train),
            val=f5_data.MelTextDataset(val),
            train_lengths=[c.frames for c in train],
            val_lengths=[c.frames for c in val],
            fingerprint=f5_data.fingerprint(train, val),
            description=f"{len(train)} train / {len(val)} val clips, {hours:.2f} h"
            + (f", {len(skipped)} skipped" if skipped else ""),
        )

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return f5_data.collate(items)

    # ---- loss ---------------------------------------------------------------------------------

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Upstream Trainer's call: model(mel (b, frames, mels), text=..., lens=..., noise_scheduler=None)."""
        mel = batch["mel"].permute(0, 2, 1)
        python_seed = int(torch.randint(0, 2**62, (1,)).item())
        saved = random.getstate()
        random.seed(python_seed)  # CFM's cfg drops use random.random(): feed it from torch's generator
        try:
            loss, _cond, _pred = model(mel, text=batch["text"], lens=batch["mel_lengths"], noise_scheduler=None)
        finally:
            random.setstate(saved)
        return loss

    # ---- samples and synthesis ----------------------------------------------------------------

    def sample_prompts(self, splits: DataSplits, extra_texts: Iterable[str], limit: int) -> list[SamplePrompt]:
        """`limit` validation clips (in id order) spoken in the voice of one fixed reference clip (the
        first of at most 12 s among the validation clips, or among the training clips when validation
        has a single clip, so that a sample never just repeats its own reference), plus each extra
        text in that voice."""
        val = sorted(getattr(splits.val, "clips", []), key=lambda c: c.id)
        train = sorted(getattr(splits.train, "clips", []), key=lambda c: c.id)
        pool = val or train
        if not pool:
            return []
        voices = val if len(val) >= 2 or not train else train
        max_frames = MAX_REFERENCE_SECONDS * self.sample_rate / self.hop_length
        ref = next((c for c in voices if c.frames <= max_frames), min(voices, key=lambda c: c.frames))
        ref_audio = load_audio(ref.wav, self.sample_rate, clip=False)
        targets = [c for c in pool if c is not ref][:limit] or ([ref] if limit > 0 else [])
        prompts = [
            SamplePrompt(f"val_{i:04d}", c.text, ref_audio, ref.text, load_audio(c.wav, self.sample_rate, clip=False))
            for i, c in enumerate(targets)
        ]
        prompts += [
            SamplePrompt(f"text_{i}", text, ref_audio, ref.text)
            for i, text in enumerate((t for t in extra_texts if t.strip()), start=1)
        ]
        return prompts

    def vocoder(self):
        """Vocos when its weights are found, else Griffin-Lim; resolved once (and said once)."""
        if self._vocoder is None:
            from voicetune.models.f5.vocoder import make_vocoder

            self._vocoder, description = make_vocoder(self.spec.mel, self.vocos_path)
            # On the console too (train and synthesize): metallic audio must not look like a bad model.
            say_once(
                f"vocoder: {description}",
                logging.WARNING if description.startswith("Griffin") else logging.INFO,
                log.name,
            )
        return self._vocoder

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, text: str, ref_audio: np.ndarray, ref_text: str, speed: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One chunk as upstream's infer_batch_process does it: (audio at 24 kHz, generated mel)."""
        device = next(model.parameters()).device
        audio = torch.as_tensor(np.asarray(ref_audio, dtype=np.float32)).reshape(1, -1)
        rms = float(audio.square().mean().sqrt())
        if 0 < rms < TARGET_RMS:
            audio = audio * TARGET_RMS / rms
        if len(ref_text[-1].encode("utf-8")) == 1:
            ref_text = ref_text + " "
        local_speed = 0.3 if len(text.encode("utf-8")) < 10 else speed
        ref_frames = audio.shape[-1] // self.hop_length
        duration = ref_frames + int(
            ref_frames / len(ref_text.encode("utf-8")) * len(text.encode("utf-8")) / local_speed
        )
        unknown = self.vocabulary.unknown(text)
        if unknown:
            log.warning("characters not in the vocabulary are read as spaces: %s", " ".join(sorted(map(repr, unknown))))
        tokens = torch.tensor([self.vocabulary.encode(ref_text + text)], dtype=torch.long, device=device)
        was_training = model.training
        try:
            with self.speaking(model):  # a sampling stopped mid-way leaves no text cache behind
                generated, _ = model.sample(
                    cond=audio.to(device),
                    text=tokens,
                    duration=duration,
                    steps=self.nfe_steps,
                    cfg_strength=CFG_STRENGTH,
                    sway_sampling_coef=SWAY_SAMPLING_COEF,
                )
        finally:
            model.train(was_training)
        mel = generated.float()[:, ref_frames:, :].permute(0, 2, 1)
        wave = self.vocoder()(mel)
        if 0 < rms < TARGET_RMS:
            wave = wave * rms / TARGET_RMS
        return wave.squeeze().float().cpu().numpy(), mel[0].cpu().numpy()

    def synthesize_samples(self, model: torch.nn.Module, prompts: list[SamplePrompt]) -> list[SampleAudio]:
        """Each prompt spoken by `model`; `reference` is the real recording of the text when there is one,
        else the voice prompt; extras['mel'] is the generated mel (n_mels, frames)."""
        samples = []
        for prompt in prompts:
            audio, mel = self.generate(model, prompt.text, prompt.ref_audio, prompt.ref_text)
            reference = prompt.target_audio if prompt.target_audio is not None else prompt.ref_audio
            samples.append(
                SampleAudio(
                    prompt.name,
                    prompt.text,
                    self.sample_rate,
                    audio.astype(np.float32),
                    reference=reference,
                    extras={"mel": mel, "ref_text": prompt.ref_text},
                )
            )
        return samples

    cross_fade_seconds = CROSS_FADE_SECONDS
    needs_ref_text = True  # the reference's transcript is part of the model's input

    def text_chunks(
        self, text: str, ref_audio: np.ndarray, ref_text: str | None, speed: float = 1.0, language: str | None = None
    ) -> list[str]:
        """Upstream's infer_process: sentences packed into chunks whose length in bytes fits the ~22 s
        a chunk may take (reference included), at the reference's rate of speech."""
        if not ref_text or not ref_text.strip():
            raise UsageError("--ref-text: F5-TTS needs the words spoken in --ref; give them with --ref-text")
        ref_seconds = len(ref_audio) / self.sample_rate
        max_chars = int(len(ref_text.encode("utf-8")) / ref_seconds * max(22 - ref_seconds, 2) * speed)
        return [c for c in chunk_text(text, max_chars) if c.strip()]

    def synthesize_chunk(
        self,
        model: torch.nn.Module,
        chunk: str,
        ref_audio: np.ndarray,
        ref_text: str | None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        return self.generate(model, chunk, ref_audio, ref_text or "", speed)[0]

    def unsayable(self, text: str, language: str | None = None) -> set[str]:
        return self.vocabulary.unknown(text)

    def reset(self, model: torch.nn.Module) -> None:
        """Upstream's DiT caches the text embedding of the chunk being sampled (per thread) and
        clears it only when sampling ends normally (CFM.sample's last line): a sampling stopped
        mid-way left it for the next chunk, of another length (a tensor-size error on every later
        request). Cleared after every generation, however it ended."""
        transformer = getattr(model, "transformer", None)
        if transformer is not None and hasattr(transformer, "clear_cache"):
            transformer.clear_cache()

    def synthesize(
        self,
        model: torch.nn.Module,
        text: str,
        ref_audio: np.ndarray,
        ref_text: str | None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """Speak `text` in the voice of `ref_audio`: chunked and cross-faded as upstream's infer_process."""
        waves = [
            self.synthesize_chunk(model, chunk, ref_audio, ref_text, speed)
            for chunk in self.text_chunks(text, ref_audio, ref_text, speed)
        ]
        return cross_fade(waves, int(CROSS_FADE_SECONDS * self.sample_rate))

    # ---- export -------------------------------------------------------------------------------

    def export(self, model: torch.nn.Module, out_dir: Path, fmt: str) -> list[Path]:
        """fmt 'f5': model.safetensors + vocab.txt + model.yaml for upstream's inference (and its
        Trainer, as pretrained_*.safetensors); 'safetensors': the plain state dict + vocab.txt."""
        if has_lora(model):
            model = merge_lora(copy.deepcopy(model))  # an export is a plain model, as upstream reads it
        if fmt == "f5":
            return export_f5(model, self.spec, self.vocabulary, Path(out_dir))
        if fmt == "safetensors":
            return export_state_dict(model, self.spec, self.vocabulary, Path(out_dir))
        raise UsageError(f"--format {fmt}: {self.name} exports as f5 (upstream F5-TTS files) or safetensors")


# The studio's auto settings: f5-tiny as built here, the others as upstream publishes them (F5-TTS
# v1 Base 336 M), all trainable. A unit of batch is a mel frame (bf16 activations, measured on
# upstream's recipes: F5 v1 Base trains 38 400 frames on 80 GB).
SIZE_ESTIMATES = {
    "f5-tiny": SizeEstimate(1_297_572, 1_297_572, 0.5, 1 / 8000, "frames"),
    "f5-v1-small": SizeEstimate(158_000_000, 158_000_000, 3.0, 1 / 900, "frames"),
    "f5-v1-base": SizeEstimate(336_000_000, 336_000_000, 6.0, 1 / 500, "frames"),
}


def create_adapter(config: Any) -> F5Adapter:
    """Registry factory: the adapter for config.model (f5-tiny, f5-v1-small, f5-v1-base)."""
    try:
        spec = model_spec(config.model)
    except KeyError:
        raise UsageError(
            f"--model {config.model}: not an F5-TTS model; use f5-tiny, f5-v1-small or f5-v1-base"
        ) from None
    return F5Adapter(config, spec)
