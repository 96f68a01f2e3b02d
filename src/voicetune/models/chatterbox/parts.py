"""Chatterbox's parts built from upstream's own classes, and the folder `ChatterboxTTS.from_local` reads.

    chatterbox       T3() / S3Gen() / VoiceEncoder() at their released sizes (upstream builds them
                     with no configuration), weights from ResembleAI/chatterbox
    chatterbox-tiny  the same classes at toy sizes (`TINY_SIZES`): a 2-layer Llama 32 wide for T3,
                     one-block encoders and a 16-channel HiFT for S3Gen, a 32-wide voice encoder

Upstream's classes take their sizes from module constants (T3's `LLAMA_CONFIGS[hp.llama_config_name]`)
or none at all (S3Gen's `S3Token2Mel.__init__`). A tiny model is built by the same constructors
with other arguments, and its sizes are written beside an export (`CONFIG_FILE`) so that upstream's
classes can be built again from them (`build_parts(read_sizes(folder))`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voicetune import fsio
from voicetune.errors import CheckpointError

HUB_REPO = "ResembleAI/chatterbox"
# What ChatterboxTTS.from_local reads (conds.pt is optional: a built-in voice).
VE_FILE, T3_FILE, S3GEN_FILE, TOKENIZER_FILE, CONDS_FILE = (
    "ve.safetensors",
    "t3_cfg.safetensors",
    "s3gen.safetensors",
    "tokenizer.json",
    "conds.pt",
)
RELEASED_FILES = (VE_FILE, T3_FILE, S3GEN_FILE, TOKENIZER_FILE)
CONFIG_FILE = "voicetune_chatterbox.json"  # the sizes of a model upstream cannot build without them

S3_SAMPLE_RATE = 16000  # S3 tokenizer and voice encoder input (chatterbox.models.s3tokenizer.S3_SR)
S3GEN_SAMPLE_RATE = 24000  # S3Gen's output
S3_TOKEN_RATE = 25  # speech tokens per second
SPEECH_VOCAB_SIZE = 6561  # S3 tokens; T3's speech vocabulary adds its start and stop tokens above

TINY_LLAMA = {
    "vocab_size": 8,  # unused: T3 feeds inputs_embeds (as upstream's Llama_520M)
    "max_position_embeddings": 2048,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "attn_implementation": "sdpa",
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "mlp_bias": False,
    "model_type": "llama",
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "use_cache": True,
}
TINY_SIZES: dict[str, Any] = {
    "t3": {
        "llama_config_name": "voicetune-tiny",
        "llama": TINY_LLAMA,
        "text_tokens_dict_size": 256,  # start_text_token is 255
        "max_text_tokens": 256,
        "max_speech_tokens": 500,
        "speech_cond_prompt_len": 25,  # 1 s of the reference (released: 150, 6 s)
        "speaker_embed_size": 32,
        # The perceiver resampler is built 1024 wide whatever the model's width (Perceiver()).
        "use_perceiver_resampler": False,
    },
    "s3gen": {
        "tokenizer": {
            "n_mels": 128,
            "n_audio_state": 64,
            "n_audio_head": 1,
            "n_audio_layer": 1,
        },  # heads 64 wide (its rotary table),
        "speaker_encoder": {"growth_rate": 4, "bn_size": 2, "init_channels": 16},
        # The upsampling encoder's lookahead and upsampling layers are 512 wide whatever its size.
        "encoder": {"output_size": 512, "attention_heads": 2, "linear_units": 64, "num_blocks": 1},
        "decoder": {"channels": [32], "attention_head_dim": 16, "n_blocks": 1, "num_mid_blocks": 1, "num_heads": 2},
        "mel2wav": {"base_channels": 16, "f0_channels": 16},
    },
    "ve": {"ve_hidden_size": 32, "speaker_embed_size": 32},
}


@dataclass
class Parts:
    """Upstream modules of one Chatterbox: T3 (trained), S3Gen and the voice encoder (fixed)."""

    t3: torch.nn.Module
    s3gen: torch.nn.Module
    ve: torch.nn.Module


def t3_config(sizes: dict[str, Any] | None):
    """Upstream's T3Config: English at the released size, or `sizes["t3"]` (its Llama registered
    in upstream's LLAMA_CONFIGS under its name, where T3 looks it up)."""
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config.english_only()
    if sizes is None:
        return hp
    t3 = dict(sizes["t3"])
    LLAMA_CONFIGS[t3["llama_config_name"]] = dict(t3.pop("llama"))
    for key, value in t3.items():
        setattr(hp, key, value)
    return hp


def build_t3(sizes: dict[str, Any] | None) -> torch.nn.Module:
    from chatterbox.models.t3 import T3

    return T3(t3_config(sizes))


def build_ve(sizes: dict[str, Any] | None) -> torch.nn.Module:
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.models.voice_encoder.config import VoiceEncConfig

    if sizes is None:
        return VoiceEncoder()
    hp = VoiceEncConfig()
    for key, value in sizes["ve"].items():
        setattr(hp, key, value)
    return VoiceEncoder(hp)


