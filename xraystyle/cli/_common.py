"""Shared CLI plumbing: every command turns toolkit errors into one line and exit code 1."""

from __future__ import annotations

import functools
import logging
import re
from typing import Annotated, Callable, Literal

import typer

from ..errors import XrayStyleError

log = logging.getLogger("xraystyle")

# Options with fixed choices: typer refuses anything else before the command runs (one line
# listing the choices, exit 2). tests/cli/test_cli_choices.py keeps them equal to the library's lists.
TrainMode = Literal["auto", "reference", "fast"]
Conditioning = Literal["single", "set-additive", "set-film"]
SynthFormat = Literal["png", "dcm", "both"]
PhantomFormat = Literal["png", "dcm"]
EvalMode = Literal["latent", "reference", "both"]
Split = Literal["train", "val", "test"]
Oracle = Literal["auto", "on", "off"]
ClassifierArch = Literal["densenet121", "resnet50", "small"]
CohortSource = Literal["nih", "chexpert", "mimic", "vindr", "rsna", "padchest", "folder"]
Uncertain = Literal["ignore", "positive", "negative"]
MissingImages = Literal["drop", "keep", "error"]


DEVICES = ("auto", "cpu", "cuda")  # and cuda:N, one GPU of several


def _device(value: str) -> str:
    if value in DEVICES or re.fullmatch(r"cuda:\d+", value):
        return value
    raise typer.BadParameter(f"{value!r} is not one of 'auto', 'cpu', 'cuda' (or cuda:N)")


Device = Annotated[str, typer.Option(
    "--device", help="auto (cuda when available), cpu, cuda, or cuda:N for one GPU of several.",
    callback=_device, autocompletion=lambda incomplete: [d for d in DEVICES if d.startswith(incomplete)],
    metavar="[auto|cpu|cuda|cuda:N]")]


def fail(message: str) -> None:
    """Print one line to stderr and exit with code 1."""
    typer.echo(f"xraystyle: error: {message}", err=True)
    raise typer.Exit(1)


def handle_errors(fn: Callable) -> Callable:
    """Decorator for command functions: domain and OS errors become one clean line, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except XrayStyleError as exc:
            fail(str(exc))
        except OSError as exc:  # disk full, permission denied, ... on an output path
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")

    return wrapper
