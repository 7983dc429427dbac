"""Shared CLI plumbing: every command turns toolkit errors into one line and exit code 1."""

from __future__ import annotations

import functools
import logging
from typing import Callable

import typer

from ..errors import XrayStyleError

log = logging.getLogger("xraystyle")


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
