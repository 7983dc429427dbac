"""``xraystyle inspect PATH``: the metadata that matters for preprocessing, never identifiers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..io import DEFAULT_MAX_PIXELS, read_xray, summarize
from ._common import handle_errors


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " \\ ".join(_format(v) for v in value) if value else "-"
    return str(value)


@handle_errors
def inspect(
    path: Annotated[Path, typer.Argument(help="DICOM, PNG, JPEG, NIfTI, MHA/MHD or NRRD radiograph.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    frame: Annotated[
        Optional[int], typer.Option(min=0, help="Frame to read from a multi-frame DICOM (0-based).")
    ] = None,
    allow_missing_preamble: Annotated[
        bool,
        typer.Option("--allow-missing-preamble", help="Accept DICOM files without the 128-byte preamble and 'DICM' marker."),
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more pixels than this (checked before decoding).")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Show the preprocessing metadata of one radiograph (no patient identifiers)."""
    arr, meta = read_xray(path, max_pixels=max_pixels, allow_missing_preamble=allow_missing_preamble, frame=frame)
    summary = summarize(arr, meta)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    notes = summary.pop("notes")
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        typer.echo(f"{key.replace('_', ' '):<{width}}  {_format(value)}")
    for note in notes:
        typer.echo(f"note: {note}")
