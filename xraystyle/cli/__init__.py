"""xraystyle command line: thin typer commands over the library."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from .. import __version__
from ..runtime import apply_thread_policy

try:  # recent typer vendors click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exc


def usage_error_line(exc: Exception) -> str:
    """click's usage error (bad choice, unknown option, missing argument) as the one line every
    other refusal uses: ``xraystyle: error: invalid value for '--device': 'tpu' is not one of ...``."""
    # typer's choice coercion words a bad value as "Value error, 'tpu' is not one of ...": drop the prefix
    text = " ".join(exc.format_message().replace("Value error, ", "").split())
    return f"xraystyle: error: {text[:1].lower()}{text[1:].rstrip('.')}"


class OneLineErrorGroup(TyperGroup):
    """The root command: click/typer print usage errors as a usage block plus an error panel;
    here they become one line on stderr and exit code 2, for the installed script, ``python -m
    xraystyle`` and CliRunner alike (all go through ``main``)."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            # Non-standalone, so click's errors reach us instead of being printed as a block;
            # typer.Exit (--help, --version, fail()) then comes back as its exit code.
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _click_exc.NoArgsIsHelpError as exc:
            if exc.format_message():  # without rich the help is in the message (with rich: printed)
                exc.show()
            sys.exit(exc.exit_code)
        except _click_exc.ClickException as exc:  # UsageError/BadParameter: 2; others (FileError): 1
            typer.echo(usage_error_line(exc), err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="xraystyle",
    help="StarGAN v2 counterfactuals for chest X-rays.",
    cls=OneLineErrorGroup,
    no_args_is_help=True,
    add_completion=True,
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
    apply_thread_policy()  # before any command imports torch (a no-op when it is loaded already)
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xraystyle").setLevel(level)


# Command modules register themselves on import (one module per command group), in the order
# of the workflow, which is the order `xraystyle --help` lists them.
# isort: off
from . import inspect as _inspect  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import cohort as _cohort  # noqa: E402,F401
from . import phantom as _phantom  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import synth as _synth  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import eval as _eval  # noqa: E402,F401
from . import classifier as _classifier  # noqa: E402,F401
# isort: on

def main() -> None:
    app()
