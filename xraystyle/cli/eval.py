"""`xraystyle eval`: judge a trained model's counterfactuals with an independent classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import Device, EvalMode, Oracle, Split, handle_errors


@handle_errors
def eval_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run folder (EMA weights).")],
    cohort: Annotated[Path, typer.Option("--cohort", help="Manifest CSV with the evaluation images.")],
    classifier: Annotated[str, typer.Option("--classifier", help="xrv:<weights> (cached torchxrayvision model) or a .pt from 'xraystyle classifier train'.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (metrics.json, metrics.jsonl, figures, summary.html).")],
    split: Annotated[Split, typer.Option("--split", help="Split of the sources, the references and the real images the judge's real rate is measured on.")] = "test",
    n_styles: Annotated[int, typer.Option("--n-styles", help="Outputs per source (latent codes or references).")] = 10,
    mode: Annotated[EvalMode, typer.Option("--mode", help="Latent-guided, reference-guided outputs or both.")] = "both",
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most N sources per source domain.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sources, latent codes and references.")] = 0,
    fid_split: Annotated[Split, typer.Option("--fid-split", help="Split of the real target images for FID.")] = "train",
    max_real: Annotated[int, typer.Option("--max-real", help="At most N real images per domain (per pool for finding sets) for FID, references and real rates.")] = 2000,
    weights_dir: Annotated[Optional[Path], typer.Option("--weights-dir", help="Folder with torchxrayvision weight files (instead of ~/.torchxrayvision/models_data).")] = None,
    oracle: Annotated[Oracle, typer.Option("--oracle", help="Phantom ground truth (auto: for phantom cohorts).")] = "auto",
    oracle_patients: Annotated[int, typer.Option("--oracle-patients", help="Rendered phantom patients calibrating the oracle (half fit, half test).")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 32,
    max_set_size: Annotated[Optional[int], typer.Option("--max-set-size", help="Multi-label models: largest finding set asked for (default: all findings).")] = None,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate every source -> target domain pair: validity, probability shifts, FID,
    diversity, identity preservation, physics leakage (and phantom ground truth).
    Multi-label models: every finding added and removed, and every finding set from normal."""
    from ..evaluation.pipeline import run_eval
    from ..evaluation.runner import EvalOptions
    from ..evaluation.summary import metrics_table_markdown

    modes = {"latent": ("latent",), "reference": ("reference",), "both": ("latent", "reference")}
    opts = EvalOptions(split=split, n_styles=n_styles, modes=modes[mode], limit=limit, seed=seed,
                       batch_size=batch_size, fid_split=fid_split, max_real=max_real, oracle=oracle,
                       oracle_patients=oracle_patients, progress=progress)
    result, paths = run_eval(checkpoint, cohort, classifier, opts, out, weights_dir=weights_dir, device=device,
                             max_set_size=max_set_size)
    typer.echo(metrics_table_markdown(result.metrics))
    typer.echo(f"wrote {paths['metrics']}, {paths['html']}")
