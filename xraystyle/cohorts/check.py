"""Verify that every image (and mask) of a manifest exists and decodes.

Failures are collected, not raised, so one run lists them all; they carry the row number and
the relative path, never patient identifiers.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from ..errors import InputError, XrayStyleError
from .manifest import Manifest


@dataclass(frozen=True)
class CheckFailure:
    row: int  # 1 = first data row of the manifest
    path: str  # as written in the manifest
    reason: str


def _default_reader() -> Callable:
    try:
        from ..io import read_xray  # imported lazily: the readers pull in pydicom / SimpleITK
    except ImportError as exc:
        raise XrayStyleError(f"cannot check images: xraystyle.io.read_xray is unavailable ({exc})") from None
    return read_xray


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        text = exc.reason
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split()) or type(exc).__name__


def check_manifest(manifest: Manifest, workers: int = 4, reader: Callable | None = None,
                   progress: bool = False) -> tuple[int, list[CheckFailure]]:
    """Read every ``path`` and non-empty ``mask_*`` entry with ``reader`` (default
    ``xraystyle.io.read_xray``) on a thread pool; returns (files checked, failures by row)."""
    read = reader or _default_reader()
    cols = ["path"] + [c for c in manifest.df.columns if c.startswith("mask_")]
    tasks = [(int(i) + 1, rel, col != "path") for col in cols for i, rel in manifest.df[col].items() if rel]

    def one(task: tuple[int, str, bool]) -> CheckFailure | None:
        row, rel, is_mask = task
        try:
            full = manifest.resolve(rel)
            if not full.exists():
                return CheckFailure(row, rel, "file not found")
            if not full.is_file():
                return CheckFailure(row, rel, "not a file")
            # A mask may rightly be empty (constant): only images must have content.
            read(full, require_content=False) if is_mask else read(full)
        except Exception as exc:  # any decoder failure is a finding of the check, not a crash
            return CheckFailure(row, rel, _reason(exc))
        return None

    failures = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = tqdm(pool.map(one, tasks), total=len(tasks), unit="img", file=sys.stderr,
                   disable=not progress, desc="checking")
        for result in bar:
            if result is not None:
                failures.append(result)
    failures.sort(key=lambda f: (f.row, f.path))
    return len(tasks), failures
