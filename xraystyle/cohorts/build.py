"""Build a manifest from a public source's metadata: adapter -> findings -> views -> images ->
patient-level split -> validated CSV.

Image root rule: without ``images`` the manifest keeps the source's own relative paths and its
folder is the image root. With ``images``, each source path is looked up below that folder;
when the folder lies inside the manifest's folder the paths are written relative to the
manifest, otherwise the manifest starts with ``# root: <images>`` and the paths are relative
to it. Either way every path stays inside one root that the loader enforces.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, ManifestError
from .imageindex import ImageIndex
from .manifest import Manifest, write_manifest
from .paths import is_within
from .sources import SourceOptions, get_source
from .splits import DEFAULT_FRACTIONS, assign_splits, parse_fractions
from .vocabulary import FINDINGS

log = logging.getLogger(__name__)

MISSING_POLICIES = ("drop", "keep", "error")
FRONTAL = "FRONTAL"
ALL = "ALL"


@dataclass
class BuildReport:
    """What happened on the way from source to manifest (counts only, no identifiers)."""

    source_rows: int = 0
    dropped_view: int = 0
    dropped_domain: int = 0
    missing_images: int = 0
    dropped_missing: int = 0
    linked_folders: int = 0
    findings: list[str] = field(default_factory=list)


def parse_list(value: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [v.strip() for v in items if v.strip()]
    return items or None


def build_manifest(
    source: str,
    out: str | Path,
    *,
    csv: Sequence[str | Path] = (),
    metadata: str | Path | None = None,
    images: str | Path | None = None,
    findings: str | Sequence[str] | None = None,
    views: str | Sequence[str] | None = None,
    uncertain: str | None = None,
    split: str | Sequence[float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
    missing: str = "drop",
) -> tuple[Manifest, BuildReport]:
    """Build and write the manifest ``out`` from ``source`` metadata; see docs/manifest.md.

    ``findings``: keep only these finding columns (default: all the source has). ``views``:
    view names and/or ``frontal`` / ``all`` (default ``frontal``). ``missing``: what to do
    with rows whose image is not found under ``images`` (drop / keep / error).
    """
    out = Path(out)
    adapter = get_source(source)
    fractions = parse_fractions(split)
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing: {missing!r} is not one of {', '.join(MISSING_POLICIES)}")
    csv_paths = [Path(c) for c in csv]
    for c in csv_paths + ([Path(metadata)] if metadata else []):
        if c.exists() and out.exists() and os.path.samefile(c, out):
            raise ConfigError(f"--out {out} is a source CSV: refusing to overwrite it")
    opts = SourceOptions(source=source, csv=csv_paths, metadata=Path(metadata) if metadata else None,
                         images=Path(images) if images else None, uncertain=uncertain)
    where = csv_paths[0] if csv_paths else Path(images or ".")
    table = adapter.read(opts)
    report = BuildReport(source_rows=len(table))

    available = [f for f in FINDINGS if f in table.columns]
    chosen = parse_list(findings)
    if chosen is not None:
        unknown = [f for f in chosen if f not in FINDINGS]
        if unknown:
            raise ConfigError(f"--findings: {', '.join(map(repr, unknown))} not in the vocabulary "
                              "(see docs/manifest.md)")
        absent = [f for f in chosen if f not in available]
        if absent:
            raise ManifestError(where, f"source {source} has no finding {', '.join(map(repr, absent))} "
                                       f"(available: {', '.join(available)})")
        dropped = [f for f in available if f not in chosen]
        if getattr(adapter, "EXCLUSIVE_DOMAINS", False) and dropped:
            other = (table[dropped] == 1).any(axis=1)
            report.dropped_domain = int(other.sum())
            table = table[~other]
        table = table.drop(columns=dropped)
        available = [f for f in FINDINGS if f in chosen]
    report.findings = available

    table = _filter_views(table, parse_list(views), report)
    if len(table) == 0:
        raise ManifestError(where, f"no image of source {source} is in the chosen views "
                                   f"({', '.join(parse_list(views) or ['frontal'])})")

    root_header = None
    if images is not None:
        table, root_header = _place_images(table, Path(images), out, missing, report)

    table = table.drop(columns="frontal").reset_index(drop=True)
    table["split"] = assign_splits(table["patient_id"], split_seed, fractions)
    manifest = write_manifest(table, out, root=root_header)
    log.info("%s: %d images from %d source rows (%d outside the views, %d of other domains, "
             "%d missing images dropped)", out, len(manifest), report.source_rows, report.dropped_view,
             report.dropped_domain, report.dropped_missing)
    return manifest, report


def _filter_views(table: pd.DataFrame, views: list[str] | None, report: BuildReport) -> pd.DataFrame:
    tokens = {v.upper().replace(" ", "_") for v in (views or ["frontal"])}
    if ALL in tokens:
        return table
    keep = table["view"].isin(tokens - {FRONTAL}).to_numpy(dtype=bool, copy=True)
    if FRONTAL in tokens:
        keep |= table["frontal"].to_numpy(dtype=bool)
    report.dropped_view = int((~keep).sum())
    return table[keep]


def _place_images(table: pd.DataFrame, images: Path, out: Path, missing: str,
                  report: BuildReport) -> tuple[pd.DataFrame, str | None]:
    """Source paths -> paths below ``images``; returns the table and the ``# root:`` value."""
    if not images.is_dir():
        raise ManifestError(images, "image folder not found" if not images.exists() else "not a folder")
    index = ImageIndex(images)
    report.linked_folders = index.linked_folders
    found = table["path"].map(index.find)
    absent = found.isna().to_numpy()
    report.missing_images = int(absent.sum())
    if report.missing_images:
        hint = (f"; {index.linked_folders} symbolic link(s) to folders were not followed: point "
                "--images at the real folder" if index.linked_folders else "")
        if missing == "error" or report.missing_images == len(table):
            raise ManifestError(images, f"{report.missing_images} of {len(table)} images not found "
                                        f"below this folder{hint}")
        log.warning("%s: %d of %d images not found (%s)%s", images, report.missing_images, len(table),
                    "left out" if missing == "drop" else "kept with their source paths", hint)
    if missing == "drop":
        table, found = table[~absent], found[~absent]
        report.dropped_missing = report.missing_images
    table = table.copy()
    table["path"] = np.where(found.isna(), table["path"], found)

    out_dir = os.path.dirname(os.path.abspath(out))
    img = os.path.abspath(images)
    if is_within(img, out_dir):
        prefix = os.path.relpath(img, out_dir)
        if prefix != ".":
            table["path"] = Path(prefix).as_posix() + "/" + table["path"]
        return table, None
    return table, img
