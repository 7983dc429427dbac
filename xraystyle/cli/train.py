"""`xraystyle train`: StarGAN v2 on a cohort (default: the built-in phantom cohort)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from ._common import Conditioning, Device, TrainMode, handle_errors


@handle_errors
def train(
    domains: Annotated[Optional[str], typer.Option(help="Comma-separated domains; 'normal' = none of the others. Default: normal,effusion.")] = None,
    findings: Annotated[Optional[str], typer.Option(help="Multi-label: comma-separated findings (implies --multi-label).")] = None,
    finding_sets: Annotated[bool, typer.Option("--multi-label", help="Condition on finding sets ('normal' = empty set).")] = False,
    conditioning: Annotated[Optional[Conditioning], typer.Option(help="Default: from config; set-additive with --multi-label.")] = None,
    cohort: Annotated[Optional[str], typer.Option(help="Manifest CSV or cohort YAML (default: built-in phantom cohort).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image root for a cohort YAML.")] = None,
    config: Annotated[Optional[str], typer.Option(help="Run config YAML or packaged name (tiny, demo, xray-256, paper-256); default: demo on the phantom, xray-256 with --cohort.")] = None,
    iters: Annotated[Optional[int], typer.Option(help="Total number of steps (a resumed run continues to it).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<domains>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's latest checkpoint.")] = False,
    device: Device = "auto",
    mode: Annotated[Optional[TrainMode], typer.Option(help="reference (fp32 eager) or fast (bf16, compile); default: from config (auto: fast on CUDA).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch size.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train StarGAN v2 across DOMAINS (`--domains normal,effusion`) or, multi-label, across sets of
    FINDINGS (`--findings effusion,nodule,cardiomegaly`)."""
    from ..config import to_dict
    from ..training.launch import resolve_run_config, run_training

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [d.strip() for d in text.split(",") if d.strip()]

    overrides = {key: value for key, value in (("train.iters", iters), ("train.seed", seed), ("train.mode", mode),
                                               ("train.batch_size", batch_size)) if value is not None}
    cfg = resolve_run_config(domains=names(domains), findings=names(findings), finding_sets=finding_sets,
                             conditioning=conditioning, config=config, cohort_given=cohort is not None,
                             overrides=overrides, say=lambda line: typer.echo(line, err=True))
    if dry_run:
        typer.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False), nl=False)
        raise typer.Exit()
    run = run_training(cfg, cohort=cohort, images=images, out=out, resume=resume, device=device, progress=progress)
    if run.is_main:
        result = run.result
        where = f"; checkpoint {result.checkpoint}" if result.checkpoint else ""
        if result.signal is not None:
            typer.echo(f"stopped by signal at step {result.step}{where}; continue with --resume", err=True)
            raise typer.Exit(128 + int(result.signal))
        typer.echo(f"trained to step {result.step} in {run.run_dir}{where}")
