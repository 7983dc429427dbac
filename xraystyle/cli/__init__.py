"""xraystyle command line: thin typer commands over the library."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from .. import __version__

app = typer.Typer(
    name="xraystyle",
    help="StarGAN v2 counterfactuals for chest X-rays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xraystyle {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")] = 0,
) -> None:
    """StarGAN v2 counterfactuals for chest X-rays."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xraystyle").setLevel(level)


# Command modules register themselves on import (one module per command group).
from . import inspect as _inspect  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import cohort as _cohort  # noqa: E402,F401
from . import phantom as _phantom  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import synth as _synth  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import eval as _eval  # noqa: E402,F401
from . import classifier as _classifier  # noqa: E402,F401


def main() -> None:
    app()
