"""XTTS's upstream files, in and out: the coqui/XTTS-v2 folder layout and xtts-tiny's built-in parts.

A coqui XTTS folder (what https://huggingface.co/coqui/XTTS-v2 holds, and what `Xtts.load_checkpoint
(config, checkpoint_dir=...)` reads):

    config.json        XttsConfig: model_args (GPT and HiFi-GAN sizes), languages, inference settings
    model.pth          {"model": Xtts state dict} (GPT, HiFi-GAN decoder, speaker encoder, mel_stats)
    dvae.pth           DiscreteVAE state dict: turns 22.05 kHz audio into the GPT's audio codes
    mel_stats.pth      80 per-channel mel normalization factors
    vocab.json         the BPE tokenizer (Hugging Face `tokenizers` format) with language tokens
    speakers_xtts.pth  optional: the studio speakers' latents

`XttsParts` holds everything XTTS needs besides the trained GPT: read from such a folder, or built
in for xtts-tiny. Every .pth goes through `load_pickled_checkpoint` (weights_only); the original
model.pth pickles coqui's config dataclasses, which are allowed by name and nothing else.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voicetune import fsio
from voicetune.checkpoints.upstream import load_pickled_checkpoint
from voicetune.errors import CheckpointError, UsageError, VoicetuneError

log = logging.getLogger("voicetune.models")

HUB_REPO = "coqui/XTTS-v2"
CONFIG_FILE, MODEL_FILE, DVAE_FILE, MEL_STATS_FILE, VOCAB_FILE = (
    "config.json",
    "model.pth",
    "dvae.pth",
    "mel_stats.pth",
    "vocab.json",
)
SPEAKERS_FILE = "speakers_xtts.pth"
REQUIRED_FILES = (CONFIG_FILE, MODEL_FILE, DVAE_FILE, MEL_STATS_FILE, VOCAB_FILE)

# xtts-tiny: upstream's classes at toy sizes. The HiFi-GAN decoder and speaker encoder keep
# upstream's fixed sizes (XttsArgs cannot shrink them), so an export loads in upstream's Xtts.
TINY_MODEL_ARGS = {
    "gpt_layers": 2,
    "gpt_n_model_channels": 64,
    "gpt_n_heads": 4,
    "gpt_num_audio_tokens": 256,  # the tiny DVAE's 254 codes + start + stop
    "gpt_start_audio_token": 254,
    "gpt_stop_audio_token": 255,
    "gpt_use_perceiver_resampler": True,  # as XTTS-v2
    "decoder_input_dim": 64,
}
TINY_DVAE_ARGS: dict[str, Any] = {
    "channels": 80,
    "normalization": None,
    "positional_dims": 1,
    "num_tokens": 254,
    "codebook_dim": 32,
    "hidden_dim": 32,
    "num_resnet_blocks": 1,
    "kernel_size": 3,
    "num_layers": 2,
    "use_transposed_convs": False,
}
TINY_DVAE_SEED = 20240611
# Inference settings of coqui/XTTS-v2's config.json, used for xtts-tiny too.
INFERENCE_SETTINGS = {
    "temperature": 0.75,
    "length_penalty": 1.0,
    "repetition_penalty": 5.0,
    "top_k": 50,
    "top_p": 0.85,
    "gpt_cond_len": 30,
    "gpt_cond_chunk_len": 4,
    "max_ref_len": 30,
}
# Accented Latin, Cyrillic, Arabic and Devanagari letters added to the tiny tokenizer, one token each.
TINY_EXTRA_CHARS = (
    "0123456789àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿāăąćčďđēėęěğīıķĺľłńňőœŕřśşšţťūůűųźżžșț"
    + "".join(chr(c) for c in range(0x430, 0x460))  # Cyrillic lowercase
    + "".join(chr(c) for c in range(0x621, 0x64B))  # Arabic letters
    + "".join(chr(c) for c in range(0x900, 0x970))  # Devanagari
)


@dataclass
class XttsParts:
    """The fixed parts of an XTTS model and where they come from."""

    config: Any  # TTS XttsConfig
    vocab_json: str
    dvae: torch.nn.Module  # TTS DiscreteVAE, eval mode, frozen
    mel_stats: torch.Tensor  # (80,)
    model_path: Path | None  # upstream model.pth to load into Xtts; None: initialize (xtts-tiny)
    speakers_path: Path | None
    source: str  # "built-in tiny parts" or the folder

    def tokenizer(self):
        from tokenizers import Tokenizer
        from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

        tokenizer = VoiceBpeTokenizer()
        tokenizer.tokenizer = Tokenizer.from_str(self.vocab_json)
        return tokenizer

    # Cached: the parts are frozen, and architecture() (called at every save) needs this hash of
    # the whole DVAE (211 MB for XTTS-v2).
    @functools.cached_property
    def dvae_fingerprint(self) -> str:
        """Identity of what turns audio into codes: the DVAE's tensors and the mel statistics."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.dvae.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(self.mel_stats.detach().cpu().float().numpy().tobytes())
        return digest.hexdigest()

    @functools.cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.dvae_fingerprint.encode())
        digest.update(self.vocab_json.encode())
        digest.update(json.dumps(model_args_dict(self.config), sort_keys=True, default=str).encode())
        return digest.hexdigest()


