"""F5-TTS vocabularies: upstream's vocab.txt, tokenization, and extension with a dataset's characters.

Tokenizer choice (as upstream does it):
- A vocabulary with pinyin syllables (upstream's default vocab.txt, Emilia_ZH_EN_pinyin) is a
  "pinyin" vocabulary: text goes through `convert_char_to_pinyin`, exactly as upstream's dataset
  preparation (prepare_csv_wavs.py) and inference (infer_batch_process) do. For text without
  Chinese characters this is character by character (it only maps ';' to ',' and curly quotes to
  straight ones), so English, Portuguese, etc. are plain character models.
- Any other vocabulary (one token per character, upstream's "char" tokenizer) splits text into
  characters.
Characters unknown to the vocabulary map to index 0 (space), as upstream's `list_str_to_idx` does;
`extended` appends a dataset's missing tokens instead, as upstream's finetune_gradio "extend vocab"
does, so that new letters of a language get their own embedding rows.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path

from voicetune import fsio
from voicetune.errors import UsageError

UPSTREAM_VOCAB = Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))

_PINYIN_SYLLABLE = re.compile(r"^[a-zü]+[1-5]$")
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\t": " ", "\v": " ", "\f": " "})


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]  # index order; index 0 is " "
    base_size: int  # how many tokens came from the vocabulary file
    source: str  # the vocabulary file ("upstream" for the f5-tts package's own)

    @cached_property
    def tokenizer(self) -> str:
        """'pinyin' when the vocabulary holds pinyin syllables (upstream's), else 'char'."""
        return "pinyin" if any(_PINYIN_SYLLABLE.match(t) for t in self.tokens) else "char"

    @property
    def added(self) -> tuple[str, ...]:
        return self.tokens[self.base_size :]

    @cached_property
    def char_map(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self.tokens)

    def tokenize(self, text: str) -> list[str]:
        """Text -> tokens, the way upstream prepares training text and inference text.

        Text is composed (NFC) first: an "é" written as "e" plus a combining accent (as some
        editors and macOS file names write it) is the vocabulary's "é", not an "e" and an unknown
        mark that upstream would read as a space."""
        text = unicodedata.normalize("NFC", text).translate(_LINE_BREAKS)
        if self.tokenizer == "pinyin":
            from f5_tts.model.utils import convert_char_to_pinyin

            return list(convert_char_to_pinyin([text], polyphone=True)[0])
        return list(text)

    def encode(self, text: str) -> list[int]:
        """Text -> token indices; unknown tokens -> 0 as upstream's list_str_to_idx."""
        char_map = self.char_map
        return [char_map.get(token, 0) for token in self.tokenize(text)]

    def unknown(self, text: str) -> set[str]:
        return {t for t in self.tokenize(text) if t not in self.char_map}

    def extended(self, texts: Iterable[str]) -> Vocabulary:
        """This vocabulary plus the tokens of `texts` it lacks, appended in sorted order."""
        missing = set()
        for text in texts:
            missing |= self.unknown(text)
        if not missing:
            return self
        return Vocabulary(self.tokens + tuple(sorted(missing)), self.base_size, self.source)

    def write(self, path: Path) -> Path:
        """Write as upstream's vocab.txt: one token per line, every line ending in a newline."""
        fsio.atomic_write_text(path, "".join(token + "\n" for token in self.tokens))
        return path


def read_vocab(path: str | os.PathLike | None, flag: str = "--vocab") -> Vocabulary:
    """Read a vocab.txt with upstream's own reader (get_tokenizer 'custom'); None: upstream's file."""
    from f5_tts.model.utils import get_tokenizer

    vocab_path = UPSTREAM_VOCAB if path is None else Path(path).expanduser()
    if not vocab_path.is_file():
        raise UsageError(f"{flag} {path}: no such file; give an F5-TTS vocab.txt (one token per line)")
    try:
        char_map, _ = get_tokenizer(str(vocab_path), "custom")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{flag} {vocab_path}: cannot read it as an F5-TTS vocab.txt: {err}") from None
    tokens = tuple(sorted(char_map, key=char_map.__getitem__))
    if not tokens or tokens[0] != " " or [char_map[t] for t in tokens] != list(range(len(tokens))):
        raise UsageError(
            f"{flag} {vocab_path}: not an F5-TTS vocab.txt (the first line must be a single space, "
            "then one distinct token per line)"
        )
    return Vocabulary(tokens, len(tokens), "upstream" if path is None else str(vocab_path))
