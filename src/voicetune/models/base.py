"""The contract between the training loop and a model.

The loop (voicetune.train.loop) knows nothing about F5-TTS or XTTS: it is handed a `ModelAdapter`
that builds the model, loads the dataset, computes the loss and, optionally, synthesizes samples.
Adapters also read and write their upstream's file formats (pretrained weights in, export out).

Rules an adapter must keep so that resume is exact:
- `compute_loss` may draw random numbers only from torch's global generator (the loop saves and
  restores it); datasets and `collate` must be deterministic functions of the items they get.
- `checkpoint_weights` returns every tensor that training changes (all weights for a full
  fine-tune, only the adapter weights for LoRA) and `load_checkpoint_weights` restores them.
- `synthesize_samples` runs with a fixed seed and every generator restored afterwards (the loop
  does this), so samples never perturb training.
- `compute_loss` receives the model as the loop runs it, possibly wrapped in DDP: call it (its
  forward must compute what the loss needs) rather than reaching into its attributes. Every other
  method receives the bare model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class DataSplits:
    """Train and validation datasets plus what the batch sampler needs to know about them."""

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    # Each item's length, in a unit its memory grows with (F5: mel frames, XTTS: audio codes,
    # Chatterbox: text and speech tokens): `--batch-frames` packs batches by it, `plan` measures the
    # longest items first, and out-of-memory recovery weighs a split batch's pieces by it and
    # leaves out items at least as long as one that does not fit alone (voicetune.train.oom).
    train_lengths: Sequence[int]
    val_lengths: Sequence[int]
    fingerprint: str  # hash of the data actually used: recorded in run.json, compared on resume
    description: str = ""  # one line for the console: "412 train / 46 val clips, 1.2 h"


@dataclass(frozen=True)
class TransformerShape:
    """What the memory plan's formula needs to know about a model's trained transformer
    (`voicetune.train.plan`). An adapter that has one returns it from `memory_shape()`."""

    layers: int
    width: int  # hidden size
    heads: int
    ff_mult: float  # feed-forward width / hidden size
    batch_unit: str  # "frames" (the batch is counted in mel frames) or "items"
    tokens_per_unit: float  # sequence positions one batch unit puts through the transformer
    extra_layers: float = 0.0  # other per-token work (text encoders, embeddings) in layer equivalents
    quadratic_attention: bool = False  # attention keeps its (heads x seq x seq) matrix for backward


@dataclass
class SamplePrompt:
    """A fixed prompt synthesized at every milestone (and right after each resume)."""

    name: str  # file stem: "val_0003" or "text_1"
    text: str  # text to speak
    ref_audio: np.ndarray  # float32 mono at the adapter's sample rate
    ref_text: str
    target_audio: np.ndarray | None = None  # the real recording of `text`, when there is one


@dataclass
class SampleAudio:
    """What a sample prompt produced."""

    name: str
    text: str
    sample_rate: int
    generated: np.ndarray  # float32 mono
    reference: np.ndarray | None = None  # written as <name>_ref.wav
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SizeEstimate:
    """A model's sizes before it is built, for the studio's auto settings and disk projection: an
    estimate from published parameter counts, not a measurement (`voicetune plan` measures)."""

    parameters: int
    trainable: int  # of a full fine-tune (frozen parts left out)
    fixed_gib: float  # GPU memory of the model, its optimizer state and the framework before any batch
    per_unit_gib: float  # what one unit of batch adds (bf16 activations)
    batch_unit: str  # "frames" (a batch by total mel frames) or "clips"


@runtime_checkable
class ModelAdapter(Protocol):
    """What the training loop needs from a model. See the module docstring for the rules."""

    name: str
    sample_rate: int
    export_format: str  # the upstream format RUN/ready/ gets when training ends ("f5", "xtts", ...)

    def default_settings(self) -> dict[str, Any]:
        """Defaults for TrainConfig fields left unset (None), e.g. lr, warmup_updates, batch_frames."""

    def check_language(self, language: str | None) -> None:
        """A UsageError, before any work, when the family cannot be trained to speak `language`
        (the run's: --language or the dataset's)."""

    def size_estimate(self) -> SizeEstimate | None:
        """Sizes known without building the model (the studio's auto settings), or None."""

    def architecture(self) -> dict[str, Any]:
        """Fields that decide tensor shapes; a resume whose values differ is refused."""

    def use_saved_architecture(self, architecture: dict[str, Any]) -> None:
        """A checkpoint's saved `architecture()`, given before `build_model` when one is resumed or
        used: an adapter whose shapes were learnt from the training data (an extended vocabulary)
        takes them from here instead of the dataset, which may have changed or be gone."""

    def build_model(self) -> torch.nn.Module:
        """The model on CPU in fp32, pretrained weights loaded when configured."""

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Parameters the optimizer updates (all of them, or only LoRA's)."""

    def checkpoint_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Tensors a checkpoint must hold to restore the model (full, or LoRA-only)."""

    def load_checkpoint_weights(self, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
        """Inverse of `checkpoint_weights`; raises CheckpointError naming missing/unexpected keys."""

    def load_upstream_weights(self, model: torch.nn.Module, path: Path) -> None:
        """Load an upstream file (released weights or an upstream trainer's checkpoint) into `model`.

        Used by --pretrained and by --init-from when it names an upstream file. Pickled files are
        read with torch.load(weights_only=True) only; a file it refuses raises CheckpointError.
        """

    def load_data(self, data_dir: Path, cache_dir: Path) -> DataSplits:
        """Read a dataset folder (LJSpeech layout) into train/val splits; `cache_dir` may hold
        derived data (mel spectrograms, codes) keyed by content so that reruns reuse it."""

    def collate(self, items: list[Any]) -> Any:
        """Turn dataset items into one batch (deterministic)."""

    def compute_loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """Scalar training loss for a batch."""

    def sample_prompts(self, splits: DataSplits, extra_texts: Iterable[str], limit: int) -> list[SamplePrompt]:
        """Fixed prompts for samples: some validation items plus any --sample-text."""

    def synthesize_samples(self, model: torch.nn.Module, prompts: list[SamplePrompt]) -> list[SampleAudio]:
        """Speak the prompts with `model` (the EMA weights)."""

    def export(self, model: torch.nn.Module, out_dir: Path, fmt: str) -> list[Path]:
        """Write `model` (EMA weights loaded) in an upstream format, LoRA merged; returns the files."""

    def synthesize(
        self,
        model: torch.nn.Module,
        text: str,
        ref_audio: np.ndarray,
        ref_text: str | None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """Speak `text` in the voice of `ref_audio` (float32 mono at sample_rate); long text is split
        into sentences. Randomness comes from torch's global generator (the caller seeds it)."""

    def reset(self, model: torch.nn.Module) -> None:
        """Forget the per-request state a synthesis left in `model` (BaseAdapter.reset)."""

    def speaking(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """A context around one synthesis call that calls `reset` however the call ends."""


class BaseAdapter:
    """Defaults shared by adapters: full-model checkpoints, all parameters trainable, no samples.

    LoRA comes for free: once `build_model` has applied it (`voicetune.models.lora`), only the
    adapters require grad, and checkpoints hold and restore only the LoRA tensors.
    """

    name = "base"
    sample_rate = 24000
    export_format = "safetensors"

    def default_settings(self) -> dict[str, Any]:
        return {}

    def size_estimate(self) -> SizeEstimate | None:
        return None

    def use_saved_architecture(self, architecture: dict[str, Any]) -> None:
        return None

    def weights_source(self) -> str | None:
        """Where `build_model` takes the starting weights from (a path or hf:// file), or None
        when it initializes them (`voicetune plan` says it)."""
        return getattr(self, "pretrained", None)

    def describe_weights(self) -> str:
        """Where the starting weights come from, said without touching the network (`voicetune plan`)."""
        from voicetune.models.hub import describe_source

        source = self.weights_source()
        return describe_source(source) if source else "initialized from --seed (no pretrained weights)"

    def without_pretrained(self) -> ModelAdapter | None:
        """An adapter that builds the same architecture without reading `weights_source()` (for a
        plan: sizes need shapes, not values), or None when the architecture itself comes from
        downloaded files. This one needs no weights when it has none to read."""
        return None if self.weights_source() else self  # type: ignore[return-value]  # a subclass is an adapter

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def checkpoint_weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from voicetune.models.lora import has_lora, lora_state_dict

        if has_lora(model):
            return lora_state_dict(model)
        return dict(model.state_dict())

    def load_checkpoint_weights(self, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
        from voicetune.errors import CheckpointError
        from voicetune.models.lora import has_lora, load_lora_state_dict

        if has_lora(model):
            load_lora_state_dict(model, weights)
            return
        result = model.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"checkpoint weights do not fit model {self.name}: "
                f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )

    def sample_prompts(self, splits: DataSplits, extra_texts: Iterable[str], limit: int) -> list[SamplePrompt]:
        return []

    def synthesize_samples(self, model: torch.nn.Module, prompts: list[SamplePrompt]) -> list[SampleAudio]:
        return []

    # ---- what the synthesis engine (voicetune.synthesis.engine) asks of a model ---------------
    # An adapter that cuts long text itself keeps these defaults: the whole text is one chunk.

    cross_fade_seconds = 0.0  # how much consecutive chunks overlap when joined (upstream's choice)
    needs_ref_text = False  # whether a voice's reference clip needs its transcript (F5-TTS does)

    def check_language(self, language: str | None) -> None:
        """F5-TTS and XTTS learn any language (F5 extends its vocabulary, XTTS adds the language)."""

    def spoken_language(self, model: torch.nn.Module, language: str | None) -> str | None:
        """The language the model will speak `language` in; a UsageError before any work when it
        cannot (XTTS: a language outside its config). Models without languages speak what they read."""
        return language

    def text_chunks(
        self, text: str, ref_audio: np.ndarray, ref_text: str | None, speed: float = 1.0, language: str | None = None
    ) -> list[str]:
        """`text` cut into the pieces one generation call speaks (upstream's limits)."""
        return [text]

    def synthesize_chunk(
        self,
        model: torch.nn.Module,
        chunk: str,
        ref_audio: np.ndarray,
        ref_text: str | None,
        speed: float = 1.0,
        language: str | None = None,
    ) -> np.ndarray:
        """One piece of `text_chunks` spoken; randomness from torch's global generator."""
        return self.synthesize(model, chunk, ref_audio, ref_text, speed=speed, language=language)  # type: ignore[attr-defined]  # every adapter that speaks has synthesize

    def unsayable(self, text: str, language: str | None = None) -> set[str]:
        """Characters of `text` the model has no token for (read as silence or skipped)."""
        return set()

    # ---- per-request state -----------------------------------------------------------------------
    # A synthesis may stop anywhere: a client that hangs up, a time limit, an exception inside a
    # chunk. Whatever a model keeps between its layer calls (F5's text-embedding cache, XTTS's GPT
    # prefix) is then left half-made, and the next request would meet it. Each adapter names that
    # state in `reset`; `speaking` wraps every synthesis call so that it always runs.

    def reset(self, model: torch.nn.Module) -> None:
        """Forget what synthesis left in `model`, so that the next call meets it as freshly loaded.
        Runs on the thread that synthesized (some caches are thread-local). Models that keep
        nothing between calls keep this default."""
        return None

    @contextlib.contextmanager
    def speaking(self, model: torch.nn.Module) -> Iterator[None]:
        """One synthesis call on `model`: however it ends (returned, raised, cancelled), `reset`."""
        try:
            yield
        finally:
            self.reset(model)


def voice_swap_prompts(pool: Any, extra_texts: Iterable[str], limit: int, sample_rate: int) -> list[SamplePrompt]:
    """Sample prompts of datasets whose items hold `texts` and `audio(index, rate)` (XTTS,
    Chatterbox): up to `limit` clips each spoken in the voice of the next one (so that the real
    recording is the target), then every extra text in the voice of the first."""
    if len(pool) == 0:
        return []
    prompts = []
    for k in range(min(limit, len(pool))):
        ref = (k + 1) % len(pool)
        prompts.append(
            SamplePrompt(
                f"val_{k:04d}", pool.texts[k], pool.audio(ref, sample_rate), pool.texts[ref], pool.audio(k, sample_rate)
            )
        )
    for n, text in enumerate(extra_texts, start=1):
        prompts.append(SamplePrompt(f"text_{n}", text, pool.audio(0, sample_rate), pool.texts[0]))
    return prompts


class CrossFader:
    """Joins chunks of audio one at a time with a linear cross-fade of `overlap` samples (upstream
    F5-TTS's infer_batch_process), handing out at once what no later chunk can change: a stream of
    pieces whose concatenation is exactly `cross_fade` of the chunks."""

    def __init__(self, overlap: int):
        self.overlap = max(0, int(overlap))
        self._tail: np.ndarray | None = None

    def add(self, wave: np.ndarray) -> np.ndarray:
        """Join `wave`; returns the audio now final (all but the last `overlap` samples so far)."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if self._tail is None:
            joined = wave
        else:
            n = min(self.overlap, len(self._tail), len(wave))
            if n <= 0:
                joined = np.concatenate([self._tail, wave])
            else:
                faded = self._tail[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
                joined = np.concatenate([self._tail[:-n], faded, wave[n:]])
        keep = min(self.overlap, len(joined))
        self._tail = joined[len(joined) - keep :]
        return joined[: len(joined) - keep].astype(np.float32)

    def finish(self) -> np.ndarray:
        """The held-back end of the last chunk."""
        tail, self._tail = self._tail, None
        return np.zeros(0, dtype=np.float32) if tail is None else tail.astype(np.float32)


def cross_fade(waves: list[np.ndarray], overlap: int) -> np.ndarray:
    """Chunks joined with a linear cross-fade of `overlap` samples (upstream's infer_batch_process)."""
    fader = CrossFader(overlap)
    pieces = [fader.add(w) for w in waves]
    return np.concatenate([*pieces, fader.finish()]).astype(np.float32)