# ---- where the parts come from -------------------------------------------------------------


def tiny_parts() -> XttsParts:
    """xtts-tiny's parts: a tiny DVAE, coqui's English BPE extended with XTTS's language tokens."""
    from TTS.tts.configs.xtts_config import XttsConfig

    config = XttsConfig()
    for key, value in {**TINY_MODEL_ARGS}.items():
        setattr(config.model_args, key, value)
    for setting, setting_value in INFERENCE_SETTINGS.items():
        setattr(config, setting, setting_value)
    return XttsParts(
        config, tiny_vocab_json(config.languages), tiny_dvae(), torch.ones(80), None, None, "built-in tiny parts"
    )


def pretrained_parts(folder: Path) -> XttsParts:
    """Parts of a coqui XTTS folder (config.json, dvae.pth, mel_stats.pth, vocab.json; model.pth)."""
    from TTS.tts.configs.xtts_config import XttsConfig

    config = XttsConfig()
    try:
        config.load_json(str(folder / CONFIG_FILE))
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise CheckpointError(f"{folder / CONFIG_FILE}: not a coqui XTTS config ({err})") from None
    mel_stats = load_pickled_checkpoint(folder / MEL_STATS_FILE)
    if not isinstance(mel_stats, torch.Tensor) or mel_stats.numel() != 80:
        raise CheckpointError(f"{folder / MEL_STATS_FILE}: expected a tensor of 80 mel statistics")
    speakers = folder / SPEAKERS_FILE
    return XttsParts(
        config,
        (folder / VOCAB_FILE).read_text(encoding="utf-8"),
        load_dvae(folder / DVAE_FILE),
        mel_stats.float().reshape(80),
        folder / MODEL_FILE,
        speakers if speakers.is_file() else None,
        str(folder),
    )


def resolve_pretrained(spec: str) -> Path:
    """--pretrained FOLDER | FOLDER/model.pth | coqui/XTTS-v2 | hf://coqui/XTTS-v2 -> a local folder."""
    text = spec.strip()
    path = Path(text).expanduser()
    if path.is_file():
        path = path.parent
    if path.is_dir():
        missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
        if missing:
            raise UsageError(
                f"--pretrained {spec}: the folder lacks {', '.join(missing)}; an XTTS folder holds "
                f"{', '.join(REQUIRED_FILES)} (the files of https://huggingface.co/{HUB_REPO})"
            )
        return path
    repo = text[len("hf://") :] if text.startswith("hf://") else text
    parts = repo.strip("/").split("/")
    if text.startswith("hf://") or (len(parts) == 2 and all(re.fullmatch(r"[\w.-]+", p) for p in parts)):
        if len(parts) < 2:
            raise UsageError(f"--pretrained {spec}: write hf://OWNER/REPO, e.g. hf://{HUB_REPO}")
        return download_snapshot("/".join(parts[:2]), spec)
    raise UsageError(
        f"--pretrained {spec}: no such folder; pass a folder holding {', '.join(REQUIRED_FILES)} "
        f"or the hub repo {HUB_REPO}"
    )


