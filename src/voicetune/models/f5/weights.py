"""Upstream F5-TTS weight files in and out.

In: released weights (`.safetensors`, keys `ema_model.*` plus `initted`/`step`, as
SWivid/F5-TTS ships them) and upstream Trainer checkpoints (`model_last.pt`, `model_N.pt`: a dict
with model_state_dict, ema_model_state_dict, optimizer_state_dict, scheduler_state_dict, update).
`.pt` files are read with `torch.load(weights_only=True)` only; a file that needs more (a pickle
that would run code) is refused with a CheckpointError and never read another way. The EMA
weights are preferred when a file has both, as upstream fine-tuning and inference use them.

Out: the `f5` export is what upstream's own loaders read without missing or unexpected keys:
`f5_tts.infer.utils_infer.load_model` (which strips `ema_model.` and drops `initted`/`step`) and
the upstream Trainer, which loads a `pretrained_*.safetensors` into its EMA strictly.
"""

from __future__ import annotations

import copy
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from voicetune import fsio
from voicetune.errors import CheckpointError
from voicetune.models.f5.spec import F5Spec
from voicetune.models.f5.vocab import Vocabulary

log = logging.getLogger("voicetune.models.f5")

TEXT_EMBED_KEY = "transformer.text_embed.text_embed.weight"
EMA_PREFIX = "ema_model."
EMA_COUNTERS = ("initted", "step", "update")  # ema_pytorch's buffers and the trainer's counter
# Keys of checkpoints older than upstream commit 305e3ea (mel buffers), dropped as upstream does.
LEGACY_KEYS = ("mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window")
# upstream's finetune_gradio expand_model_embeddings seeds torch with 666 and draws the new rows
# with torch.randn: the same generator and draw reproduce its rows exactly.
NEW_ROWS_SEED = 666


@dataclass
class UpstreamWeights:
    state: dict[str, torch.Tensor]  # keys of the CFM model's state dict ("transformer.*")
    description: str  # "EMA weights of an upstream Trainer checkpoint (update 1200)"


def torch_load_tensors_only(path: Path) -> object:
    """torch.load(weights_only=True); refusals and damage become CheckpointError, never a retry
    with weights_only=False."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):  # the legacy (non-zip) format cannot be memory-mapped
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path}: refused: it holds pickled objects other than tensors, which could run code when "
                "loaded; voicetune reads .pt files with torch.load(weights_only=True) only. Re-save its "
                "state dict as .safetensors where you trust the file, or use a released .safetensors"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or damaged ({err})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(
            f"{path}: damaged or truncated ({size:,} bytes; {str(err).splitlines()[0]}); download or copy it again"
        ) from None


def _strip(key: str) -> str:
    for prefix in (EMA_PREFIX, "module.", "_orig_mod."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def normalize_state(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EMA/DDP/compile prefixes stripped, EMA counters and legacy mel buffers dropped."""
    state = {_strip(k): v for k, v in raw.items() if k not in EMA_COUNTERS}
    return {k: v for k, v in state.items() if k not in LEGACY_KEYS}


def read_upstream_weights(path: Path) -> UpstreamWeights:
    """The model weights (EMA preferred) of an upstream .safetensors or .pt file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(
                f"{path}: damaged or not a safetensors file ({err}); download or copy it again"
            ) from None
        kind = "EMA weights" if any(k.startswith(EMA_PREFIX) for k in raw) else "weights"
        return UpstreamWeights(normalize_state(raw), f"{kind} of {path.name} (safetensors)")

    loaded = torch_load_tensors_only(path)
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not an F5-TTS checkpoint dict")
    update = loaded.get("update", loaded.get("step"))
    where = f"an upstream Trainer checkpoint (update {update})" if update is not None else path.name
    if isinstance(loaded.get("ema_model_state_dict"), dict):
        return UpstreamWeights(normalize_state(loaded["ema_model_state_dict"]), f"EMA weights of {where}")
    if isinstance(loaded.get("model_state_dict"), dict):
        return UpstreamWeights(normalize_state(loaded["model_state_dict"]), f"model weights of {where}")
    if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return UpstreamWeights(normalize_state(loaded), f"state dict {path.name}")
    raise CheckpointError(
        f"{path}: not an F5-TTS checkpoint (top-level keys: {sorted(loaded)[:6]}); expected "
        "ema_model_state_dict / model_state_dict as upstream's Trainer writes them"
    )


def grown_text_embedding(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` with rows appended the way upstream's expand_model_embeddings initializes them."""
    generator = torch.Generator().manual_seed(NEW_ROWS_SEED)
    extra = torch.randn((rows - weight.shape[0], weight.shape[1]), generator=generator)
    return torch.cat([weight, extra.to(weight.dtype)])


