"""The documentation's shell examples, run as a reader would run them.

A fenced `console` block right after a `<!-- docs-test -->` line (`<!-- docs-test: exit N -->`
when its commands must fail with N) is run: each `$ ` line is a command (a line ending in `\\`
goes on), and the lines after it are what that command must print, in that order, with other lines
allowed between them. Inside a line any run of spaces stands for any run of spaces and `...` for
any text; a line that is only `...` marks where the page leaves lines out.

The blocks of a page run in order in a folder of their own, holding `datasets/me` (eight espeak-ng
clips at 24 kHz in LJSpeech layout) and, except for the training guide, `runs/me`: the run that the
training guide's own first example trains (f5-tiny, six updates). `voicetune` is on the PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
TRAINING_GUIDE = "guides/training.md"
MARKER = re.compile(r"<!--\s*docs-test(?::\s*exit\s+(\d+))?\s*-->")
FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
COMMAND_TIMEOUT = 600


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Example:
    line: int
    exit_code: int
    commands: list[Command]


def examples_in(page: Path) -> list[Example]:
    """The marked console blocks of a Markdown page (a marker inside another fenced block is text)."""
    lines = page.read_text().splitlines()
    found, marked_exit, i = [], None, 0
    while i < len(lines):
        stripped = lines[i].strip()
        opening = FENCE.match(stripped)
        if opening:
            end = _closing_fence(lines, i + 1, opening.group(1))
            if marked_exit is not None:
                if opening.group(2).strip() != "console":
                    raise ValueError(f"{page}:{i + 1}: a docs-test marker must precede a ```console block")
                found.append(Example(i + 1, marked_exit, _commands(lines[i + 1 : end])))
            marked_exit, i = None, end + 1
            continue
        marker = MARKER.fullmatch(stripped)
        if marker:
            marked_exit = int(marker.group(1) or 0)
        elif stripped:
            marked_exit = None  # a marker applies to the block right after it (blank lines between)
        i += 1
    return found


def _closing_fence(lines: list[str], start: int, fence: str) -> int:
    """The index of the line closing `fence` (as long or longer, same character, nothing else)."""
    for index in range(start, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(fence) and not stripped.strip(fence[0]):
            return index
    return len(lines)


def _commands(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for line in body:
        if continued:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif commands:
            commands[-1].expected.append(line)
        continued = bool(commands) and line.endswith("\\") and (continued or line.startswith("$ "))
    return commands


def shows(expected: list[str], output: str) -> tuple[bool, str]:
    """Whether `output` has the `expected` lines in order; else the first line not found."""
    lines = [line.strip() for line in output.splitlines()]
    at = 0
    for want in expected:
        if want.strip() in ("", "..."):
            continue
        pattern = re.compile(
            r"\s+".join(".*".join(re.escape(piece) for piece in word.split("...")) for word in want.split())
        )
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return False, want
        at += 1
    return True, ""


def pages_with_examples() -> list[str]:
    return sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md") if examples_in(page))


def run_page(page: str, folder: Path, bin_dir: Path) -> None:
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        COLUMNS="100",
        LC_ALL="C",
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.pop("VOICETUNE_EVALUATE", None)  # a reader's shell has none of the tests' settings
    examples = examples_in(DOCS / page)
    assert examples, f"{page} has no marked example"
    for example in examples:
        for number, command in enumerate(example.commands):
            result = subprocess.run(
                ["bash", "-c", command.text],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
            where = f"{page}, the example at line {example.line}: `{command.text}`"
            wanted_exit = example.exit_code if number == len(example.commands) - 1 else 0
            assert result.returncode == wanted_exit, (
                f"{where} exited {result.returncode}, the page says {wanted_exit}:\n{result.stdout}"
            )
            ok, missing = shows(command.expected, result.stdout)
            assert ok, f"{where} did not print what the page shows: {missing!r} is missing from\n{result.stdout}"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """A folder whose `voicetune` runs this checkout with the tests' Python."""
    folder = tmp_path_factory.mktemp("bin")
    script = folder / "voicetune"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m voicetune "$@"\n')
    script.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory) -> Path:
    from voicetune.demo.corpus import write_ljspeech_corpus

    folder = tmp_path_factory.mktemp("docs-dataset")
    write_ljspeech_corpus(folder / "datasets" / "me", n_items=8, sample_rate=24000)
    return folder


@pytest.fixture(scope="module")
def trained_folder(dataset_folder, bin_dir, tmp_path_factory) -> Path:
    """The folder after the training guide's examples: datasets/me and runs/me."""
    folder = tmp_path_factory.mktemp("docs-training") / "work"
    shutil.copytree(dataset_folder, folder)
    run_page(TRAINING_GUIDE, folder, bin_dir)
    return folder


def test_the_training_guide_runs_as_shown(trained_folder):
    assert (trained_folder / "runs" / "me" / "ready" / "model.safetensors").is_file()


@pytest.mark.parametrize("page", [page for page in pages_with_examples() if page != TRAINING_GUIDE])
def test_the_examples_of_a_page_run_as_shown(page, trained_folder, bin_dir, tmp_path):
    folder = tmp_path / "work"
    shutil.copytree(trained_folder, folder)
    run_page(page, folder, bin_dir)


def test_examples_are_found_where_the_pages_mark_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test -->\n```console\n$ echo a \\\n    b\na b\n$ true\n```\n\n"
        "```console\n$ not marked\n```\n\n"
        "````markdown\n<!-- docs-test -->\n```console\n$ inside another fence\n```\n````\n\n"
        "<!-- docs-test -->\nA paragraph between.\n```console\n$ not marked either\n```\n\n"
        "<!-- docs-test: exit 3 -->\n\n```console\n$ exit 3\n```\n"
    )
    found = examples_in(page)
    assert [(e.line, e.exit_code, [(c.text, c.expected) for c in e.commands]) for e in found] == [
        (2, 0, [("echo a \\\n    b", ["a b"]), ("true", [])]),
        (28, 3, [("exit 3", [])]),
    ]


def test_a_marker_before_another_kind_of_block_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n<!-- docs-test -->\n```bash\nvoicetune --help\n```\n")
    with pytest.raises(ValueError, match="page.md:4: a docs-test marker must precede a ```console block"):
        examples_in(page)


def test_shown_output_matches_in_order_with_gaps_and_wildcards():
    output = "header\n│ step_00000006 │    6 │  19.9 MiB │ 6.6927 │\nfooter: done in 3.2 s\n"
    assert shows(["│ step_00000006 │ 6 │ 19.9 MiB │ ... │", "...", "footer: done in ... s"], output) == (True, "")
    assert shows(["footer: done in ... s", "header"], output) == (False, "header")
    assert shows(["│ step_00000003 │ ... │"], output) == (False, "│ step_00000003 │ ... │")
