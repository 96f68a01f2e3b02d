"""MkDocs hooks of the documentation site (`make docs`; mkdocs.yml names this file).

- The README is the site's front page: `index.md` is generated from it, its `docs/...` links made
  relative to the site's pages, so that the same links work on the repository's page and on the
  site (and `--strict` checks them).
- The CLI reference (`reference/cli.md`) shows `voicetune --help` of every command and subcommand,
  rendered from the Typer app at build time, so it cannot drift from the commands; likewise the
  table of every training setting (`voicetune train --settings`) in `reference/configuration.md`.
- Every top-level page of `docs/` (`docs/NAME.md`) is listed under "Guides" in the navigation,
  whether or not mkdocs.yml names it: a guide added as a new file appears without an edit here.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

CLI_REFERENCE_MARKER = "<!-- cli-reference -->"
SETTINGS_MARKER = "<!-- settings-reference -->"
GUIDES_SECTION = "Guides"
# Top-level guides in this order first (when they exist), any other top-level page after them by name.
TOP_LEVEL_ORDER = ("use-the-voice.md", "choosing-the-voice.md", "new-language.md", "studio.md",
                   "several-processes.md")


def top_level_pages(docs_dir: Path) -> list[str]:
    """The Markdown pages directly in `docs_dir` other than the front page, in nav order."""
    names = sorted(path.name for path in docs_dir.glob("*.md") if path.name != "index.md")
    known = [name for name in TOP_LEVEL_ORDER if name in names]
    return known + [name for name in names if name not in TOP_LEVEL_ORDER]


def add_to_guides(nav: list, pages: list[str]) -> list:
    """`nav` with each of `pages` not already named anywhere in it appended to its Guides section."""
    named = set(_nav_files(nav))
    extra = [page for page in pages if page not in named]
    for entry in nav:
        if isinstance(entry, dict) and GUIDES_SECTION in entry:
            entry[GUIDES_SECTION] = list(entry[GUIDES_SECTION]) + extra
            return nav
    return nav + [{GUIDES_SECTION: extra}] if extra else nav


def _nav_files(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [name for value in nav.values() for name in _nav_files(value)]
    if isinstance(nav, list):
        return [name for item in nav for name in _nav_files(item)]
    return []


def readme_as_front_page(readme: str) -> str:
    """The README's Markdown with its links into `docs/` made relative to the site's root."""
    return re.sub(r"\]\(docs/", "](", readme)


def cli_commands(app) -> list[tuple[list[str], object]]:
    """Every visible command of the Typer `app` as (words after `voicetune`, click command), the
    root first, then in the order `voicetune --help` lists them, each group before its commands."""
    import typer

    def walk(command, words):
        yield words, command
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                yield from walk(sub, words + [name])

    return list(walk(typer.main.get_command(app), []))


def render_cli_reference(app) -> str:
    """Markdown: one section per command with what `voicetune ... --help` says: the usage, the
    description, and a table of the arguments and options with their values and defaults."""
    sections = []
    for words, command in cli_commands(app):
        title = " ".join(["voicetune", *words])
        level = "##" if len(words) <= 1 else "###"
        lines = [f"{level} `{title}`", ""]
        if command.help:
            lines += [_markdown_text(inspect.cleandoc(command.help).replace("\b\n", "")), ""]
        lines += ["```text", f"{title} {_usage(command)}".rstrip(), "```", ""]
        subcommands = [(name, sub) for name, sub in getattr(command, "commands", {}).items() if not sub.hidden]
        if subcommands:
            lines += ["| command | what it does |", "| --- | --- |"]
            lines += [f"| [`{name}`](#{_slug(title + ' ' + name)}) | {_cell(sub.short_help or _first_line(sub.help))} |"
                      for name, sub in subcommands]
            lines.append("")
        rows = [_param_row(param) for param in command.params if not getattr(param, "hidden", False)]
        if rows:
            lines += ["| argument or option | value | meaning |", "| --- | --- | --- |", *rows, ""]
        sections.append("\n".join(lines))
    return "\n".join(sections)


def render_settings_reference() -> str:
    """Markdown: the table `voicetune train --settings` prints (key, default, meaning), with each
    setting's environment variable."""
    from voicetune.config import TrainConfig, setting_default

    rows = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for name, field in TrainConfig.model_fields.items():
        default = setting_default(name)
        shown = "" if default is None else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        meaning = _cell(field.description or "")
        rows.append(f"| `{name}` (`VOICETUNE_{name.upper()}`) | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def _usage(command) -> str:
    pieces = []
    if any(param.param_type_name == "option" for param in command.params):
        pieces.append("[OPTIONS]")
    for param in command.params:
        if param.param_type_name == "argument":
            name = (param.metavar or param.name.upper()).strip("[]")
            name = name if name.endswith("...") or param.nargs != -1 else name + "..."
            pieces.append(name if param.required else f"[{name}]")
    if getattr(command, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _param_row(param) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name.upper()).strip("[]")
        names, value = f"`{name}`", ""
    else:
        names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        value = param.display_type_rich(None) or ""  # the type column of `--help`
    meaning = (getattr(param, "help", None) or "").replace("\\[", "[")
    if param.required:
        meaning += " [required]"
    default = param.default
    if (getattr(param, "show_default", False) and "[default:" not in meaning and default is not None
            and not (param.param_type_name == "option" and param.is_flag and default is False)
            and default not in ((), [])):
        meaning += f" [default: {default}]"
    if getattr(param, "envvar", None):
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
        meaning += f" [env var: {', '.join(envvars)}]"
    return f"| {names} | {_cell(value, code=bool(value))} | {_cell(meaning.strip())} |"


def _first_line(text: str | None) -> str:
    return inspect.cleandoc(text or "").split("\n\n")[0].replace("\n", " ")


def _cell(text: str, code: bool = False) -> str:
    """`text` made safe for one cell of a Markdown table."""
    text = " ".join(text.split())
    if code:  # a | inside a code span is no cell border to Python-Markdown, and \| would show as written
        return "`" + text + "`"
    return _markdown_text(text).replace("|", "\\|")


def _markdown_text(text: str) -> str:
    """Help text as Markdown: `code` kept, and outside it the characters Markdown would take for
    HTML or emphasis escaped (`<time>`, `*`)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*").replace("_", "\\_")
    return "`".join(parts)


def _slug(title: str) -> str:
    # the anchor Python-Markdown's toc gives a heading `voicetune ckpt list`
    return re.sub(r"[^\w-]", "", title.lower().replace(" ", "-"))


def _voicetune_app(config):
    # The CLI of this checkout, whatever voicetune the running Python may have installed.
    src = str(Path(config.config_file_path).resolve().parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from voicetune.cli import app

    return app


def on_config(config):
    config.nav = add_to_guides(list(config.nav or []), top_level_pages(Path(config.docs_dir)))
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    readme = Path(config.config_file_path).resolve().parent / "README.md"
    files.append(File.generated(config, "index.md", content=readme_as_front_page(readme.read_text())))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "reference/cli.md":
        _require(markdown, CLI_REFERENCE_MARKER, page)
        return markdown.replace(CLI_REFERENCE_MARKER, render_cli_reference(_voicetune_app(config)))
    if page.file.src_uri == "reference/configuration.md":
        _require(markdown, SETTINGS_MARKER, page)
        _voicetune_app(config)
        return markdown.replace(SETTINGS_MARKER, render_settings_reference())
    return markdown


def _require(markdown: str, marker: str, page) -> None:
    if marker not in markdown:
        raise RuntimeError(f"{page.file.src_uri} lacks {marker}, where the generated part goes")


def on_serve(server, config, builder):
    server.watch(str(Path(config.config_file_path).resolve().parent / "README.md"))
    return server
