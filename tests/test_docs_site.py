"""The documentation site's build hooks (mkdocs_hooks.py): the README as the front page, the CLI
reference rendered from the Typer app, and new top-level guides listed without an edit of
mkdocs.yml. (`make docs` itself, mkdocs build --strict, runs in CI after `make test`.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", REPO / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_top_level_page_is_listed_under_guides(hooks, tmp_path):
    for name in ("index.md", "zeta-notes.md", "studio.md", "use-the-voice.md", "named.md"):
        (tmp_path / name).write_text(f"# {name}\n")
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "prepare.md").write_text("# Preparing\n")
    nav = [{"Home": "index.md"}, {"Guides": [{"Preparing": "guides/prepare.md"}]}, {"Other": "named.md"}]

    nav = hooks.add_to_guides(nav, hooks.top_level_pages(tmp_path))

    # the known guides in their order first, then any other by name; a page the nav names stays put
    assert nav[1] == {"Guides": [{"Preparing": "guides/prepare.md"}, "use-the-voice.md", "studio.md", "zeta-notes.md"]}
    assert nav[2] == {"Other": "named.md"}


def test_without_a_guides_section_the_pages_get_one(hooks):
    assert hooks.add_to_guides([{"Home": "index.md"}], ["new-language.md"]) == [
        {"Home": "index.md"},
        {"Guides": ["new-language.md"]},
    ]
    assert hooks.add_to_guides([{"Home": "index.md"}], []) == [{"Home": "index.md"}]


def test_the_readme_links_into_docs_become_links_between_pages(hooks):
    readme = "[Memory](docs/guides/memory.md#voicetune-plan) ![x](docs/eval.png) [a](https://x.org/docs/y)"
    assert hooks.readme_as_front_page(readme) == (
        "[Memory](guides/memory.md#voicetune-plan) ![x](eval.png) [a](https://x.org/docs/y)"
    )


def test_the_cli_reference_has_every_command_and_its_options(hooks):
    from voicetune.cli import app
    from voicetune.models.registry import model_names

    page = hooks.render_cli_reference(app)
    titles = [" ".join(["voicetune", *words]) for words, _ in hooks.cli_commands(app)]
    for title in ("voicetune train", "voicetune ckpt", "voicetune ckpt prune", "voicetune dataset check"):
        assert title in titles
    for title in titles:
        assert f"# `{title}`\n" in page
    prune = page[page.index("### `voicetune ckpt prune`") : page.index("### `voicetune ckpt export`")]
    assert "voicetune ckpt prune [OPTIONS] RUN" in prune
    for option in ("`--keep-last`", "`--dry-run`", "`--abandoned`"):
        assert option in prune
    train = page[page.index("## `voicetune train`") :]
    # defaults and metavars as `--help` gives them; a | inside a table cell is escaped
    assert "| `--keep-last` | `K` | newest milestones kept [default: 3] |" in train
    choices = " \\| ".join(model_names())  # --model's help: the registry's models
    assert f"`{choices}" not in train and choices in train


def test_the_cli_reference_shows_no_escape_and_every_option_says_what_it_is(hooks):
    import markdown

    from voicetune.cli import app

    page = hooks.render_cli_reference(app)
    html = markdown.markdown(page, extensions=["tables"])
    assert "\\|" not in html  # an escape shown as written (a | inside a code cell)
    assert "[default: []]" not in html
    assert "[env var: VOICETUNE_API_KEY]" in html  # serve's --api-key
    without_help = [
        f"voicetune {' '.join(words)} {param.opts[0]}"
        for words, command in hooks.cli_commands(app)
        for param in command.params
        if param.param_type_name == "option" and not (param.help or "").strip()
    ]
    assert without_help == []


def test_the_settings_table_has_every_setting_with_its_default(hooks):
    from voicetune.config import TrainConfig

    table = hooks.render_settings_reference()
    rows = table.splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(TrainConfig.model_fields)
    assert "| `keep_last` (`VOICETUNE_KEEP_LAST`) | `3` | newest milestones kept |" in rows
    assert "| `async_save` (`VOICETUNE_ASYNC_SAVE`) | `true` | write checkpoints in a background thread |" in rows
    assert "| `lr` (`VOICETUNE_LR`) |  | peak learning rate; default: the model's" in table
