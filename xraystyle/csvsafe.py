"""CSV cells that a spreadsheet would run as formulas, neutralised on writing (CSV injection).

Excel, LibreOffice and Sheets evaluate a cell that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return, e.g. ``=HYPERLINK("http://...")`` in a patient id copied from a
source CSV. OWASP's remedy: prefix such text with a single quote, which spreadsheets show as
text. Numbers (``-1.0``: CheXpert's "uncertain", negative physics parameters) are left as they
are, and so is any value that is not text.

:func:`restore` undoes :func:`neutralise` exactly, so a file written by the toolkit reads back
to the same values: a text already of the form ``'...'=x`` (quotes before a formula) gets one
more quote on writing and loses one on reading.
"""

from __future__ import annotations

import re
from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def is_formula(text: str) -> bool:
    """True when a spreadsheet would read ``text`` as a formula (numbers are not)."""
    return text[:1] in TRIGGERS and not _NUMBER.fullmatch(text)


def _quoted_formula(text: str) -> bool:
    """``text`` is one or more quotes followed by a formula: the written form of a formula."""
    stripped = text.lstrip("'")
    return len(stripped) < len(text) and is_formula(stripped)


def neutralise(value: Any) -> Any:
    """``value`` as it should be written to a CSV cell: formula text gets a leading quote."""
    if isinstance(value, str) and (is_formula(value) or _quoted_formula(value)):
        return "'" + value
    return value


def restore(text: str) -> str:
    """The value :func:`neutralise` was given for the written cell ``text``."""
    return text[1:] if _quoted_formula(text) else text
