"""`voicetune plan`: train's flags in, the run's sizes, disk and memory plan out (nothing is trained)."""

from __future__ import annotations

import inspect
from pathlib import Path  # noqa: F401 (train's annotations are resolved in this module)
from typing import List, Optional  # noqa: F401, UP035 - the names train's flag annotations (strings) use

import typer

from voicetune.cli.root import app
from voicetune.cli.train import resolve_train_config
from voicetune.cli.train import train as train_command


def plan(**options) -> None:
    """Sizes, checkpoint bytes, projected disk use, peak accelerator memory and the largest batch that
    fits a GPU, for the run `voicetune train` with the same flags would make (train prints it too)."""
    import json

    from voicetune.console import console
    from voicetune.train.plan import make_plan

    as_json, probe = options.pop("json_out"), options.pop("probe")
    result = make_plan(resolve_train_config(options), probe=probe)  # --gpu-memory is a train setting too
    if as_json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        for line in result.lines():
            console.print(line, markup=False, highlight=False)


# The same options as `train` (its signature, --processes and --settings aside), plus plan's own.
_train_parameters = [
    p for name, p in inspect.signature(train_command).parameters.items() if name not in ("processes", "settings")
]
_own_parameters = [
    inspect.Parameter(
        "probe",
        inspect.Parameter.KEYWORD_ONLY,
        annotation="bool",
        default=typer.Option(True, "--probe/--no-probe", help="on a GPU, measure memory with a short probe"),
    ),
    inspect.Parameter(
        "json_out",
        inspect.Parameter.KEYWORD_ONLY,
        annotation="bool",
        default=typer.Option(False, "--json", help="print one JSON object"),
    ),
]
# Typer reads the signature: train's flags and plan's own (mypy: a function has no __signature__ attribute).
plan.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _train_parameters] + _own_parameters
)
plan.__annotations__ = {p.name: p.annotation for p in plan.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command(name="plan")(plan)
