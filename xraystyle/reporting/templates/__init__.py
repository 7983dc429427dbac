"""Jinja2 templates of the HTML pages: the counterfactual report, the cohort index and the
evaluation summary, all extending ``base.html`` (doctype, Content-Security-Policy, SYNTHETIC
banner, common CSS).

Autoescaping is on for every template: any value placed in a page (domain names, DICOM-derived
technical fields, classifier names, file stems) is escaped by jinja2, in text and in
attributes. Only markup written in the templates themselves is emitted as is.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2


def pct(value: float, signed: bool = False) -> str:
    """Percent of the display range, as the report prints it."""
    return f"{value:+.1f} %" if signed else f"{value:.1f} %"


def prob(p: float) -> str:
    return f"{p:.3f}"


def signed3(v: float) -> str:
    return f"{v:+.3f}"


def shift_class(d: float) -> str:
    """CSS class of a probability change: red up, blue down, none for |d| <= 0.005."""
    return "up" if d > 0.005 else "down" if d < -0.005 else ""


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("xraystyle.reporting", "templates"),
        autoescape=True,  # every template, whatever its file extension
        undefined=jinja2.StrictUndefined,  # a misspelt name fails loudly instead of printing ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, prob=prob, signed3=signed3, shift_class=shift_class)
    from ..provenance import SYNTHETIC_NOTICE

    env.globals["SYNTHETIC_NOTICE"] = SYNTHETIC_NOTICE
    return env


def render(name: str, **context: Any) -> str:
    """Render template ``name`` (e.g. "report.html") with ``context``."""
    return environment().get_template(name).render(**context)
