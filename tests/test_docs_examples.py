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
    """The marked console blocks of a Markdown page, fenced blocks inside other fences left out."""
    lines = page.read_text().splitlines()
    found, fence, marked_exit = [], None, None
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = FENCE.match(line.strip())
        if fence is None and opening:
            fence = opening.group(1)
            if marked_exit is not None and opening.group(2).strip() == "console":
                body, i = _fenced_body(lines, i + 1, fence)
                found.append(Example(i - len(body), marked_exit, _commands(body)))
                fence = None
            marked_exit = None
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
        elif fence is None:
            marker = MARKER.fullmatch(line.strip())
            marked_exit = int(marker.group(1) or 0) if marker else (marked_exit if not line.strip() else None)
        i += 1
    return found


def _fenced_body(lines: list[str], start: int, fence: str) -> tuple[list[str], int]:
    end = start
    while end < len(lines) and not (lines[end].strip().startswith(fence) and not lines[end].strip().strip(fence[0])):
        end += 1
    return lines[start:end], end


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
        pattern = re.compile(r"\s+".join(
            ".*".join(re.escape(piece) for piece in word.split("...")) for word in want.split()))
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
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", COLUMNS="100", LC_ALL="C", PYTHONUNBUFFERED="1",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.pop("VOICETUNE_EVALUATE", None)  # a reader's shell has none of the tests' settings
    examples = examples_in(DOCS / page)
    assert examples, f"{page} has no marked example"
    for example in examples:
        for number, command in enumerate(example.commands):
            result = subprocess.run(["bash", "-c", command.text], cwd=folder, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT)
            where = f"{page}, the example at line {example.line}: `{command.text}`"
            wanted_exit = example.exit_code if number == len(example.commands) - 1 else 0
            assert result.returncode == wanted_exit, (
                f"{where} exited {result.returncode}, the page says {wanted_exit}:\n{result.stdout}")
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
        "<!-- docs-test: exit 3 -->\n\n```console\n$ exit 3\n```\n")
    found = examples_in(page)
    assert [(e.exit_code, [(c.text, c.expected) for c in e.commands]) for e in found] == [
        (0, [("echo a \\\n    b", ["a b"]), ("true", [])]),
        (3, [("exit 3", [])]),
    ]


def test_shown_output_matches_in_order_with_gaps_and_wildcards():
    output = "header\n│ step_00000006 │    6 │  19.9 MiB │ 6.6927 │\nfooter: done in 3.2 s\n"
    assert shows(["│ step_00000006 │ 6 │ 19.9 MiB │ ... │", "...", "footer: done in ... s"], output) == (True, "")
    assert shows(["footer: done in ... s", "header"], output) == (False, "header")
    assert shows(["│ step_00000003 │ ... │"], output) == (False, "│ step_00000003 │ ... │")
