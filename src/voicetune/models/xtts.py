"""XTTS-v2 on coqui-tts: fine-tune the GPT the way upstream's recipe (GPTTrainer) does.

    xtts-v2    coqui/XTTS-v2 (30-layer GPT, 1024 wide); --pretrained defaults to the hub repo
    xtts-tiny  the same classes at toy sizes (2-layer GPT, 64 wide, a 254-code DVAE), for tests and
               demos on a CPU; with no --pretrained its fixed parts are built in (see xtts_files)

What is trained and how (gpt_trainer.py + dataset.py of coqui-tts):
- Audio at 22.05 kHz becomes DVAE codes (mel at hop 256, two stride-2 convs: one code per 1024
  samples). They are computed once per clip and cached in RUN/cache keyed by content.
- Text becomes tokens with XTTS's tokenizer ("[en]the birch canoe..."), language from --language.
- The GPT's loss is upstream's: cross-entropy over the text (weight 0.01) and the audio codes
  (weight 1), conditioned on a 3 to 6 s slice of another clip of the speaker, turned into a mel
  and then latents by the GPT's own conditioning encoder and perceiver resampler.
- Only the GPT learns (all of it, or LoRA adapters on its attention and feed-forward layers); the
  DVAE, the HiFi-GAN decoder and the speaker encoder stay as they are.

Resume exactness: the conditioning slice (which other clip of the batch, where, how long) is drawn
inside the model's forward from torch's global generator, which the loop saves and restores;
datasets and collate are pure functions of the items.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import logging
import math
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from voicetune import fsio
from voicetune.console import say
from voicetune.errors import CheckpointError, UsageError
from voicetune.models import xtts_files as files
from voicetune.models import xtts_language
from voicetune.models.base import (
    BaseAdapter,
    DataSplits,
    SampleAudio,
    SamplePrompt,
    SizeEstimate,
    TransformerShape,
    voice_swap_prompts,
)
from voicetune.models.lora import (
    LoraSettings,
    has_lora,
    lora_state_dict,
    merge_lora,
    to_injected_keys,
)
from voicetune.models.registry import XTTS_MAX_CLIP_SECONDS

log = logging.getLogger("voicetune.models")

GPT_SAMPLE_RATE = 22050  # the DVAE's and the conditioning encoder's rate (XttsAudioConfig.sample_rate)
# The GPT's attention and feed-forward projections (GPT-2 blocks: attn.c_attn, attn.c_proj,
# mlp.c_fc, mlp.c_proj). No other XTTS layer has these names.
DEFAULT_LORA_TARGETS = ("c_attn", "c_proj", "c_fc")


@dataclass(frozen=True)
class RecipeSettings:
    """Upstream's GPTArgs that shape training (TTS/tts/layers/xtts/trainer/gpt_trainer.py)."""

    min_conditioning_length: int = 66150  # samples at 22.05 kHz: 3 s
    max_conditioning_length: int = 132300  # 6 s
    max_wav_length: int = 255995  # ~11.6 s; longer clips are left out
    min_wav_length: int = 11025  # 0.5 s (dataset.py drops "ultra short clips")
    max_text_length: int = 200  # tokens
    text_loss_weight: float = 0.01  # gpt_loss_text_ce_weight
    mel_loss_weight: float = 1.0  # gpt_loss_mel_ce_weight


# Highest speaking time per character (s) for capping generation: about three times a normal
# rate, so runaway generation stops while real speech never hits it.
SECONDS_PER_CHAR = {"zh": 0.6, "ja": 0.6, "ko": 0.4}
DEFAULT_SECONDS_PER_CHAR = 0.2


# ---- the trained module ----------------------------------------------------------------------