def build_s3gen(sizes: dict[str, Any] | None) -> torch.nn.Module:
    """S3Gen (upstream's S3Token2Wav): S3Gen() at the released size; otherwise the very modules its
    constructor makes (S3Token2Mel.__init__ and S3Token2Wav.__init__, chatterbox 0.1.7), at `sizes`."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.const import S3GEN_SR
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.hifigan import HiFTGenerator
    from chatterbox.models.s3gen.transformer.upsample_encoder import UpsampleConformerEncoder
    from chatterbox.models.s3gen.utils.mel import mel_spectrogram
    from chatterbox.models.s3gen.xvector import CAMPPlus

    if sizes is None:
        return S3Gen()
    s = sizes["s3gen"]
    gen = S3Gen.__new__(S3Gen)
    torch.nn.Module.__init__(gen)
    gen.tokenizer = build_s3_tokenizer(s["tokenizer"])
    gen.mel_extractor = mel_spectrogram
    gen.speaker_encoder = CAMPPlus(memory_efficient=False, **s["speaker_encoder"])
    gen.meanflow = False
    enc = s["encoder"]
    encoder = UpsampleConformerEncoder(
        output_size=enc["output_size"],
        attention_heads=enc["attention_heads"],
        linear_units=enc["linear_units"],
        num_blocks=enc["num_blocks"],
        dropout_rate=0.1,
        positional_dropout_rate=0.1,
        attention_dropout_rate=0.1,
        normalize_before=True,
        input_layer="linear",
        pos_enc_layer_type="rel_pos_espnet",
        selfattention_layer_type="rel_selfattn",
        input_size=enc["output_size"],
        use_cnn_module=False,
        macaron_style=False,
    )
    dec = s["decoder"]
    estimator = ConditionalDecoder(
        in_channels=320, out_channels=80, causal=True, dropout=0.0, act_fn="gelu", meanflow=False, **dec
    )
    decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
    gen.flow = CausalMaskedDiffWithXvec(input_size=enc["output_size"], encoder=encoder, decoder=decoder)
    gen.resamplers = {}
    wav = s["mel2wav"]
    gen.mel2wav = HiFTGenerator(
        sampling_rate=S3GEN_SR,
        base_channels=wav["base_channels"],
        upsample_rates=[8, 5, 3],
        upsample_kernel_sizes=[16, 11, 7],
        source_resblock_kernel_sizes=[7, 7, 11],
        source_resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        f0_predictor=ConvRNNF0Predictor(cond_channels=wav["f0_channels"]),
    )
    n_trim = S3GEN_SR // 50
    trim_fade = torch.zeros(2 * n_trim)
    trim_fade[n_trim:] = (torch.cos(torch.linspace(torch.pi, 0, n_trim)) + 1) / 2
    gen.register_buffer("trim_fade", trim_fade, persistent=False)
    gen.estimator_dtype = "fp32"
    return gen


def build_s3_tokenizer(config: dict[str, Any]) -> torch.nn.Module:
    """Upstream's S3Tokenizer with a ModelConfig of `config` (its constructor passes none on)."""
    import librosa
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    model_config = ModelConfig(**config)
    tokenizer = S3Tokenizer.__new__(S3Tokenizer)
    S3TokenizerV2.__init__(tokenizer, "speech_tokenizer_v2_25hz", model_config)
    tokenizer.n_fft = 400
    mel_filters = librosa.filters.mel(sr=S3_SAMPLE_RATE, n_fft=tokenizer.n_fft, n_mels=model_config.n_mels)
    tokenizer.register_buffer("_mel_filters", torch.FloatTensor(mel_filters))
    tokenizer.register_buffer("window", torch.hann_window(tokenizer.n_fft))
    return tokenizer


def build_parts(sizes: dict[str, Any] | None, seed: int = 0) -> Parts:
    """All three modules, initialized from `seed` (the caller's generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Parts(build_t3(sizes), build_s3gen(sizes), build_ve(sizes))


def tiny_tokenizer_json() -> str:
    """A character tokenizer.json for chatterbox-tiny in upstream EnTokenizer's layout: [STOP] is
    0 and [START] 255 (T3Config's stop/start text tokens), spaces are the [SPACE] token."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    vocab["[START]"] = 255
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens(["[START]", *specials])
    return tokenizer.to_str()


def sizes_fingerprint(sizes: dict[str, Any] | None) -> str:
    return hashlib.sha256(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:16]


# ---- the from_local folder ---------------------------------------------------------------------


def read_sizes(folder: Path) -> dict[str, Any] | None:
    """The sizes written beside an export, or None (a released-size folder has none)."""
    path = Path(folder) / CONFIG_FILE
    return json.loads(path.read_text())["sizes"] if path.is_file() else None


def missing_files(folder: Path) -> list[str]:
    return [name for name in RELEASED_FILES if not (Path(folder) / name).is_file()]


def read_folder(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """{"t3": ..., "s3gen": ..., "ve": ...} state dicts of a from_local folder (safetensors only)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = missing_files(folder)
    if missing:
        raise CheckpointError(
            f"{folder}: not a Chatterbox folder (ChatterboxTTS.from_local's layout); missing {', '.join(missing)}"
        )
    t3 = load_file(str(folder / T3_FILE))
    if "model" in t3:  # upstream from_local accepts this wrapped layout too
        raise CheckpointError(f"{folder / T3_FILE}: a wrapped state dict ('model'); save T3's own state_dict")
    return {"t3": t3, "s3gen": load_file(str(folder / S3GEN_FILE)), "ve": load_file(str(folder / VE_FILE))}


def write_folder(folder: Path, parts: Parts, tokenizer_json: str, sizes: dict[str, Any] | None) -> list[Path]:
    """The files ChatterboxTTS.from_local loads, each written atomically; tiny sizes beside them."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module in ((T3_FILE, parts.t3), (S3GEN_FILE, parts.s3gen), (VE_FILE, parts.ve)):
        state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        with fsio.atomic_path(folder / name) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        written.append(folder / name)
    fsio.atomic_write_text(folder / TOKENIZER_FILE, tokenizer_json)
    written.append(folder / TOKENIZER_FILE)
    if sizes is not None:
        fsio.atomic_write_text(folder / CONFIG_FILE, json.dumps({"sizes": sizes}, indent=1) + "\n")
        written.append(folder / CONFIG_FILE)
    return written
