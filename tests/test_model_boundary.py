"""No module outside `voicetune/models/` names a model family (DESIGN.md): what differs between
families lives in their adapters and in the registry, so a new family touches nothing else.

Names are the registry's own: its families (the keys of CLIP_BOUNDS, their titles) and the
packages they run on. Identifiers and strings (help, errors, docstrings) count; comments may cite a
family where they give a figure measured on it."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import voicetune
from voicetune.models import registry

ROOT = Path(voicetune.__file__).parent


def family_pattern() -> re.Pattern[str]:
    """A family's name, title or upstream package anywhere in a word that does not run on from a
    letter or digit before it (`xtts_args`, `F5Spec`, "chatterbox-tiny", "coqui-tts")."""
    names = {*registry.CLIP_BOUNDS, *registry.FAMILY_TITLES.values(), *registry.UPSTREAM_PACKAGES.values()}
    words = sorted({re.escape(n.lower()).replace(r"\-", "[-_]") for n in names}, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(" + "|".join(words) + ")", re.IGNORECASE)


def mentions(source: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """(line, token) of every identifier or string of `source` that names a family."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.NAME, tokenize.STRING) and pattern.search(token.string):
            found.append((token.start[0], token.string.splitlines()[0][:80]))
    return found


def test_no_module_outside_models_names_a_family():
    pattern = family_pattern()
    outside = sorted(p for p in ROOT.rglob("*.py") if "models" not in p.relative_to(ROOT).parts[:1])
    assert len(outside) > 50, "the walk found the package's modules"
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in outside
        for line, text in mentions(path.read_text(encoding="utf-8"), pattern)
    ]
    assert found == [], "family names outside models/ (move them into the adapter or the registry):\n" + "\n".join(
        found
    )


def test_the_pattern_finds_a_family_in_identifiers_strings_and_docstrings_but_not_comments():
    source = (
        '"""Trains f5 models."""\n'
        "xtts_args = 1\n"
        "F5Spec = 2\n"
        "name = 'chatterbox-tiny'\n"
        "help = f'needs {x} coqui-tts'\n"
        "# f5-tiny took 0.8 s (a measured figure)\n"
        "digest = 'af5e'\n"
    )
    lines = [line for line, _ in mentions(source, family_pattern())]
    assert lines == [1, 2, 3, 4, 5]
