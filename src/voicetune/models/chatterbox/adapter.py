"""Chatterbox (Resemble AI, `chatterbox-tts`): fine-tune T3 the way the community recipes do.

    chatterbox       the released English model (ResembleAI/chatterbox); --pretrained defaults to
                     the hub repo, or names a folder that `ChatterboxTTS.from_local` reads
    chatterbox-tiny  upstream's classes at toy sizes (parts.TINY_SIZES), initialized at random:
                     for tests and demos on a CPU

What is trained and how (upstream has no trainer; stlohrey/chatterbox-finetuning and
davidbrowne17/chatterbox-streaming train T3 alone and keep S3Gen frozen):
- Audio at 16 kHz becomes S3 speech tokens (S3Gen's own tokenizer, 25 per second) and a speaker
  embedding (the voice encoder). Both are computed once per clip and cached in RUN/cache keyed by
  the clip's samples and the fixed parts' weights.
- Text becomes tokens with the model's tokenizer.json after upstream's `punc_norm`, between
  [START] and [STOP].
- T3 (a Llama) is conditioned as at inference: the speaker embedding, a prompt of S3 tokens
  (another clip of the batch, a random slice at most `speech_cond_prompt_len` long, drawn from
  torch's global generator inside forward) and the emotion value 0.5. Its loss is next-token
  cross-entropy over the speech tokens (to [STOP]) plus the text tokens. Upstream's `T3.loss`
  is not used: it neither shifts the targets nor puts the classes where cross_entropy wants them.
- Only T3 learns (all of it, or LoRA adapters on its Llama projections). S3Gen (tokens to
  waveform) and the voice encoder stay as released: they define the tokens and embeddings T3
  is trained to predict and is conditioned on, so changing them would unmoor T3's targets.
  T3's Llama token embedding is frozen too: T3 feeds embeddings, so it is never used.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from voicetune import fsio
from voicetune.errors import CheckpointError, UsageError
from voicetune.models.base import (
    BaseAdapter,
    DataSplits,
    SampleAudio,
    SamplePrompt,
    SizeEstimate,
    TransformerShape,
    voice_swap_prompts,
)
from voicetune.models.chatterbox import parts as P
from voicetune.models.lora import LoraSettings, has_lora, lora_state_dict, merge_lora, to_injected_keys

log = logging.getLogger("voicetune.models")

# The Llama's attention and feed-forward projections (no other Chatterbox layer has these names).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SECONDS_PER_CHAR = 0.2  # generation cap: about three times a normal speaking rate
CHUNK_CHARS = 250  # a synthesis chunk (upstream speaks what it is given; long text drifts)
EMOTION = 0.5  # upstream generate()'s default exaggeration, and the community recipes' training value


@dataclass(frozen=True)
class RecipeSettings:
    """What shapes training (the community recipes' choices)."""

    min_seconds: float = 0.5
    max_seconds: float = 30.0
    text_loss_weight: float = 1.0  # upstream T3.loss returns text and speech losses; recipes add them
    speech_loss_weight: float = 1.0


# ---- the trained module ----------------------------------------------------------------------


class ChatterboxModel(torch.nn.Module):
    """T3 with the fixed S3Gen and voice encoder; `forward(**batch)` is T3's training loss."""

    def __init__(self, t3: torch.nn.Module, s3gen: torch.nn.Module, ve: torch.nn.Module, recipe: RecipeSettings):
        super().__init__()
        self.t3, self.s3gen, self.ve = t3, s3gen, ve
        self.recipe = recipe

    def forward(
        self,
        text_tokens: torch.Tensor,
        text_lengths: torch.Tensor,
        speech_tokens: torch.Tensor,
        speech_lengths: torch.Tensor,
        speaker: torch.Tensor,
    ) -> torch.Tensor:
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        prompt, sources = self.conditioning_prompt(speech_tokens, speech_lengths)
        cond = T3Cond(
            speaker_emb=speaker[sources],
            cond_prompt_speech_tokens=prompt,
            emotion_adv=torch.full((len(speaker), 1, 1), EMOTION, device=speaker.device),
        )
        out = self.t3(
            t3_cond=cond,
            text_tokens=text_tokens,
            text_token_lens=text_lengths,
            speech_tokens=speech_tokens,
            speech_token_lens=speech_lengths,
            training=True,
        )
        loss_text = shifted_cross_entropy(out.text_logits, text_tokens, text_lengths)
        loss_speech = shifted_cross_entropy(out.speech_logits, speech_tokens, speech_lengths)
        return self.recipe.text_loss_weight * loss_text + self.recipe.speech_loss_weight * loss_speech

    def train(self, mode: bool = True) -> ChatterboxModel:
        """Only T3 trains: S3Gen and the voice encoder stay in eval mode (batch norm, dropout)."""
        super().train(mode)
        self.s3gen.eval()
        self.ve.eval()
        return self

    def conditioning_prompt(
        self, speech_tokens: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) S3 tokens of another clip of the batch for each item (its own for a batch of one)
        and the index of that clip: a random slice, as long as the shortest source allows and at
        most `speech_cond_prompt_len`. Draws come from torch's global generator on the CPU."""
        batch = speech_tokens.shape[0]
        lengths = speech_lengths.detach().cpu().long() - 2  # without [START] and [STOP]
        offsets = torch.randint(1, batch, (batch,)) if batch > 1 else torch.zeros(1, dtype=torch.long)
        sources = (torch.arange(batch) + offsets) % batch
        take = int(min(int(self.t3.hp.speech_cond_prompt_len), int(lengths[sources].min())))
        starts = (torch.rand(batch) * (lengths[sources] - take + 1).double()).long()
        rows = [speech_tokens[int(s), 1 + int(b) : 1 + int(b) + take] for s, b in zip(sources, starts)]
        return torch.stack(rows), sources.to(speech_tokens.device)


def shifted_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits at position i predict token i+1, within each length."""
    steps = tokens.shape[1] - 1
    valid = torch.arange(steps, device=tokens.device)[None] < (lengths[:, None] - 1)
    targets = tokens[:, 1:].masked_fill(~valid, -100)
    return F.cross_entropy(logits[:, :steps].transpose(1, 2).float(), targets, ignore_index=-100)


# ---- data --------------------------------------------------------------------------------------


class ChatterboxItems(torch.utils.data.Dataset):
    """Clips as text tokens, S3 speech tokens and a speaker embedding (all precomputed)."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.texts: list[str] = []
        self.text: list[torch.Tensor] = []
        self.speech: list[torch.Tensor] = []
        self.speaker: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"text": self.text[index], "speech": self.speech[index], "speaker": self.speaker[index]}

    def audio(self, index: int, sample_rate: int) -> np.ndarray:
        from voicetune.data.ljspeech import load_audio

        return load_audio(self.paths[index], sample_rate)