class XttsGptTrainer(torch.nn.Module):
    """coqui's Xtts plus upstream GPTTrainer's loss: `forward(**batch)` returns the training loss.

    The loop calls it (possibly wrapped in DDP), so everything the loss needs happens here,
    including the conditioning mels, computed on the batch's device as upstream does.
    """

    def __init__(self, xtts: torch.nn.Module, recipe: RecipeSettings):
        super().__init__()
        self.xtts = xtts
        self.recipe = recipe

    def forward(
        self,
        text_inputs: torch.Tensor,
        text_lengths: torch.Tensor,
        audio_codes: torch.Tensor,
        wav_lengths: torch.Tensor,
        wavs: torch.Tensor,
    ) -> torch.Tensor:
        cond_mels = self.conditioning_mels(wavs, wav_lengths)
        loss_text, loss_mel, _ = self.xtts.gpt(
            text_inputs, text_lengths, audio_codes, wav_lengths, cond_mels=cond_mels, cond_idxs=None, cond_lens=None
        )
        return loss_text * self.recipe.text_loss_weight + loss_mel * self.recipe.mel_loss_weight

    @torch.no_grad()
    def conditioning_mels(self, wavs: torch.Tensor, wav_lengths: torch.Tensor) -> torch.Tensor:
        """(B, 1, 80, frames): for each item a random slice of another clip of the batch.

        Upstream's get_prompt_slice: a length drawn in [min, max] conditioning length (half the
        clip when the clip is shorter), at a random start. Upstream slices the item's own clip and
        masks that stretch out of the loss; slicing another clip of the same speaker needs no mask
        and cannot be copied. A batch of one uses its own clip. All draws come from torch's global
        generator (on the CPU), in a fixed order.
        """
        from TTS.tts.models.xtts import wav_to_mel_cloning

        batch = wavs.shape[0]
        lengths = wav_lengths.detach().cpu().long()
        offsets = torch.randint(1, batch, (batch,)) if batch > 1 else torch.zeros(1, dtype=torch.long)
        sources = (torch.arange(batch) + offsets) % batch
        wanted = torch.randint(self.recipe.min_conditioning_length, self.recipe.max_conditioning_length + 1, (batch,))
        source_lengths = lengths[sources]
        takes = torch.where(wanted > source_lengths, source_lengths // 2, wanted).clamp(min=1)
        starts = (torch.rand(batch) * (source_lengths - takes + 1).double()).long()
        clips = torch.zeros(batch, int(takes.max()), dtype=torch.float32, device=wavs.device)
        flat = wavs.reshape(batch, -1)
        for i in range(batch):
            start, take = int(starts[i]), int(takes[i])
            clips[i, :take] = flat[int(sources[i]), start : start + take].float()
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            mel = wav_to_mel_cloning(
                clips,
                mel_norms=self.xtts.mel_stats.float(),
                device=wavs.device,
                **style_mel_settings(bool(self.xtts.args.gpt_use_perceiver_resampler)),
            )
        return mel.unsqueeze(1)


def style_mel_settings(perceiver: bool) -> dict[str, int]:
    """The conditioning mel of upstream's GPTTrainer (and of Xtts.get_gpt_cond_latents)."""
    if perceiver:
        return {"n_fft": 2048, "hop_length": 256, "win_length": 1024}
    return {"n_fft": 4096, "hop_length": 1024, "win_length": 4096}


# ---- data --------------------------------------------------------------------------------------


class XttsItems(torch.utils.data.Dataset):
    """Clips with their text tokens and DVAE codes; the 22.05 kHz audio is read when an item is."""

    def __init__(self, paths: list[Path], texts: list[str], tokens: list[torch.Tensor], codes: list[torch.Tensor]):
        self.paths, self.texts, self.tokens, self.codes = paths, texts, tokens, codes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from voicetune.data.ljspeech import load_audio

        wav = torch.from_numpy(load_audio(self.paths[index], GPT_SAMPLE_RATE))
        return {"text": self.tokens[index], "codes": self.codes[index], "wav": wav}

    def audio(self, index: int, sample_rate: int) -> np.ndarray:
        from voicetune.data.ljspeech import load_audio

        return load_audio(self.paths[index], sample_rate)


def collate_items(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad to the longest item (text with 0, codes with 0, audio with silence); the GPT masks by length."""

    def pad(key: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([item[key].shape[-1] for item in items], dtype=torch.long)
        out = torch.zeros(len(items), int(lengths.max()), dtype=dtype)
        for i, item in enumerate(items):
            out[i, : lengths[i]] = item[key]
        return out, lengths

    text, text_lengths = pad("text", torch.long)
    codes, _ = pad("codes", torch.long)
    wavs, wav_lengths = pad("wav", torch.float32)
    return {
        "text_inputs": text,
        "text_lengths": text_lengths,
        "audio_codes": codes,
        "wav_lengths": wav_lengths,
        "wavs": wavs,
    }


# ---- the adapter -------------------------------------------------------------------------------


class XttsAdapter(BaseAdapter):
    sample_rate = 24000  # HiFi-GAN's output (XttsAudioConfig.output_sample_rate)
    export_format = "xtts"  # RUN/ready/ is the folder upstream Xtts.load_checkpoint reads

    def __init__(self, config: Any, name: str, default_pretrained: str | None):
        self.name = name
        self.pretrained = getattr(config, "pretrained", None) or default_pretrained
        self.language = getattr(config, "language", None) or "en"
        self.seed = int(getattr(config, "seed", 0) or 0)
        self.lora = LoraSettings.from_config(config, DEFAULT_LORA_TARGETS)
        self.recipe = RecipeSettings()
        self.gradient_checkpointing = bool(getattr(config, "gradient_checkpointing", False))
        if getattr(config, "vocab", None):
            raise UsageError("--vocab is for F5-TTS; XTTS uses the vocab.json of its --pretrained folder")
        self.data = getattr(config, "data", None)
        self._parts: files.XttsParts | None = None
        # A language outside the model's: what its vocab.json gained (xtts_language), learnt from
        # --data at a run's start and kept in every checkpoint's architecture from then on.
        self.language_extension: dict[str, Any] | None = None
        self.base_text_tokens: int | None = None
        # The synthesis engine's models (fixed weights): a reference clip's conditioning latents
        # and speaker embedding, per model, computed once for all the chunks of all requests.
        self.kept_conditioning: weakref.WeakKeyDictionary[torch.nn.Module, OrderedDict] = weakref.WeakKeyDictionary()

    # -- settings and shapes

    @property
    def parts(self) -> files.XttsParts:
        """The fixed parts (tokenizer, DVAE, mel statistics, config), resolved once."""
        if self._parts is None:
            if self.pretrained:
                parts = files.pretrained_parts(files.resolve_pretrained(self.pretrained))
            else:
                parts = files.tiny_parts()
            self.base_text_tokens = parts.tokenizer().get_number_tokens()
            if not speaks(parts.config, self.language):
                parts = self.extended_parts(parts)
            if not xtts_language.is_known_to_coqui(self.language):
                xtts_language.register(self.language)  # coqui's tokenizer refuses codes outside its list
            self.sample_rate = int(parts.config.model_args.output_sample_rate)
            self._parts = parts
        return self._parts

    def use_saved_architecture(self, architecture: dict[str, Any]) -> None:
        extension = architecture.get("language_extension")
        if extension and extension != self.language_extension:
            self.language_extension = extension
            self._parts = None

    def extended_parts(self, parts: files.XttsParts) -> files.XttsParts:
        """`parts` with the vocab.json extended for --language and the code added to the config's
        languages: the extension of the checkpoint being resumed or used, else learnt from --data."""
        code = xtts_language.check_code(self.language)
        extension = self.language_extension
        if extension is None or extension.get("language") != code:
            texts = self.dataset_texts(parts.config.languages)
            extension = xtts_language.learn_extension(parts.vocab_json, code, texts)
            say(
                f"XTTS tokenizer: --language {code} is new to {self.name}; added [{code}] and "
                f"{len(extension['tokens'])} tokens learnt from the dataset's text ({self.base_text_tokens} -> "
                f"{self.base_text_tokens + 1 + len(extension['tokens'])}); the GPT's text embedding and head grow "
                "to match, and the export holds the extended vocab.json",
                logging.INFO,
                log.name,
            )
        self.language_extension = extension
        config = copy.deepcopy(parts.config)
        config.languages = [*config.languages, code]
        return dataclasses.replace(
            parts, config=config, vocab_json=xtts_language.apply_extension(parts.vocab_json, extension)
        )

    def dataset_texts(self, languages: list[str]) -> list[str]:
        from voicetune.data.ljspeech import read_ljspeech

        if not self.data or not Path(self.data).is_dir():
            raise UsageError(
                f"--language {self.language}: XTTS speaks {', '.join(languages)}; for another "
                "language its tokenizer is extended from the dataset's text: give --data DATASET "
                "(see docs/new-language.md)"
            )
        train, val = read_ljspeech(Path(self.data))
        texts = [item.text for item in train + val if item.text.strip()]
        if not texts:
            raise UsageError(f"--data {self.data}: no text to learn --language {self.language}'s tokens from")
        return texts

    def size_estimate(self) -> SizeEstimate:
        return SIZE_ESTIMATES[self.name]

    def default_settings(self) -> dict[str, Any]:
        if self.name == "xtts-tiny":
            return {"lr": 2e-3}
        # Upstream's recipe: 5e-6 for the whole GPT; adapters need a larger step.
        return {"lr": 1e-4 if self.lora else 5e-6}

    def architecture(self) -> dict[str, Any]:
        return {
            "family": "xtts",
            "gpt": files.model_args_dict(self.parts.config),
            "text_tokens": self.parts.tokenizer().get_number_tokens(),
            "parts": self.parts.fingerprint[:16],
            "lora": self.lora.describe() if self.lora else None,
            **({"language_extension": self.language_extension} if self.language_extension else {}),
        }

    def memory_shape(self) -> TransformerShape:
        """The GPT for voicetune's memory plan: a batch is counted in items, each as long as the
        longest the recipe accepts (200 text tokens, 11.6 s of audio codes, 32 conditioning latents);
        the conditioning encoder and perceiver count as one extra layer."""
        args = self.parts.config.model_args
        codes = self.recipe.max_wav_length // args.gpt_code_stride_len + 3
        seq = self.recipe.max_text_length + 2 + codes + 32
        return TransformerShape(
            layers=int(args.gpt_layers),
            width=int(args.gpt_n_model_channels),
            heads=int(args.gpt_n_heads),
            ff_mult=4.0,
            batch_unit="items",
            tokens_per_unit=float(seq),
            extra_layers=1.0,
            quadratic_attention=False,
        )

    # -- the model

    def build_model(self) -> XttsGptTrainer:
        """Xtts with pretrained weights (or initialized from --seed for xtts-tiny), GPT trainable."""
        from TTS.tts.models.xtts import Xtts

        parts = self.parts
        config = copy.deepcopy(parts.config)
        wanted_tokens = config.model_args.gpt_number_text_tokens
        config.model_args.gpt_number_text_tokens = None  # build the GPT once, after the tokenizer is set
        # The weights that are not trained must not depend on the RNG state the caller is in, so
        # that an export or a resume rebuilds the very same ones.
        with torch.random.fork_rng(devices=[]), quiet_transformers():
            torch.manual_seed(self.seed)
            xtts = Xtts(config)
            xtts.tokenizer = parts.tokenizer()
            config.model_args.gpt_number_text_tokens = wanted_tokens
            xtts.init_models()
        new_rows = torch.Generator().manual_seed(self.seed)
        if parts.model_path is not None:
            state = grown_text_rows(files.read_xtts_state_dict(parts.model_path), xtts.state_dict(), "", new_rows)
            result = xtts.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise CheckpointError(
                    f"{parts.model_path} does not fit its config.json: missing "
                    f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
                )
        else:  # rows of added tokens drawn as for a pretrained model, so both start alike
            base = {k: v[: self.base_text_tokens] for k, v in xtts.state_dict().items() if k in TEXT_ROW_KEYS}
            xtts.load_state_dict(grown_text_rows(base, xtts.state_dict(), "", new_rows), strict=False)
        xtts.mel_stats.copy_(parts.mel_stats)  # mel_stats.pth wins over model.pth's copy, as in GPTTrainer
        xtts.requires_grad_(False)
        xtts.gpt.requires_grad_(True)
        if self.gradient_checkpointing:
            # The GPT-2 blocks recomputed in backward. coqui's `checkpointing` argument only sets a
            # GPT2Config field that transformers 5 no longer reads, and the public
            # activation_checkpointing_enable() needs the token embedding coqui removes (XTTS feeds
            # inputs_embeds), so the layers are switched the way that method switches them.
            xtts.gpt.gpt._set_gradient_checkpointing(
                enable=True,
                gradient_checkpointing_func=functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False),
            )
            xtts.gpt.gpt.config.use_cache = False
        model = XttsGptTrainer(xtts, self.recipe)
        if self.lora and self.language_extension:
            say(
                f"--lora-rank with the new language {self.language}: LoRA trains the attention and feed-forward "
                "layers only, so the text embedding rows of its new tokens stay as drawn; train without --lora-rank "
                "to learn them",
                logging.WARNING,
                log.name,
            )
        if self.lora:
            self.lora.apply(model)
        return model

    def checkpoint_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The GPT's tensors (what upstream's recipe trains), or only its LoRA tensors."""
        if has_lora(model):
            return lora_state_dict(model)
        state = model.state_dict()
        return {k: state[k] for k in gpt_weight_names(model)}

    def load_checkpoint_weights(self, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
        if has_lora(model):
            super().load_checkpoint_weights(model, weights)
            return
        expected = set(self.checkpoint_weights(model))
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        if missing or unexpected:
            hint = " (a LoRA checkpoint: add the same --lora-rank)" if any("lora_" in k for k in unexpected) else ""
            raise CheckpointError(
                f"checkpoint weights do not fit model {self.name}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}{hint}"
            )
        model.load_state_dict(weights, strict=False)

    def load_upstream_weights(self, model: torch.nn.Module, path: Path) -> None:
        """An upstream model.pth (released, or from coqui's GPTTrainer; a folder holding one works too)."""
        path = Path(path)
        if path.is_dir():
            path = path / files.MODEL_FILE
        state = {f"xtts.{k}": v for k, v in files.read_xtts_state_dict(path).items()}
        own = model.state_dict()
        state = grown_text_rows(state, own, "xtts.", torch.Generator().manual_seed(self.seed))
        state = to_injected_keys(model, state)
        missing = sorted(set(gpt_weight_names(model)) - set(state))
        unexpected = sorted(k for k in state if k not in own)
        misshapen = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
        if missing or unexpected or misshapen:
            raise CheckpointError(
                f"{path} does not fit {self.name}: GPT weights missing {missing[:5]}, "
                f"unknown {unexpected[:5]}, other shapes {misshapen[:5]}"
            )
        model.load_state_dict(state, strict=False)

    # -- data

    def load_data(self, data_dir: Path, cache_dir: Path) -> DataSplits:
        """LJSpeech folder -> items with text tokens and DVAE codes (cached in cache_dir/xtts)."""
        from voicetune.data.ljspeech import load_audio, read_ljspeech

        parts = self.parts
        train_items, val_items = read_ljspeech(Path(data_dir))
        tokenizer = parts.tokenizer()
        unk = tokenizer.tokenizer.token_to_id("[UNK]")
        codes_dir = Path(cache_dir) / "xtts" / "codes"
        codes_dir.mkdir(parents=True, exist_ok=True)
        if parts.model_path is None:  # the built-in parts, in upstream's formats, next to the codes
            files.write_parts(Path(cache_dir) / "xtts" / "tiny_parts", parts)
        dvae_id = parts.dvae_fingerprint
        digest = hashlib.sha256(f"{self.language}|{dvae_id}".encode())
        max_codes = parts.config.model_args.gpt_max_audio_tokens - 3
        skipped: dict[str, int] = {}
        seconds = 0.0

        def prepare(items) -> XttsItems:
            nonlocal seconds
            kept = XttsItems([], [], [], [])
            for item in items:
                if not item.audio_path.is_file():
                    raise UsageError(f"{item.audio_path}: missing (listed in the metadata of {data_dir})")
                audio = load_audio(item.audio_path, GPT_SAMPLE_RATE)
                tokens = torch.tensor(tokenizer.encode(item.text, self.language), dtype=torch.long)
                reason = self.unusable(tokens, audio, unk)
                codes = cached_codes(audio, parts, dvae_id, codes_dir) if reason is None else None
                if codes is not None and len(codes) > max_codes:
                    reason = f"more than {max_codes} audio codes"
                if reason is not None or codes is None:
                    reason = reason or "no audio codes"
                    skipped[reason] = skipped.get(reason, 0) + 1
                    log.warning("left out %s: %s", item.item_id, reason)
                    continue
                digest.update(
                    f"{item.item_id}|{tokens.tolist()}|{hashlib.sha256(audio.tobytes()).hexdigest()}".encode()
                )
                kept.paths.append(item.audio_path)
                kept.texts.append(item.text)
                kept.tokens.append(tokens)
                kept.codes.append(codes)
                seconds += len(audio) / GPT_SAMPLE_RATE
            return kept

        train, val = prepare(train_items), prepare(val_items)
        parts.dvae.to("cpu")  # codes are cached: keep the DVAE off the GPU while training
        if len(train) == 0:
            raise UsageError(f"--data {data_dir}: no usable training clip ({skipped or 'none listed'})")
        description = f"{len(train)} train / {len(val)} val clips, {seconds / 60:.1f} min at 22.05 kHz"
        if skipped:
            description += "; left out: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
            too_long = sum(n for why, n in skipped.items() if "longer than" in why and "audio" in why)
            say(
                f"XTTS leaves out {sum(skipped.values())} of {len(train_items) + len(val_items)} clips "
                f"({', '.join(f'{n} {why}' for why, n in skipped.items())})"
                + (
                    f". Make clips XTTS can train on: `voicetune prepare ... --for xtts` (at most "
                    f"{XTTS_MAX_CLIP_SECONDS} s)"
                    if too_long
                    else ""
                ),
                logging.WARNING,
                log.name,
            )
        return DataSplits(
            train, val, [len(c) for c in train.codes], [len(c) for c in val.codes], digest.hexdigest()[:16], description
        )

    def unusable(self, tokens: torch.Tensor, audio: np.ndarray, unk_id: int) -> str | None:
        """Why upstream's XTTSDataset would leave a clip out, or None."""
        if (tokens == unk_id).any():
            return "text with characters the tokenizer does not know"
        if len(tokens) > self.recipe.max_text_length:
            return f"text longer than {self.recipe.max_text_length} tokens"
        if not self.recipe.min_wav_length <= len(audio) <= self.recipe.max_wav_length:
            return "audio shorter than 0.5 s or longer than 11.6 s"
        return None

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_items(items)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch)

    # -- samples and synthesis

    def sample_prompts(self, splits: DataSplits, extra_texts: Iterable[str], limit: int) -> list[SamplePrompt]:
        """Validation clips spoken in the voice of another validation clip, plus --sample-text."""
        pool = cast(XttsItems, splits.val if len(splits.val) else splits.train)  # type: ignore[arg-type]  # XTTS's splits hold XttsItems
        return voice_swap_prompts(pool, extra_texts, limit, self.sample_rate)

    def synthesize_samples(self, model: torch.nn.Module, prompts: list[SamplePrompt]) -> list[SampleAudio]:
        out = []
        for prompt in prompts:
            audio = self.speak(model, prompt.text, prompt.ref_audio, self.sample_rate, self.language)
            out.append(
                SampleAudio(
                    prompt.name,
                    prompt.text,
                    self.sample_rate,
                    audio,
                    prompt.ref_audio,
                    {"mel": log_mel(audio, self.sample_rate)},
                )
            )
        return out

    def synthesize(
        self,
        model: torch.nn.Module,
        text: str,
        ref_audio: np.ndarray,
        ref_text: str | None = None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """The adapter protocol's synthesis (`voicetune synthesize`): `ref_audio` at `sample_rate`,
        randomness from torch's global generator (the caller seeds it); XTTS needs no `ref_text`."""
        return self.speak(
            model,
            text,
            np.asarray(ref_audio, dtype=np.float32),
            self.sample_rate,
            self.spoken_language(model, language),
            speed,
        )

    def synthesize_chunk(
        self,
        model: torch.nn.Module,
        chunk: str,
        ref_audio: np.ndarray,
        ref_text: str | None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """One sentence for the synthesis engine, whose model never trains: the reference's
        conditioning is computed once per model and clip, not once per chunk."""
        audio = np.asarray(ref_audio, dtype=np.float32)
        return self.speak(model, chunk, audio, self.sample_rate, self.spoken_language(model, language), speed, True)

    def text_chunks(
        self, text: str, ref_audio: np.ndarray, ref_text: str | None, speed: float = 1.0, language: str | None = None
    ) -> list[str]:
        """Sentences within the tokenizer's character limit for the language (upstream's limits)."""
        lang = (language or self.language).split("-")[0]
        return split_sentences(text, self.text_tokenizer.char_limits.get(lang, 250))

    @functools.cached_property
    def text_tokenizer(self):
        """XTTS's tokenizer, built once (the engine asks it about every request)."""
        return self.parts.tokenizer()

    def unsayable(self, text: str, language: str | None = None) -> set[str]:
        tokenizer = self.text_tokenizer
        unk = tokenizer.tokenizer.token_to_id("[UNK]") if hasattr(tokenizer, "tokenizer") else None
        if unk is None:
            return set()
        lang = language or self.language
        return {c for c in set(text) if not c.isspace() and unk in tokenizer.encode(c, lang)}

    def synthesize_seeded(
        self,
        model: torch.nn.Module,
        text: str,
        ref_wav: Path | str | np.ndarray,
        language: str | None = None,
        seed: int = 0,
        speed: float = 1.0,
        ref_sample_rate: int | None = None,
    ) -> tuple[np.ndarray, int]:
        """Speak `text` in the voice of `ref_wav` (a file, or samples at `ref_sample_rate`).

        Long text is cut into sentences (at most the tokenizer's character limit each) and spoken
        one after another; `speed` stretches the GPT latents as upstream does (1.0 = as trained).
        The same seed gives the same audio; the caller's random generators are left as they were.
        """
        from voicetune.data.ljspeech import load_audio

        if isinstance(ref_wav, np.ndarray):
            ref, rate = ref_wav.astype(np.float32), ref_sample_rate or self.sample_rate
        else:
            ref, rate = load_audio(Path(ref_wav), GPT_SAMPLE_RATE), GPT_SAMPLE_RATE
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            audio = self.speak(model, text, ref, rate, self.spoken_language(model, language), speed)
        return audio, self.sample_rate

    def reset(self, model: torch.nn.Module) -> None:
        """Coqui's GPT keeps the last generation's prefix (conditioning latents and text
        embedding, `store_prefix_emb`) on its inference model between calls: dropped after every
        generation, however it ended. The reference's kept conditioning (`kept_conditioning`) is
        stored only once whole, and its key is the clip itself, so a cut request leaves none."""
        xtts = model.xtts if hasattr(model, "xtts") else model
        inference = getattr(getattr(xtts, "gpt", None), "gpt_inference", None)
        if inference is not None:
            inference.cached_prefix_emb = None

    def spoken_language(self, model: torch.nn.Module, language: str | None) -> str:
        """--language for synthesis (default: the training language), refused unless the model has it."""
        language = language or self.language
        config: Any = (model.xtts if hasattr(model, "xtts") else model).config
        languages: list[str] = list(config.languages)
        if not speaks_code(languages, language):
            raise UsageError(
                f"--language {language}: this model speaks {', '.join(languages)}; a language of "
                "its own needs training on it (voicetune train --language CODE)"
            )
        if not xtts_language.is_known_to_coqui(language):
            xtts_language.register(language)
        return language

    @torch.no_grad()
    def speak(
        self,
        model: torch.nn.Module,
        text: str,
        ref_audio: np.ndarray,
        ref_rate: int,
        language: str,
        speed: float = 1.0,
        keep_conditioning: bool = False,
    ) -> np.ndarray:
        """Upstream's inference path: conditioning latents and speaker embedding of the reference
        (Xtts.get_conditioning_latents), then per sentence GPT generate + HiFi-GAN (Xtts.inference).
        `keep_conditioning`: the weights are fixed (the synthesis engine), so the reference's
        conditioning is kept for the next call (training samples recompute it: weights change)."""
        with quiet_transformers():
            xtts = ready_for_inference(model)
        if not xtts_language.is_known_to_coqui(language):
            unknown = xtts_language.unknown_letters(xtts.tokenizer, text)
            if unknown:
                say(
                    f"--text: letters not in the model's {language} vocabulary (its dataset's text never had them) "
                    f"are read as unknown tokens: {' '.join(unknown)}",
                    logging.WARNING,
                    log.name,
                )
        with quiet_transformers():
            with self.speaking(model):  # a generation cut short leaves no prefix behind
                return self._speak(xtts, text, ref_audio, ref_rate, language, speed, keep_conditioning)

    def _conditioning(self, xtts, ref_audio: np.ndarray, ref_rate: int, keep: bool) -> tuple[Any, Any]:
        """The reference's GPT conditioning latents and speaker embedding; with `keep`, the last 8
        clips' are kept per model (they depend only on the model's weights and the clip)."""
        if not keep:  # training samples: the weights change between calls
            return self._compute_conditioning(xtts, ref_audio, ref_rate)
        kept = self.kept_conditioning.setdefault(xtts, OrderedDict())
        key = (hashlib.sha256(np.ascontiguousarray(ref_audio, dtype=np.float32).tobytes()).hexdigest(), ref_rate)
        if key in kept:
            kept.move_to_end(key)
        else:
            kept[key] = self._compute_conditioning(xtts, ref_audio, ref_rate)
            while len(kept) > 8:
                kept.popitem(last=False)
        return kept[key]

    @staticmethod
    def _compute_conditioning(xtts, ref_audio: np.ndarray, ref_rate: int) -> tuple[Any, Any]:
        config = xtts.config
        device = next(xtts.parameters()).device
        ref = torch.from_numpy(np.ascontiguousarray(ref_audio, dtype=np.float32))[None].to(device)
        ref = ref[:, : int(ref_rate * config.max_ref_len)]
        latents = xtts.get_gpt_cond_latents(
            ref, ref_rate, length=config.gpt_cond_len, chunk_length=config.gpt_cond_chunk_len
        )
        return latents, xtts.get_speaker_embedding(ref, ref_rate)

    def _speak(
        self, xtts, text: str, ref_audio: np.ndarray, ref_rate: int, language: str, speed: float, keep: bool
    ) -> np.ndarray:
        config = xtts.config
        latents, speaker = self._conditioning(xtts, ref_audio, ref_rate, keep)
        lang = language.split("-")[0]
        limit = xtts.tokenizer.char_limits.get(lang, 250)
        pieces = []
        for sentence in split_sentences(text, limit):
            result = xtts.inference(
                sentence,
                language,
                latents,
                speaker,
                temperature=config.temperature,
                length_penalty=config.length_penalty,
                repetition_penalty=config.repetition_penalty,
                top_k=config.top_k,
                top_p=config.top_p,
                speed=speed,
                enable_text_splitting=False,
                max_new_tokens=generation_cap(xtts, sentence, lang),
            )
            pieces.append(np.asarray(result["wav"], dtype=np.float32).reshape(-1))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    # -- export

    def export(self, model: torch.nn.Module, out_dir: Path, fmt: str) -> list[Path]:
        """fmt "xtts": a coqui XTTS folder (model.pth, dvae.pth, mel_stats.pth, vocab.json,
        config.json [, speakers_xtts.pth]) for `Xtts.load_checkpoint(config, checkpoint_dir=...)`;
        fmt "safetensors": model.safetensors with the same Xtts state dict. LoRA is merged first."""
        if fmt not in ("xtts", "safetensors"):
            raise UsageError(f"--format {fmt}: XTTS models export as xtts or safetensors")
        if has_lora(model):
            model = merge_lora(copy.deepcopy(model))
        xtts = model.xtts
        state = {k: v for k, v in xtts.state_dict().items() if not files.is_inference_alias(k)}
        out_dir = Path(out_dir)
        if fmt == "xtts":
            return files.write_xtts_folder(out_dir, state, self.parts, xtts.config)
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / "model.safetensors"
        with fsio.atomic_path(target) as tmp:
            save_file(files.plain_tensors(state), str(tmp), metadata={"format": "pt", "model": "xtts"})
        return [target]


# ---- helpers -----------------------------------------------------------------------------------

# The GPT's tensors with a row per text token (the rows a new language's tokens add).
TEXT_ROW_KEYS = ("gpt.text_embedding.weight", "gpt.text_head.weight", "gpt.text_head.bias")


def speaks(config: Any, language: str) -> bool:
    return speaks_code(list(config.languages), language)


def speaks_code(languages: list[str], language: str) -> bool:
    return language in languages or f"{language}-cn" in languages  # zh = zh-cn


def grown_text_rows(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], prefix: str, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """`state` with its text embedding and text head grown to the model's (`own`) rows: the rows
    of tokens a new language added, drawn as AllTalk's expand_xtts.py draws them."""
    state = dict(state)
    for key in (prefix + k for k in TEXT_ROW_KEYS):
        if (
            key in state
            and key in own
            and state[key].shape[0] < own[key].shape[0]
            and state[key].shape[1:] == own[key].shape[1:]
        ):
            state[key] = xtts_language.grow_rows(state[key], own[key].shape[0] - state[key].shape[0], generator)
    return state


def gpt_weight_names(model: torch.nn.Module) -> list[str]:
    """Names of the GPT's own tensors in `model` (not LoRA's, not the inference aliases)."""
    return [
        k
        for k in model.state_dict()
        if k.startswith("xtts.gpt.") and "lora_" not in k and not files.is_inference_alias(k[len("xtts.") :])
    ]


def cached_codes(audio: np.ndarray, parts: files.XttsParts, dvae_id: str, codes_dir: Path) -> torch.Tensor:
    """DVAE codes of a 22.05 kHz clip, from cache_dir when the same audio met the same DVAE before."""
    from safetensors.torch import load_file, save_file
    from TTS.tts.layers.xtts.dvae import dvae_wav_to_mel

    key = hashlib.sha256(dvae_id.encode() + audio.tobytes()).hexdigest()[:40]
    path = codes_dir / f"{key}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["codes"]
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
            log.warning("cache file %s is unreadable; recomputing it", path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dvae = parts.dvae.to(device)
    with torch.no_grad():
        mel = dvae_wav_to_mel(
            torch.from_numpy(audio)[None].to(device), mel_norms=parts.mel_stats.to(device), device=device
        )
        codes = dvae.get_codebook_indices(mel)[0].long().cpu().contiguous()
    with fsio.atomic_path(path) as tmp:
        save_file({"codes": codes}, str(tmp))
    return codes


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' warnings about what coqui's XTTS does on purpose: a GPT2Config whose
    default bos/eos ids lie outside XTTS's token range (it passes its own), and generation given
    both coqui's max_length and our max_new_tokens (the latter wins, as intended)."""
    loggers = [
        logging.getLogger(name) for name in ("transformers.configuration_utils", "transformers.generation.utils")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def ready_for_inference(model: torch.nn.Module):
    """The Xtts of `model`, set up as Xtts.load_checkpoint(eval=True) leaves it."""
    xtts = model.xtts if hasattr(model, "xtts") else model
    if not hasattr(xtts.gpt, "gpt_inference"):
        xtts.gpt.init_gpt_for_inference(kv_cache=xtts.args.kv_cache)
    xtts.gpt.eval()
    xtts.hifigan_decoder.eval()
    return xtts


def generation_cap(xtts, sentence: str, language: str) -> int:
    """Most audio codes to generate for `sentence`: ~3x its normal speaking time, within the GPT's limit."""
    seconds = len(sentence) * SECONDS_PER_CHAR.get(language, DEFAULT_SECONDS_PER_CHAR)
    codes = math.ceil(seconds * GPT_SAMPLE_RATE / xtts.args.gpt_code_stride_len) + 20
    return int(min(codes, xtts.gpt.max_gen_mel_tokens))


_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])\s+")


def split_sentences(text: str, limit: int) -> list[str]:
    """Sentences packed into pieces of at most `limit` characters (a longer sentence is cut at
    commas, then at spaces). Upstream's splitter needs spaCy; this one needs nothing."""
    import textwrap

    pieces: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text.strip())):
        if not sentence:
            continue
        parts = (
            [sentence]
            if len(sentence) <= limit
            else [chunk for clause in re.split(r"(?<=,)\s+", sentence) for chunk in textwrap.wrap(clause, limit)]
        )
        for part in parts:
            if pieces and len(pieces[-1]) + 1 + len(part) <= limit:
                pieces[-1] += " " + part
            else:
                pieces.append(part)
    return pieces


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(80, frames) log-mel of a waveform, for the sample's picture."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=80)(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    )
    return torch.log(mel.clamp(min=1e-5)).numpy()


# The studio's auto settings: xtts-tiny as built here, XTTS-v2 as published (its GPT ~443 M of
# ~467 M: the DVAE and the HiFi-GAN decoder stay frozen). A unit of batch is a clip.
SIZE_ESTIMATES = {
    "xtts-tiny": SizeEstimate(23_121_278, 705_618, 0.5, 0.05, "clips"),
    "xtts-v2": SizeEstimate(467_000_000, 443_000_000, 8.0, 1.6, "clips"),
}


def create_tiny(config: Any = None) -> XttsAdapter:
    return XttsAdapter(config, "xtts-tiny", default_pretrained=None)


def create_v2(config: Any = None) -> XttsAdapter:
    return XttsAdapter(config, "xtts-v2", default_pretrained=files.HUB_REPO)