def fit_upstream_weights(
    model: torch.nn.Module, weights: UpstreamWeights, path: Path, vocab: Vocabulary, model_name: str
) -> int:
    """Load `weights` into `model`, growing the text embedding for tokens the vocabulary added.

    Returns how many embedding rows were added. Raises CheckpointError naming the file and what
    does not fit.
    """
    from voicetune.models.lora import LORA_KEY_MARKER, has_lora, to_injected_keys

    lora = has_lora(model)
    state = to_injected_keys(model, dict(weights.state)) if lora else dict(weights.state)
    # With LoRA injected, the adapters are new: every other weight must come from the file.
    expected = {k: v for k, v in model.state_dict().items() if LORA_KEY_MARKER not in k}
    grown = 0
    embed = state.get(TEXT_EMBED_KEY)
    if embed is not None and TEXT_EMBED_KEY in expected and embed.shape[0] != expected[TEXT_EMBED_KEY].shape[0]:
        file_tokens, model_rows = embed.shape[0] - 1, expected[TEXT_EMBED_KEY].shape[0]
        if file_tokens == vocab.base_size and model_rows > embed.shape[0]:
            state[TEXT_EMBED_KEY] = grown_text_embedding(embed, model_rows)
            grown = model_rows - embed.shape[0]
        else:
            added = f" + {len(vocab.added)} added from the dataset" if vocab.added else ""
            raise CheckpointError(
                f"{path}: its text embedding is for {file_tokens} tokens but the vocabulary ({vocab.source}) has "
                f"{vocab.base_size}{added}; pass --vocab with the vocab.txt this checkpoint was trained with"
            )
    wrong_shapes = [
        f"{k} is {tuple(v.shape)} in the file, {tuple(expected[k].shape)} in the model"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if wrong_shapes or missing or unexpected:
        details = "; ".join(
            wrong_shapes[:2]
            + ([f"missing {missing[:4]}"] if missing else [])
            + ([f"unexpected {unexpected[:4]}"] if unexpected else [])
        )
        raise CheckpointError(
            f"{path}: does not fit --model {model_name} ({details}); is it a checkpoint of another "
            "F5-TTS size? (F5TTS_v1_Base is f5-v1-base, F5TTS_v1_Small is f5-v1-small)"
        )
    model.load_state_dict(state, strict=not lora)
    return grown


# ---- export ---------------------------------------------------------------------------------


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    with fsio.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path


def upstream_config(spec: F5Spec, vocab_file: str = "vocab.txt") -> dict:
    """The upstream YAML config of this model, pointing at the exported vocabulary."""
    config = copy.deepcopy(spec.upstream_config)
    config["model"]["tokenizer"] = "custom"
    config["model"]["tokenizer_path"] = vocab_file
    return config


def export_f5(model: torch.nn.Module, spec: F5Spec, vocab: Vocabulary, out_dir: Path) -> list[Path]:
    """model.safetensors (released-weights form: ema_model.* + initted/step), vocab.txt, model.yaml."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {EMA_PREFIX + k: v for k, v in model.state_dict().items()}
    tensors["initted"] = torch.tensor(True)
    tensors["step"] = torch.tensor(0, dtype=torch.long)
    weights = _save_safetensors(
        tensors,
        out_dir / "model.safetensors",
        {"format": "pt", "voicetune_model": spec.name, "vocab_sha256": vocab.sha256},
    )
    vocab_path = vocab.write(out_dir / "vocab.txt")
    config_path = out_dir / "model.yaml"
    header = (
        f"# {spec.name} exported by voicetune: the upstream F5-TTS config of this architecture.\n"
        "# f5-tts_infer-cli --model_cfg model.yaml --ckpt_file model.safetensors --vocab_file vocab.txt \\\n"
        '#     --ref_audio REF.wav --ref_text "what REF.wav says" --gen_text "text to speak"\n'
    )
    fsio.atomic_write_text(
        config_path, header + yaml.safe_dump(upstream_config(spec), sort_keys=False, allow_unicode=True)
    )
    return [weights, vocab_path, config_path]


def export_state_dict(model: torch.nn.Module, spec: F5Spec, vocab: Vocabulary, out_dir: Path) -> list[Path]:
    """model.safetensors with the model's plain state dict (keys transformer.*), plus vocab.txt."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = _save_safetensors(
        dict(model.state_dict()),
        out_dir / "model.safetensors",
        {"format": "pt", "voicetune_model": spec.name, "vocab_sha256": vocab.sha256},
    )
    return [weights, vocab.write(out_dir / "vocab.txt")]
