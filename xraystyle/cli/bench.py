"""`xraystyle bench phantom`: the truth benchmark of a run on the phantom (docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import Device, Split, handle_errors

bench_app = typer.Typer(help="Benchmarks of a trained run.", no_args_is_help=True)


@bench_app.command("phantom")
@handle_errors
def phantom(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run folder (EMA weights).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (truth.json, truth.md).")],
    cohort: Annotated[Optional[Path], typer.Option("--cohort", help="Phantom cohort folder or its manifest.csv (default: the built-in phantom cohort at the run's image size).")] = None,
    split: Annotated[Split, typer.Option("--split", help="Split of the cohort the sources and references come from.")] = "test",
    n_sources: Annotated[int, typer.Option("--n-sources", help="Sources per task.")] = 40,
    n_styles: Annotated[int, typer.Option("--n-styles", help="Latent styles / stratified references per source.")] = 6,
    n_physics: Annotated[int, typer.Option("--n-physics", help="Physics draws of one reference per source.")] = 4,
    probe_patients: Annotated[int, typer.Option("--probe-patients", help="Fresh patients of the style probes (x 60 renders; 0: no probes).")] = 9,
    oracle_patients: Annotated[int, typer.Option("--oracle-patients", help="Phantom patients calibrating the attribute oracle (cached per size).")] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sources, styles, references, baselines and probes.")] = 0,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Score a run against the ideal counterfactuals the phantom renders: validity, attribute
    transfer, physics non-transfer, style probes, with the baselines identity, constant-style,
    exposure-shift, noise and ideal scored by the same code; 95 % bootstrap intervals over sources."""
    from ..evaluation.bench import BenchRequest, run_phantom_bench

    path = run_phantom_bench(BenchRequest(
        checkpoint=checkpoint, out=out, cohort=cohort, split=split, n_sources=n_sources, n_styles=n_styles,
        n_physics=n_physics, probe_patients=probe_patients, oracle_patients=oracle_patients, seed=seed, device=device, progress=progress))
    typer.echo(f"wrote {path} and {path.with_name('truth.md')}")
