"""One adapter per public cohort: source metadata CSV(s) -> rows in the manifest vocabulary."""

from __future__ import annotations

from types import ModuleType

from ...errors import ConfigError
from . import chexpert, folder, mimic, nih, padchest, rsna, vindr
from ._common import UNCERTAIN_POLICIES, SourceOptions

SOURCES: dict[str, ModuleType] = {
    "nih": nih,
    "chexpert": chexpert,
    "mimic": mimic,
    "vindr": vindr,
    "rsna": rsna,
    "padchest": padchest,
    "folder": folder,
}


def get_source(name: str) -> ModuleType:
    """The adapter module of a source name; ConfigError lists the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown cohort source {name!r} (expected one of {', '.join(SOURCES)}, "
                          "or phantom in a cohort YAML)") from None


__all__ = ["SOURCES", "SourceOptions", "UNCERTAIN_POLICIES", "get_source"]
