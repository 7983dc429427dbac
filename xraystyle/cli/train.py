"""`xraystyle train`: StarGAN v2 on a cohort (default: the built-in phantom cohort)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from . import app
from ._common import handle_errors

log = logging.getLogger(__name__)


@app.command("train")
@handle_errors
def train(
    domains: Annotated[str, typer.Option(help="Comma-separated domains; 'normal' = none of the others.")] = "normal,effusion",
    cohort: Annotated[Optional[str], typer.Option(help="Manifest CSV or cohort YAML (default: built-in phantom cohort).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image root for a cohort YAML.")] = None,
    config: Annotated[Optional[str], typer.Option(help="Run config YAML or packaged name (tiny, demo, paper-256).")] = None,
    iters: Annotated[Optional[int], typer.Option(help="Total number of steps (a resumed run continues to it).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<domains>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's latest checkpoint.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    mode: Annotated[Optional[str], typer.Option(help="reference (fp32 eager) or fast (bf16, compile); default: auto.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch size.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train StarGAN v2 across DOMAINS, e.g. `xraystyle train --domains normal,effusion`."""
    from ..config import to_dict
    from ..paths import cache_dir, resolve_config
    from ..training.config import load_config

    names = [d.strip() for d in domains.split(",") if d.strip()]
    overrides = {"domains": names}
    for key, value in (("train.iters", iters), ("train.seed", seed), ("train.mode", mode),
                       ("train.batch_size", batch_size)):
        if value is not None:
            overrides[key] = value
    cfg_path = resolve_config(config if config is not None else ("demo" if cohort is None else "paper-256"))
    cfg = load_config(cfg_path, overrides)
    if dry_run:
        typer.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False), nl=False)
        raise typer.Exit()

    from ..cohorts.default import default_phantom_manifest
    from ..cohorts.manifest import load_manifest
    from ..training.accel import make_accel, resolve_device
    from ..training.distributed import init_distributed, shutdown
    from ..training.trainer import training_loop

    dev = resolve_device(device)
    info = init_distributed(dev)
    if dev.type == "cuda" and info.world > 1:
        import torch

        dev = torch.device("cuda", info.local_rank)
    root = cache_dir()
    if cohort is None:
        manifest_path = default_phantom_manifest(cfg.model.img_size, root)
    else:
        from ..cohorts import resolve_cohort

        manifest_path = resolve_cohort(cohort, images=images, cache_dir=root / "cohorts")
    manifest = load_manifest(manifest_path)
    run_dir = out if out is not None else Path("runs") / "-".join(names)
    try:
        result = training_loop(cfg, run_dir, manifest, cache_dir=root / "tensors",
                               accel=make_accel(cfg.train.mode, dev), resume=resume, info=info,
                               progress=progress)
    finally:
        shutdown(info)
    if info.is_main:
        where = f"; checkpoint {result.checkpoint}" if result.checkpoint else ""
        if result.signal is not None:
            typer.echo(f"stopped by signal at step {result.step}{where}; continue with --resume", err=True)
            raise typer.Exit(128 + int(result.signal))
        typer.echo(f"trained to step {result.step} in {run_dir}{where}")
