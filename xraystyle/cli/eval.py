"""`xraystyle eval`: judge a trained model's counterfactuals with an independent classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import handle_errors


@app.command("eval")
@handle_errors
def eval_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run folder (EMA weights).")],
    cohort: Annotated[Path, typer.Option("--cohort", help="Manifest CSV with the evaluation images.")],
    classifier: Annotated[str, typer.Option("--classifier", help="xrv:<weights> (cached torchxrayvision model) or a .pt from 'xraystyle classifier train'.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (metrics.json, metrics.jsonl, figures, summary.html).")],
    split: Annotated[str, typer.Option("--split", help="Split of the source and reference images.")] = "test",
    n_styles: Annotated[int, typer.Option("--n-styles", help="Outputs per source (latent codes or references).")] = 10,
    mode: Annotated[str, typer.Option("--mode", help="latent, reference or both.")] = "both",
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N sources per source domain.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sources, latent codes and references.")] = 0,
    fid_split: Annotated[str, typer.Option("--fid-split", help="Split of the real target images for FID.")] = "train",
    max_real: Annotated[int, typer.Option("--max-real", help="At most N real images per domain for FID.")] = 2000,
    weights_dir: Annotated[Optional[Path], typer.Option("--weights-dir", help="Folder with torchxrayvision weight files (instead of ~/.torchxrayvision/models_data).")] = None,
    oracle: Annotated[str, typer.Option("--oracle", help="Phantom ground truth: auto (phantom cohorts), on, off.")] = "auto",
    oracle_patients: Annotated[int, typer.Option("--oracle-patients", help="Rendered phantom patients calibrating the oracle (half fit, half test).")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 32,
    max_set_size: Annotated[Optional[int], typer.Option("--max-set-size", help="Multi-label models: largest finding set asked for (default: all findings).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate every source -> target domain pair: validity, probability shifts, FID,
    diversity, identity preservation, physics leakage (and phantom ground truth).
    Multi-label models: every finding added and removed, and every finding set from normal."""
    from ..cohorts.manifest import load_manifest
    from ..errors import ConfigError
    from ..evaluation.classifier import load_classifier
    from ..evaluation.runner import EvalOptions, run_evaluation
    from ..evaluation.sets import run_set_evaluation
    from ..evaluation.summary import metrics_table_markdown, write_outputs
    from ..trained import load_trained_model
    from ..training.accel import resolve_device

    modes = {"latent": ("latent",), "reference": ("reference",), "both": ("latent", "reference")}
    if mode not in modes:
        raise ConfigError(f"--mode must be latent, reference or both, got {mode!r}")
    for name, value in (("--split", split), ("--fid-split", fid_split)):
        if value not in ("train", "val", "test"):
            raise ConfigError(f"{name} must be train, val or test, got {value!r}")
    if max_set_size is not None and max_set_size < 1:
        raise ConfigError(f"--max-set-size must be >= 1, got {max_set_size}")
    dev = resolve_device(device)
    manifest = load_manifest(cohort)
    judge = load_classifier(classifier, weights_dir, dev)
    model = load_trained_model(checkpoint, device=dev)
    opts = EvalOptions(split=split, n_styles=n_styles, modes=modes[mode], limit=limit, seed=seed,
                       batch_size=batch_size, fid_split=fid_split, max_real=max_real, oracle=oracle,
                       oracle_patients=oracle_patients, progress=progress)
    if max_set_size is not None and not model.multi_label:
        raise ConfigError("--max-set-size is for multi-label (finding-set) models")
    if model.multi_label:
        result = run_set_evaluation(model, manifest, judge, opts, max_set_size=max_set_size)
    else:
        result = run_evaluation(model, manifest, judge, opts)
    paths = write_outputs(result, out)
    typer.echo(metrics_table_markdown(result.metrics))
    typer.echo(f"wrote {paths['metrics']}, {paths['html']}")
