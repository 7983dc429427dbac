"""`xraystyle cohort phantom`: write a procedural phantom cohort with known ground truth."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from tqdm import tqdm

from ..errors import ConfigError
from ._common import PhantomFormat, handle_errors
from .cohort import cohort_app

_ALL = "effusion,nodule,cardiomegaly,pneumothorax"


def parse_prevalence(text: str | None) -> dict[str, float] | None:
    """``effusion=0.5,nodule=0.2`` -> {"effusion": 0.5, "nodule": 0.2}."""
    if not text:
        return None
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--prevalence: expected NAME=FRACTION[,NAME=FRACTION...], got {item!r}") from None
    return out


@cohort_app.command("phantom")
@handle_errors
def phantom(
    out: Annotated[Path, typer.Option("--out", help="Output folder (images/, masks/, manifest.csv).")],
    n: Annotated[int, typer.Option("--n", help="Number of images (one patient each).")],
    size: Annotated[int, typer.Option("--size", help="Image side in pixels, 32..1024.")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives identical files.")] = 0,
    findings: Annotated[str, typer.Option("--findings", help="Comma-separated findings to simulate.")] = _ALL,
    prevalence: Annotated[
        Optional[str],
        typer.Option("--prevalence", help="Per-finding prevalence, e.g. effusion=0.5,nodule=0.2 (default 0.3)."),
    ] = None,
    fmt: Annotated[PhantomFormat, typer.Option("--format", help="png (16-bit) or dcm (DICOM DX).")] = "png",
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (output is identical for any number).")
    ] = 1,
) -> None:
    """Generate a procedural PA chest X-ray phantom cohort with exact labels, masks and physics."""
    from ..phantom.generator import generate_phantom_cohort

    names = [f.strip() for f in findings.split(",") if f.strip()]
    prev = parse_prevalence(prevalence)
    bar: tqdm | None = None

    def progress(done: int) -> None:
        nonlocal bar
        if bar is None:  # opened on the first image: argument errors print no empty bar
            bar = tqdm(total=n, file=sys.stderr, unit="img", desc="phantom")
        bar.update(done - bar.n)

    try:
        manifest = generate_phantom_cohort(
            out, n, size=size, seed=seed, findings=names, fmt=fmt, prevalence=prev,
            workers=workers, progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    typer.echo(str(manifest))
