"""The root `voicetune` Typer app, on which each command module registers its commands, and the
help's look. Apart from the package's __init__, so that command modules import it without an
import circle through the package that imports them."""

from __future__ import annotations

import typer
import typer.core

from voicetune.models.registry import FAMILY_TITLES

# Help of the options every command that speaks takes.
NFE_HELP = "sampling steps, for models that take a number of them (default: the model's, upstream's; fewer is faster)"
REF_TEXT_HELP = "transcript of --ref (for models that read the reference's words)"

ABOUT = f"Fine-tune voice-cloning TTS models ({', '.join(FAMILY_TITLES.values())}) on your own recordings."


def _type_column(self, ctx) -> str | None:
    """The help's type column: the metavar when one is given, nothing for on/off flags, else
    click's plain names (TEXT, INTEGER, PATH) instead of typer's `<str>`-style tags."""
    if self.metavar is not None:
        return self.metavar
    if getattr(self, "is_flag", False):
        return None
    label = self.display_type(ctx).strip("<>")
    return {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "list[str]": "TEXT"}.get(label, label.upper())


# Typer's own column renderers, replaced on purpose (mypy: assigning to a method).
typer.core.TyperOption.display_type_rich = _type_column  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]  # the name column shows it

app = typer.Typer(
    name="voicetune",
    help=ABOUT,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(help=ABOUT)
def _root() -> None:
    pass
