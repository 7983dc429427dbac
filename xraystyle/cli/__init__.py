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
# click < 8.2 (allowed by typer >= 0.19 before it vendored click) has no NoArgsIsHelpError; an
# `except` naming a missing attribute would turn every usage error into an AttributeError.
_NoArgsIsHelpError = getattr(_click_exc, "NoArgsIsHelpError", ())


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
        except _NoArgsIsHelpError as exc:
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


# The commands, registered here in the order of the workflow (the order `xraystyle --help`
# lists them); command modules define them and never import this package.
from . import (  # noqa: E402
    bench,
    classifier,
    cohort,
    convert,
    eval,
    inspect,
    phantom,  # noqa: E402,F401 - adds `cohort phantom` to the cohort group
    report,
    synth,
    train,
)

app.command("inspect")(inspect.inspect)
app.command("convert")(convert.convert)
app.add_typer(cohort.cohort_app, name="cohort")  # phantom.py adds `cohort phantom` to it
app.command("train")(train.train)
app.command("synth")(synth.synth)
app.command("report")(report.report)
app.command("eval")(eval.eval_cmd)
app.add_typer(classifier.classifier_app, name="classifier")
app.add_typer(bench.bench_app, name="bench")

def main() -> None:
    app()