def download_snapshot(repo_id: str, spec: str) -> Path:
    """The XTTS files of a hub repo: from the Hugging Face cache, else downloaded once. An
    unreachable hub fails at once (huggingface_hub itself would retry for half a minute)."""
    from huggingface_hub import snapshot_download

    from voicetune.models.hub import hub_offline, hub_reachable

    patterns = [*REQUIRED_FILES, SPEAKERS_FILE]
    advice = (
        f"On a machine with internet, download {', '.join(REQUIRED_FILES)} from https://huggingface.co/{repo_id} "
        "into a folder, copy it here and pass --pretrained FOLDER"
    )
    try:  # an earlier download may sit in the cache
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache: downloaded below
        pass
    if hub_offline() or not hub_reachable():
        raise VoicetuneError(
            f"--pretrained {spec}: cannot download {repo_id}: the Hugging Face hub cannot be reached "
            f"(or HF_HUB_OFFLINE is set) and it is not in the local cache. {advice}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:  # noqa: BLE001 - unknown repo, HTTP error: the hub's own words, whole, on one line
        said = " ".join(str(err).split()) or type(err).__name__
        raise VoicetuneError(
            f"--pretrained {spec}: cannot download {repo_id} from the Hugging Face hub: {said}. {advice}"
        ) from None


# ---- reading upstream files ----------------------------------------------------------------


def coqui_config_globals() -> list:
    """coqui's config dataclasses that the original XTTS model.pth pickles, under their old and new
    module paths (the same list coqui allows itself when it loads the file with weights_only)."""
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig

    return [
        XttsConfig,
        BaseDatasetConfig,
        XttsArgs,
        XttsAudioConfig,
        (XttsArgs, "TTS.tts.models.xtts.XttsArgs"),
        (XttsAudioConfig, "TTS.tts.models.xtts.XttsAudioConfig"),
    ]


def read_xtts_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """An Xtts state dict from a model.pth: released weights or a coqui GPTTrainer checkpoint.

    Keys are normalized as coqui's `Xtts.get_compatible_checkpoint_state_dict` does (the trainer's
    "xtts." prefix removed, its DVAE and mel-extractor entries dropped); a GPT-only file (upstream's
    gpt_checkpoint, keys like "text_embedding.weight") gets the "gpt." prefix.
    """
    loaded = load_pickled_checkpoint(path, allowed_globals=coqui_config_globals())
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected an XTTS state dict (a dict of tensors, or {{'model': ...}})")
    dropped = ("torch_mel_spectrogram_style_encoder", "torch_mel_spectrogram_dvae", "dvae")
    normalized = {}
    for key, tensor in state.items():
        key = key[len("xtts.") :] if key.startswith("xtts.") else key
        if key.split(".")[0] not in dropped and not is_inference_alias(key):
            normalized[key] = tensor
    if "text_embedding.weight" in normalized and "gpt.text_embedding.weight" not in normalized:
        normalized = {f"gpt.{k}": v for k, v in normalized.items()}
    return normalized


def load_dvae(path: Path) -> torch.nn.Module:
    """A DiscreteVAE built to the shapes found in `path` (XTTS-v2's or xtts-tiny's) with its weights."""
    state = load_pickled_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        args = dvae_args_from_state(state)
    except (KeyError, AttributeError, TypeError, IndexError):
        raise CheckpointError(f"{path}: not an XTTS DVAE state dict (no encoder/codebook weights)") from None
    dvae = make_dvae(args)
    result = dvae.load_state_dict(state, strict=False)
    essential = [k for k in result.missing_keys if k.startswith(("encoder.", "codebook.embed"))]
    if essential:
        raise CheckpointError(f"{path}: the DVAE lacks {essential[:5]}")
    return dvae


def dvae_args_from_state(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """DiscreteVAE(...) arguments that fit a state dict: upstream's recipe hard-codes XTTS-v2's
    (hidden 512, codebook 512, 1024 codes, 3 res-blocks); reading them back lets tiny DVAEs load too."""
    first = state["encoder.0.0.weight"]
    layers = sum(1 for i in range(16) if f"encoder.{i}.0.weight" in state)
    resblocks = sum(1 for i in range(16) if f"encoder.{i}.net.0.weight" in state)
    embed = state["codebook.embed"]
    return {
        "channels": first.shape[1],
        "normalization": None,
        "positional_dims": 1,
        "num_tokens": embed.shape[1],
        "codebook_dim": embed.shape[0],
        "hidden_dim": first.shape[0],
        "num_resnet_blocks": resblocks,
        "kernel_size": first.shape[-1],
        "num_layers": layers,
        "use_transposed_convs": False,
    }


def make_dvae(args: dict[str, Any]) -> torch.nn.Module:
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    dvae = DiscreteVAE(**args)
    dvae.eval()
    dvae.requires_grad_(False)
    return dvae


def tiny_dvae() -> torch.nn.Module:
    """A tiny DiscreteVAE, the same on every machine and independent of any seed.

    Its codebook is initialized (the way k-means is) from the encoder's outputs on fixed noise
    shaped like log-mel frames: with upstream's random codebook, a few codes take nearly all speech
    frames; this way ~70 codes share espeak speech, so the GPT has a real sequence to learn.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_DVAE_SEED)
        dvae = make_dvae(TINY_DVAE_ARGS)
        frames = torch.randn(1, TINY_DVAE_ARGS["channels"], 8 * TINY_DVAE_ARGS["num_tokens"]) * 3.0 - 5.0
    with torch.no_grad():
        outputs = dvae.encoder(frames).permute(0, 2, 1).reshape(-1, TINY_DVAE_ARGS["codebook_dim"])
        picks = torch.linspace(0, outputs.shape[0] - 1, TINY_DVAE_ARGS["num_tokens"]).long()
        dvae.codebook.embed.copy_(outputs[picks].T)
        dvae.codebook.embed_avg.copy_(outputs[picks].T)
    return dvae


def tiny_vocab_json(languages: list[str]) -> str:
    """xtts-tiny's vocab.json: the English BPE that coqui ships (tortoise's tokenizer.json) plus
    XTTS's [START] and language tokens ([en], [pt], [zh-cn] ...) and single-letter tokens for
    accented Latin, Cyrillic, Arabic and Devanagari, in the `tokenizers` format XTTS reads."""
    import TTS

    base = Path(TTS.__file__).parent / "tts" / "utils" / "assets" / "tortoise" / "tokenizer.json"
    if not base.is_file():
        raise VoicetuneError(f"{base}: coqui-tts's English tokenizer is missing; reinstall coqui-tts")
    data = json.loads(base.read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for token in ["[START]", *(f"[{lang}]" for lang in languages)]:
        vocab[token] = next_id
        data["added_tokens"].append(
            {
                "id": next_id,
                "special": True,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
            }
        )
        next_id += 1
    for char in TINY_EXTRA_CHARS:
        if char not in vocab:
            vocab[char] = next_id
            next_id += 1
    return json.dumps(data, ensure_ascii=False)


SHAPE_ARGS = (
    "gpt_layers",
    "gpt_n_model_channels",
    "gpt_n_heads",
    "gpt_max_audio_tokens",
    "gpt_max_text_tokens",
    "gpt_max_prompt_tokens",
    "gpt_num_audio_tokens",
    "gpt_start_audio_token",
    "gpt_stop_audio_token",
    "gpt_code_stride_len",
    "gpt_use_perceiver_resampler",
    "decoder_input_dim",
    "d_vector_dim",
    "input_sample_rate",
    "output_sample_rate",
)


def model_args_dict(config: Any) -> dict[str, Any]:
    """The model_args that decide tensor shapes and the meaning of the audio codes."""
    return {k: getattr(config.model_args, k) for k in SHAPE_ARGS}


def is_inference_alias(key: str) -> bool:
    """Keys that coqui's init_gpt_for_inference adds as second names of existing weights."""
    return (
        key.startswith("gpt.gpt_inference.")
        or key.startswith("gpt.gpt.wte.")
        or ".gpt.gpt_inference." in key
        or ".gpt.gpt.wte." in key
    )


# ---- writing ---------------------------------------------------------------------------------


def save_pth(obj: Any, path: Path) -> Path:
    """torch.save of plain tensors and containers (so weights_only loads read it)."""
    with fsio.atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def write_text(text: str, path: Path) -> Path:
    fsio.atomic_write_text(path, text)
    return path


def write_xtts_folder(out_dir: Path, xtts_state: dict[str, torch.Tensor], parts: XttsParts, config: Any) -> list[Path]:
    """The folder upstream's `Xtts.load_checkpoint(config, checkpoint_dir=out_dir)` reads."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        save_pth({"model": plain_tensors(xtts_state)}, out_dir / MODEL_FILE),
        *write_parts(out_dir, parts, config),
    ]
    if parts.speakers_path is not None:
        with fsio.atomic_path(out_dir / SPEAKERS_FILE) as tmp:
            shutil.copyfile(parts.speakers_path, tmp)
        written.append(out_dir / SPEAKERS_FILE)
    return written


def write_parts(out_dir: Path, parts: XttsParts, config: Any = None) -> list[Path]:
    """The fixed parts (dvae.pth, mel_stats.pth, vocab.json, config.json) in upstream's formats."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        save_pth(plain_tensors(parts.dvae.state_dict()), out_dir / DVAE_FILE),
        save_pth(parts.mel_stats.detach().cpu().clone(), out_dir / MEL_STATS_FILE),
        write_text(parts.vocab_json, out_dir / VOCAB_FILE),
        write_text(config_json(config if config is not None else parts.config), out_dir / CONFIG_FILE),
    ]


def config_json(config: Any) -> str:
    """config.json as coqui writes it, without paths of this machine."""
    config = copy.deepcopy(config)
    config.model_args.tokenizer_file = ""
    return json.dumps(config.to_dict(), indent=4, default=str)


def plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (no shared storage, nothing but tensors)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
