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
    domains: Annotated[Optional[str], typer.Option(help="Comma-separated domains; 'normal' = none of the others. Default: normal,effusion.")] = None,
    findings: Annotated[Optional[str], typer.Option(help="Multi-label: comma-separated findings (implies --multi-label).")] = None,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Condition on finding sets ('normal' = empty set).")] = False,
    conditioning: Annotated[Optional[str], typer.Option(help="single, set-additive or set-film (default: from config; set-additive with --multi-label).")] = None,
    cohort: Annotated[Optional[str], typer.Option(help="Manifest CSV or cohort YAML (default: built-in phantom cohort).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image root for a cohort YAML.")] = None,
    config: Annotated[Optional[str], typer.Option(help="Run config YAML or packaged name (tiny, demo, xray-256, paper-256); default: demo on the phantom, xray-256 with --cohort.")] = None,
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
    """Train StarGAN v2 across DOMAINS (`--domains normal,effusion`) or, multi-label, across sets of
    FINDINGS (`--findings effusion,nodule,cardiomegaly`)."""
    from ..config import load_yaml, to_dict
    from ..paths import cache_dir, resolve_config
    from ..training.config import load_config

    from ..errors import ConfigError

    if domains is not None and findings is not None:
        raise ConfigError("give --domains (single-label) or --findings (multi-label), not both")
    multi_label = multi_label or findings is not None
    spec = findings if findings is not None else domains
    default_names = None if multi_label else "normal,effusion"
    names = [d.strip() for d in (spec or default_names or "").split(",") if d.strip()]
    overrides: dict = {"domains": names} if names else {}
    for key, value in (("train.iters", iters), ("train.seed", seed), ("train.mode", mode),
                       ("train.batch_size", batch_size)):
        if value is not None:
            overrides[key] = value
    if conditioning is not None:
        overrides["model.conditioning"] = conditioning
    cfg_path = resolve_config(config if config is not None else ("demo" if cohort is None else "xray-256"))
    if multi_label and conditioning is None:
        base = load_yaml(cfg_path).get("model", {}).get("conditioning", "single")
        overrides["model.conditioning"] = base if base.startswith("set-") else "set-additive"
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
    run_dir = out if out is not None else Path("runs") / (("multilabel-" if cfg.multi_label else "") + "-".join(cfg.domains))
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