def sequence_lengths(items: ChatterboxItems) -> list[int]:
    """Each clip's length through T3: its text and speech tokens (what its memory grows with)."""
    return [len(text) + len(speech) for text, speech in zip(items.text, items.speech)]


def collate_items(items: list[dict[str, torch.Tensor]], text_pad: int, speech_pad: int) -> dict[str, torch.Tensor]:
    """Pad to the longest item (text with [STOP], speech with its stop token); lengths mask them."""

    def pad(key: str, value: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(item[key]) for item in items], dtype=torch.long)
        out = torch.full((len(items), int(lengths.max())), value, dtype=torch.long)
        for i, item in enumerate(items):
            out[i, : lengths[i]] = item[key]
        return out, lengths

    text, text_lengths = pad("text", text_pad)
    speech, speech_lengths = pad("speech", speech_pad)
    return {
        "text_tokens": text,
        "text_lengths": text_lengths,
        "speech_tokens": speech,
        "speech_lengths": speech_lengths,
        "speaker": torch.stack([item["speaker"] for item in items]),
    }


# ---- the adapter -------------------------------------------------------------------------------


class ChatterboxAdapter(BaseAdapter):
    sample_rate = P.S3GEN_SAMPLE_RATE
    export_format = "chatterbox"  # RUN/ready/ is the folder upstream ChatterboxTTS.from_local reads
    cross_fade_seconds = 0.0

    def __init__(self, config: Any, name: str, sizes: dict[str, Any] | None, default_pretrained: str | None):
        self.name = name
        self.sizes = sizes
        self.pretrained = getattr(config, "pretrained", None) or default_pretrained
        if str(self.pretrained or "").lower() == "none":  # --pretrained none: random weights at this size
            self.pretrained = None
        self.language = getattr(config, "language", None) or "en"
        self.lora = LoraSettings.from_config(config, DEFAULT_LORA_TARGETS)
        self.recipe = RecipeSettings()
        self.nfe_steps = 10  # S3Gen's flow-matching steps (upstream's default)
        if getattr(config, "vocab", None):
            raise UsageError("--vocab is for F5-TTS; Chatterbox uses the tokenizer.json of its --pretrained folder")
        self._fixed: P.Parts | None = None
        self._folder: Path | None = None
        # Conditioning of a reference clip (fixed parts only: valid across training), last 8 clips.
        self.kept_conditioning: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()

    # -- where the weights come from

    def without_pretrained(self) -> ChatterboxAdapter:
        """The same sizes with seeded weights: upstream builds them with no downloaded file."""
        plain = copy.copy(self)
        plain.pretrained, plain._folder, plain._fixed = None, None, None
        plain.kept_conditioning = OrderedDict()
        return plain

    def describe_weights(self) -> str:
        """A from_local folder, or the hub repository's released files (whether they are cached)."""
        from voicetune.models.hub import HF_PREFIX, HubFile, cached_hub_file

        spec = str(self.pretrained or "")
        if not spec:
            return super().describe_weights()
        if not spec.startswith(HF_PREFIX):
            missing = P.missing_files(Path(spec).expanduser()) if Path(spec).expanduser().is_dir() else ["the folder"]
            return spec + (f" (missing {', '.join(missing)}: `voicetune train` will need them)" if missing else "")
        repo = spec[len(HF_PREFIX) :].strip("/")
        if all(cached_hub_file(HubFile(repo, name)) for name in P.RELEASED_FILES):
            return f"{spec} (in the local Hugging Face cache)"
        return f"{spec} ({', '.join(P.RELEASED_FILES)} downloaded into the Hugging Face cache when `voicetune train` starts)"

    def folder(self) -> Path | None:
        """The from_local folder of --pretrained (downloaded from the hub when a hub repo), or None."""
        if self.pretrained is None:
            return None
        if self._folder is None:
            self._folder = resolve_folder(str(self.pretrained))
        return self._folder

    @property
    def fixed(self) -> P.Parts:
        """The model's modules with the released (or seeded) weights; S3Gen and the voice encoder
        are shared by every model this adapter builds: they never change."""
        if self._fixed is None:
            parts = P.build_parts(self.sizes, seed=0)
            folder = self.folder()
            if folder is not None:
                state = P.read_folder(folder)
                for name in ("s3gen", "ve"):
                    load_strict(getattr(parts, name), state[name], folder / f"{name}.safetensors")
                load_strict(parts.t3, state["t3"], folder / P.T3_FILE)
            parts.s3gen.eval().requires_grad_(False)
            parts.ve.eval().requires_grad_(False)
            self._fixed = parts
        return self._fixed

    def tokenizer_json(self) -> str:
        folder = self.folder()
        return (folder / P.TOKENIZER_FILE).read_text() if folder is not None else P.tiny_tokenizer_json()

    @property
    def tokenizer(self):
        """Upstream's EnTokenizer over the model's tokenizer.json."""
        if getattr(self, "_tokenizer", None) is None:
            from chatterbox.models.tokenizers import EnTokenizer

            folder = self.folder()
            if folder is not None:
                self._tokenizer = EnTokenizer(str(folder / P.TOKENIZER_FILE))
            else:  # EnTokenizer reads a file
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / P.TOKENIZER_FILE
                    path.write_text(P.tiny_tokenizer_json())
                    self._tokenizer = EnTokenizer(str(path))
        return self._tokenizer

    def fixed_fingerprint(self) -> str:
        """Identity of the fixed parts (what cached tokens and embeddings depend on)."""
        folder = self.folder()
        if folder is None:
            return "seed0-" + P.sizes_fingerprint(self.sizes)
        return hashlib.sha256(
            "|".join(fsio.sha256_file(folder / n) for n in (P.S3GEN_FILE, P.VE_FILE)).encode()
        ).hexdigest()[:16]

    # -- settings and shapes

    def size_estimate(self) -> SizeEstimate:
        return SIZE_ESTIMATES[self.name]

    def default_settings(self) -> dict[str, Any]:
        if self.sizes is not None:  # tiny
            return {"lr": 2e-3, "batch_size": 4}
        # The community recipes: 5e-5 for the whole T3 (stlohrey), 1e-4 and more for adapters.
        return {"lr": 2e-4 if self.lora else 5e-5}

    def architecture(self) -> dict[str, Any]:
        return {
            "family": "chatterbox",
            "sizes": self.sizes or "released",
            "fixed_parts": self.fixed_fingerprint(),
            "lora": self.lora.describe() if self.lora else None,
        }

    def memory_shape(self) -> TransformerShape:
        """T3's Llama for the memory plan: a batch counted in items, each a clip of the longest the
        recipe takes (30 s of speech tokens), 300 text tokens and the conditioning."""
        hp = P.t3_config(self.sizes)
        from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

        llama = LLAMA_CONFIGS[hp.llama_config_name]
        seq = 300 + 2 + self.recipe.max_seconds * P.S3_TOKEN_RATE + 2 + 34
        return TransformerShape(
            layers=int(llama["num_hidden_layers"]),
            width=int(llama["hidden_size"]),
            heads=int(llama["num_attention_heads"]),
            ff_mult=float(llama["intermediate_size"]) / float(llama["hidden_size"]),
            batch_unit="items",
            tokens_per_unit=float(seq),
            extra_layers=1.0 if hp.use_perceiver_resampler else 0.0,
        )

    # -- the model

    def build_model(self) -> ChatterboxModel:
        """T3 (released or seeded weights; trainable) beside the fixed S3Gen and voice encoder."""
        fixed = self.fixed
        t3 = copy.deepcopy(fixed.t3) if self.folder() is not None else P.build_t3(self.sizes)
        t3.tfmr.embed_tokens.requires_grad_(False)  # T3 feeds embeddings: never used
        model = ChatterboxModel(t3, fixed.s3gen, fixed.ve, self.recipe)
        if self.lora:
            self.lora.apply(model)
        return model

    def checkpoint_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """T3's tensors (what is trained), or only its LoRA tensors."""
        if has_lora(model):
            return lora_state_dict(model)
        return {k: v for k, v in model.state_dict().items() if k.startswith("t3.") and ".patched_model." not in k}

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
        """T3 of a from_local folder (released, or an export): every tensor, shapes as the model's."""
        folder = Path(path)
        state = P.read_folder(folder)
        sizes = P.read_sizes(folder)
        if (sizes or None) != (self.sizes or None):
            raise CheckpointError(f"{folder}: a Chatterbox of other sizes than {self.name}; train with its --model")
        t3_state = to_injected_keys(model, {f"t3.{k}": v for k, v in state["t3"].items()})
        own = (
            self.checkpoint_weights(model)
            if not has_lora(model)
            else {k: v for k, v in model.state_dict().items() if k.startswith("t3.") and "lora_" not in k}
        )
        missing = sorted(set(own) - set(t3_state))
        unexpected = sorted(set(t3_state) - set(own))
        misshapen = sorted(k for k in t3_state if k in own and t3_state[k].shape != own[k].shape)
        if missing or unexpected or misshapen:
            raise CheckpointError(
                f"{folder / P.T3_FILE} does not fit {self.name}: missing {missing[:5]}, "
                f"unknown {unexpected[:5]}, other shapes {misshapen[:5]}"
            )
        model.load_state_dict(t3_state, strict=False)

    # -- data

    def load_data(self, data_dir: Path, cache_dir: Path) -> DataSplits:
        """LJSpeech folder -> text tokens, S3 tokens and speaker embeddings (cached in cache_dir/chatterbox)."""
        from voicetune.data.ljspeech import load_audio, read_ljspeech

        fixed = self.fixed
        hp = fixed.t3.hp
        train_items, val_items = read_ljspeech(Path(data_dir))
        features_dir = Path(cache_dir) / "chatterbox" / "features"
        features_dir.mkdir(parents=True, exist_ok=True)
        fixed_id = self.fixed_fingerprint()
        digest = hashlib.sha256(f"{self.language}|{fixed_id}".encode())
        skipped: dict[str, int] = {}
        seconds = 0.0
        unk = self.tokenizer.tokenizer.token_to_id("[UNK]")

        def prepare(items) -> ChatterboxItems:
            nonlocal seconds
            kept = ChatterboxItems()
            for item in items:
                if not item.audio_path.is_file():
                    raise UsageError(f"{item.audio_path}: missing (listed in the metadata of {data_dir})")
                audio = load_audio(item.audio_path, P.S3_SAMPLE_RATE)
                text = self.text_tokens(item.text)
                reason = None
                if unk is not None and bool((text == unk).any()):
                    reason = "text with characters the tokenizer does not know"
                elif len(text) > hp.max_text_tokens:
                    reason = f"text longer than {hp.max_text_tokens} tokens"
                elif not self.recipe.min_seconds <= len(audio) / P.S3_SAMPLE_RATE <= self.recipe.max_seconds:
                    reason = (
                        f"audio shorter than {self.recipe.min_seconds} s or longer than {self.recipe.max_seconds} s"
                    )
                if reason is not None:
                    skipped[reason] = skipped.get(reason, 0) + 1
                    log.warning("left out %s: %s", item.item_id, reason)
                    continue
                tokens, speaker = cached_features(audio, fixed, fixed_id, features_dir)
                speech = torch.cat(
                    [torch.tensor([hp.start_speech_token]), tokens.long(), torch.tensor([hp.stop_speech_token])]
                )
                digest.update(f"{item.item_id}|{text.tolist()}|{hashlib.sha256(audio.tobytes()).hexdigest()}".encode())
                kept.paths.append(item.audio_path)
                kept.texts.append(item.text)
                kept.text.append(text)
                kept.speech.append(speech)
                kept.speaker.append(speaker)
                seconds += len(audio) / P.S3_SAMPLE_RATE
            return kept

        train, val = prepare(train_items), prepare(val_items)
        if len(train) == 0:
            raise UsageError(f"--data {data_dir}: no usable training clip ({skipped or 'none listed'})")
        description = f"{len(train)} train / {len(val)} val clips, {seconds / 60:.1f} min at 16 kHz"
        if skipped:
            description += "; left out: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
        return DataSplits(
            train, val, sequence_lengths(train), sequence_lengths(val), digest.hexdigest()[:16], description
        )

    def text_tokens(self, text: str) -> torch.Tensor:
        """[START] + upstream's punc_norm(text) tokens + [STOP]."""
        from chatterbox.tts import punc_norm

        hp = self.fixed.t3.hp
        ids = self.tokenizer.encode(punc_norm(text))
        return torch.tensor([hp.start_text_token, *ids, hp.stop_text_token], dtype=torch.long)

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        hp = self.fixed.t3.hp
        return collate_items(items, hp.stop_text_token, hp.stop_speech_token)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch)

    # -- samples and synthesis

    def sample_prompts(self, splits: DataSplits, extra_texts: Iterable[str], limit: int) -> list[SamplePrompt]:
        """Validation clips spoken in the voice of another validation clip, plus --sample-text."""
        pool = cast(ChatterboxItems, splits.val if len(splits.val) else splits.train)
        return voice_swap_prompts(pool, extra_texts, limit, self.sample_rate)

    def synthesize_samples(self, model: torch.nn.Module, prompts: list[SamplePrompt]) -> list[SampleAudio]:
        out = []
        for prompt in prompts:
            audio = self.synthesize(model, prompt.text, prompt.ref_audio, prompt.ref_text)
            out.append(SampleAudio(prompt.name, prompt.text, self.sample_rate, audio, prompt.ref_audio))
        return out

    def text_chunks(
        self, text: str, ref_audio: np.ndarray, ref_text: str | None, speed: float = 1.0, language: str | None = None
    ) -> list[str]:
        """Sentences of at most CHUNK_CHARS characters."""
        from voicetune.models.xtts import split_sentences

        return split_sentences(text, CHUNK_CHARS)

    def unsayable(self, text: str, language: str | None = None) -> set[str]:
        unk = self.tokenizer.tokenizer.token_to_id("[UNK]")
        return {c for c in set(text) if not c.isspace() and unk in self.tokenizer.encode(c)}

    def check_language(self, language: str | None) -> None:
        """English only: the released T3's tokenizer lacks other scripts and many accented letters
        (é, ñ, ó, ç are [UNK]), and the multilingual Chatterbox is another model."""
        if language and language.split("-")[0] != "en":
            raise UsageError(
                f"language {language} (--language, or the dataset's as prepare detected it): {self.name} "
                "speaks English only (the released Chatterbox; its multilingual model is not supported yet). "
                f"For {language}, train --model f5-v1-base, or --model xtts-v2 on a dataset made with "
                "`voicetune prepare ... --for xtts`"
            )

    def spoken_language(self, model: torch.nn.Module, language: str | None) -> str | None:
        self.check_language(language)
        return language

    def synthesize(
        self,
        model: torch.nn.Module,
        text: str,
        ref_audio: np.ndarray,
        ref_text: str | None = None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """`text` (cut into sentences) in the voice of `ref_audio` (at `sample_rate`); randomness from
        torch's global generator. Chatterbox needs no `ref_text` and has no speed control."""
        pieces = [
            self.synthesize_chunk(model, chunk, ref_audio, ref_text, speed, language)
            for chunk in self.text_chunks(text, ref_audio, ref_text)
        ]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def synthesize_chunk(
        self,
        model: torch.nn.Module,
        chunk: str,
        ref_audio: np.ndarray,
        ref_text: str | None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """Upstream's ChatterboxTTS.generate for one chunk: T3 samples speech tokens (classifier-free
        guidance 0.5, temperature 0.8, min_p 0.05, repetition penalty 1.2), S3Gen speaks them."""
        from chatterbox.models.s3tokenizer import drop_invalid_tokens
        from chatterbox.models.t3.modules.cond_enc import T3Cond
        from chatterbox.tts import punc_norm

        quiet_upstream()
        if speed != 1.0:
            raise UsageError(f"speed {speed}: {self.name} has no speed control (upstream Chatterbox has none)")
        self.spoken_language(model, language)
        t3 = model.t3
        was_training = t3.training
        t3.eval()
        try:
            with self.speaking(model), torch.inference_mode():
                cond = self.conditioning(np.asarray(ref_audio, dtype=np.float32))
                device = next(t3.parameters()).device
                t3_cond = T3Cond(
                    speaker_emb=cond["speaker"].to(device),
                    cond_prompt_speech_tokens=cond["prompt"].to(device),
                    emotion_adv=EMOTION * torch.ones(1, 1, 1, device=device),
                )
                text = self.text_tokens(chunk)[None].to(device)
                tokens = t3.inference(
                    t3_cond=t3_cond,
                    text_tokens=torch.cat([text, text]),  # the second row is classifier-free guidance's
                    max_new_tokens=generation_cap(t3, punc_norm(chunk)),
                    temperature=0.8,
                    cfg_weight=0.5,
                    repetition_penalty=1.2,
                    min_p=0.05,
                    top_p=1.0,
                )
                tokens = drop_invalid_tokens(tokens[0:1])
                tokens = tokens[tokens < P.SPEECH_VOCAB_SIZE].to(device)
                if len(tokens) == 0:
                    return np.zeros(0, dtype=np.float32)
                ref = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in cond["gen"].items()}
                wav, _ = model.s3gen.inference(speech_tokens=tokens, ref_dict=ref, n_cfm_timesteps=self.nfe_steps)
                return wav.squeeze(0).float().cpu().numpy()
        finally:
            t3.train(was_training)

    def conditioning(self, ref_audio: np.ndarray) -> dict[str, Any]:
        """Upstream's prepare_conditionals for a clip at `sample_rate`: the voice encoder's
        embedding and S3 prompt tokens (16 kHz, first 6 s) for T3, S3Gen's reference (first 10 s).
        Depends on the fixed parts alone, so the last 8 clips' are kept."""
        key = (hashlib.sha256(np.ascontiguousarray(ref_audio, dtype=np.float32).tobytes()).hexdigest(), len(ref_audio))
        if key in self.kept_conditioning:
            self.kept_conditioning.move_to_end(key)
            return self.kept_conditioning[key]
        import librosa

        fixed = self.fixed
        ref_16k = librosa.resample(ref_audio, orig_sr=self.sample_rate, target_sr=P.S3_SAMPLE_RATE)
        gen = fixed.s3gen.embed_ref(ref_audio[: 10 * self.sample_rate], self.sample_rate, device="cpu")
        plen = int(fixed.t3.hp.speech_cond_prompt_len)
        prompt, _ = fixed.s3gen.tokenizer.forward([ref_16k[: 6 * P.S3_SAMPLE_RATE]], max_len=plen)
        speaker = torch.from_numpy(fixed.ve.embeds_from_wavs([ref_16k], sample_rate=P.S3_SAMPLE_RATE))
        cond = {"speaker": speaker.mean(0, keepdim=True), "prompt": torch.atleast_2d(prompt), "gen": gen}
        self.kept_conditioning[key] = cond
        while len(self.kept_conditioning) > 8:
            self.kept_conditioning.popitem(last=False)
        return cond

    def reset(self, model: torch.nn.Module) -> None:
        """T3.inference leaves its generation wrapper (`patched_model`: the Llama, speech embedding
        and head under new names, and for the multilingual model attention hooks) on T3 and marks
        it `compiled`; left there, it would also enter T3's state_dict. The KV cache lives inside
        one call. S3Gen keeps nothing between calls (its noise comes from the global generator)."""
        t3 = getattr(model, "t3", model)
        if "patched_model" in getattr(t3, "_modules", {}):
            del t3._modules["patched_model"]
        t3.__dict__.pop("patched_model", None)
        t3.compiled = False

    # -- export

    def export(self, model: torch.nn.Module, out_dir: Path, fmt: str) -> list[Path]:
        """fmt "chatterbox": the folder ChatterboxTTS.from_local loads (ve, t3_cfg, s3gen safetensors,
        tokenizer.json; a tiny model's sizes beside them); fmt "safetensors": model.safetensors with
        T3's state dict. LoRA is merged first."""
        if fmt not in ("chatterbox", "safetensors"):
            raise UsageError(f"--format {fmt}: Chatterbox models export as chatterbox or safetensors")
        if has_lora(model):
            model = merge_lora(copy.deepcopy(model))
        self.reset(model)
        out_dir = Path(out_dir)
        if fmt == "chatterbox":
            parts = P.Parts(model.t3, model.s3gen, model.ve)
            return P.write_folder(out_dir, parts, self.tokenizer_json(), self.sizes)
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / "model.safetensors"
        state = {k: v.detach().contiguous().clone() for k, v in model.t3.state_dict().items()}
        with fsio.atomic_path(target) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model": "chatterbox-t3"})
        return [target]


# ---- helpers -----------------------------------------------------------------------------------


def quiet_upstream() -> None:
    """T3.inference draws a tqdm bar per chunk on stderr (it takes no switch): the engine and the
    training samples print their own progress, so upstream's bar is made a silent one."""
    import functools

    import chatterbox.models.t3.t3 as t3_module
    from tqdm import tqdm

    t3_module.tqdm = functools.partial(tqdm, disable=True)  # upstream's module-level import


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit this Chatterbox: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def resolve_folder(spec: str) -> Path:
    """A from_local folder: a local directory, or hf://OWNER/REPO (its released files downloaded)."""
    from voicetune.models.hub import HF_PREFIX, HubFile, download_hub_file

    if spec.startswith(HF_PREFIX):
        repo = spec[len(HF_PREFIX) :].strip("/")
        paths = [download_hub_file(HubFile(repo, name)) for name in P.RELEASED_FILES]
        return paths[0].parent
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UsageError(
            f"--pretrained {spec}: give a folder with {', '.join(P.RELEASED_FILES)} "
            f"(what ChatterboxTTS.from_local reads) or hf://{P.HUB_REPO}"
        )
    missing = P.missing_files(folder)
    if missing:
        raise UsageError(f"--pretrained {spec}: not a Chatterbox folder; missing {', '.join(missing)}")
    return folder


def cached_features(
    audio: np.ndarray, fixed: P.Parts, fixed_id: str, features_dir: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """S3 tokens and the speaker embedding of a 16 kHz clip, from the cache when the same samples met
    the same fixed parts before."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(fixed_id.encode() + audio.tobytes()).hexdigest()[:40]
    path = features_dir / f"{key}.safetensors"
    if path.is_file():
        try:
            saved = load_file(str(path))
            return saved["tokens"], saved["speaker"]
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
            log.warning("cache file %s is unreadable; recomputing it", path)
    with torch.inference_mode():
        tokens, lengths = fixed.s3gen.tokenizer.forward([audio])
        tokens = tokens[0, : int(lengths[0])].long().cpu().contiguous()
        speaker = torch.from_numpy(fixed.ve.embeds_from_wavs([audio], sample_rate=P.S3_SAMPLE_RATE))[0].float()
    with fsio.atomic_path(path) as tmp:
        save_file({"tokens": tokens, "speaker": speaker.contiguous()}, str(tmp))
    return tokens, speaker


def generation_cap(t3: torch.nn.Module, text: str) -> int:
    """Most speech tokens to generate for `text`: ~3x its normal speaking time, within T3's limit."""
    tokens = math.ceil(len(text) * SECONDS_PER_CHAR * P.S3_TOKEN_RATE) + 10
    return int(min(tokens, t3.hp.max_speech_tokens))


# The studio's auto settings: chatterbox-tiny as built here, the released model as upstream's
# T3(), S3Gen() and VoiceEncoder() build it (T3 532 M trained; S3Gen 264 M and the voice encoder
# frozen). A unit of batch is a clip: T3's Llama over up to 30 s of speech tokens and its text.
SIZE_ESTIMATES = {
    "chatterbox-tiny": SizeEstimate(15_129_497, 586_912, 0.5, 0.05, "clips"),
    "chatterbox": SizeEstimate(797_762_633, 532_397_056, 12.4, 2.1, "clips"),
}


def create_tiny(config: Any = None) -> ChatterboxAdapter:
    return ChatterboxAdapter(config, "chatterbox-tiny", P.TINY_SIZES, default_pretrained=None)


def create_chatterbox(config: Any = None) -> ChatterboxAdapter:
    return ChatterboxAdapter(config, "chatterbox", None, default_pretrained=f"hf://{P.HUB_REPO}")
