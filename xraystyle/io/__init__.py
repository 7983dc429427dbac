"""Radiograph readers behind one ``read_xray(path)``; metadata without patient identifiers."""

from ._common import DEFAULT_MAX_PIXELS
from .meta import XrayMeta
from .reader import read_xray, sniff_format
from .summary import summarize

__all__ = ["DEFAULT_MAX_PIXELS", "XrayMeta", "read_xray", "sniff_format", "summarize"]
