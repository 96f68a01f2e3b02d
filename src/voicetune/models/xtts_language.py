"""XTTS in a language outside coqui's list: the BPE tokenizer extended, the language code registered.

Extending (`learn_extension`, `apply_extension`): a small BPE is trained with the `tokenizers`
package on the dataset's text, cleaned the way `register`'s text preprocessing cleans it; its
tokens that XTTS's vocab.json lacks are appended (new ids after the last one), with the merges that
build them and the language token (`[ka]`) as a special token. Only merges whose result is a new
token, and which hold a character the vocabulary lacked, are added: text made of the old characters
is tokenized exactly as before. The extension (language, tokens, merges) is plain JSON, so it
travels in a checkpoint's architecture and the same vocab.json is rebuilt from it.

Registering (`register(code)`): coqui's `VoiceBpeTokenizer.preprocess_text` raises
NotImplementedError for a code outside its list, and `Xtts.inference` reads `char_limits[code]`.
`register` teaches coqui's tokenizer class the code: a character limit, and a basic preprocessing
(quotes removed, lowercase, whitespace collapsed: coqui's multilingual cleaner without its
per-language number, abbreviation and symbol expanders). Codes coqui knows are left to coqui.
voicetune calls it for the model's language; a program of its own calls it before
`Xtts.load_checkpoint` (see docs/new-language.md).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from voicetune.errors import UsageError

# The codes coqui's own preprocess_text handles (TTS/tts/layers/xtts/tokenizer.py); "zh-cn" is "zh".
COQUI_LANGUAGES = frozenset(
    {"ar", "cs", "de", "en", "es", "fr", "hi", "hu", "it", "nl", "pl", "pt", "ru", "tr", "zh", "ko", "ja"}
)
DEFAULT_CHAR_LIMIT = 250  # coqui's limit for a code it has none for (check_input_length)
NEW_TOKENS = 400  # at most this many BPE tokens learnt from the dataset (its characters always come in)
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[a-z]{2,4})?")

_registered: dict[str, int] = {}
_lock = threading.Lock()
_patched = False


def is_known_to_coqui(code: str) -> bool:
    return code.split("-")[0] in COQUI_LANGUAGES


def check_code(code: str) -> str:
    """`code` as XTTS writes languages (lowercase ISO 639, e.g. ka, vi, yue), or a UsageError."""
    if not LANGUAGE_CODE.fullmatch(code or ""):
        raise UsageError(f"--language {code!r}: give the language's ISO 639 code in lowercase, e.g. ka or vi")
    return code


def basic_text(text: str) -> str:
    """The preprocessing of a registered language: coqui's multilingual cleaner minus its expanders."""
    from TTS.tts.layers.xtts.tokenizer import collapse_whitespace, lowercase

    return collapse_whitespace(lowercase(text.replace('"', ""))).strip()


def register(code: str, char_limit: int = DEFAULT_CHAR_LIMIT) -> None:
    """Let coqui's XTTS tokenizer (and so `Xtts.inference`) take language `code`.

    Idempotent and safe to call before or after `Xtts.load_checkpoint`; tokenizers made later get
    the character limit, existing ones when they next encode. The model must still have the `[code]`
    token and have learnt the language: this only removes coqui's refusal.
    """
    global _patched
    code = check_code(code).split("-")[0]
    if code in COQUI_LANGUAGES:
        return
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    with _lock:
        _registered[code] = int(char_limit)
        if _patched:
            return
        original_preprocess, original_init = VoiceBpeTokenizer.preprocess_text, VoiceBpeTokenizer.__init__

        def preprocess_text(self, txt, lang):
            if lang in _registered:
                self.char_limits.setdefault(lang, _registered[lang])
                return basic_text(txt)
            return original_preprocess(self, txt, lang)

        def __init__(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            for name, limit in _registered.items():
                self.char_limits.setdefault(name, limit)

        VoiceBpeTokenizer.preprocess_text = preprocess_text
        VoiceBpeTokenizer.__init__ = __init__
        _patched = True


def registered() -> dict[str, int]:
    """The codes `register` added, with their character limits."""
    return dict(_registered)


def unknown_letters(tokenizer: Any, text: str) -> list[str]:
    """Letters of `text` (as a registered language cleans it) that a VoiceBpeTokenizer's vocabulary
    lacks: they would be read as [UNK]."""
    return sorted({ch for ch in basic_text(text) if not ch.isspace() and tokenizer.tokenizer.token_to_id(ch) is None})


# ---- the vocabulary ----------------------------------------------------------------------------


def learn_extension(vocab_json: str, code: str, texts: list[str], new_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    """What to add to XTTS's vocab.json for `code`, learnt from `texts`: {"language", "tokens", "merges"}.

    Deterministic: the same texts give the same extension."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    data = json.loads(vocab_json)
    vocab: dict[str, int] = data["model"]["vocab"]
    cleaned = [basic_text(t) for t in texts if t.strip()]
    alphabet = sorted({ch for text in cleaned for ch in text if not ch.isspace()})
    new_chars = [ch for ch in alphabet if ch not in vocab]
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()  # as XTTS's vocab.json splits words
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + new_tokens, initial_alphabet=alphabet, special_tokens=["[UNK]"], show_progress=False
    )
    bpe.train_from_iterator(cleaned, trainer=trainer)
    learnt = json.loads(bpe.to_str())["model"]
    fresh = set(new_chars)
    tokens, merges = list(new_chars), []
    known = set(vocab) | fresh
    for merge in learnt["merges"]:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        result = left + right
        if result in vocab or not any(ch in fresh for ch in result):
            continue  # the base vocabulary's merges stay the only ones that touch its characters
        if left not in known or right not in known:
            continue  # built from a token that was left out
        if result not in known:
            tokens.append(result)
            known.add(result)
        merges.append([left, right])
    return {"language": code, "tokens": tokens, "merges": merges}


def apply_extension(vocab_json: str, extension: dict[str, Any]) -> str:
    """XTTS's vocab.json with the extension's tokens, merges and language token appended."""
    data = json.loads(vocab_json)
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = max([*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))]) + 1
    language_token = f"[{extension['language']}]"
    if language_token not in vocab:
        vocab[language_token] = next_id
        data.setdefault("added_tokens", []).append(
            {
                "id": next_id,
                "special": True,
                "content": language_token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
            }
        )
        next_id += 1
    for token in extension["tokens"]:
        if token not in vocab:
            vocab[token] = next_id
            next_id += 1
    string_merges = bool(data["model"]["merges"]) and isinstance(data["model"]["merges"][0], str)
    have = {tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]}
    for left, right in extension["merges"]:
        if (left, right) not in have:
            data["model"]["merges"].append(f"{left} {right}" if string_merges else [left, right])
    return json.dumps(data, ensure_ascii=False)


def grow_rows(tensor, rows: int, generator):
    """`tensor` (an embedding or head weight, or a head bias) with `rows` rows appended, drawn from
    N(0, 0.02) as AllTalk's expand_xtts.py initializes the rows of added tokens."""
    import torch

    if rows <= 0:
        return tensor
    extra = torch.empty((rows, *tensor.shape[1:]), dtype=torch.float32).normal_(0.0, 0.02, generator=generator)
    return torch.cat([tensor, extra.to(tensor.dtype)], dim=0)
