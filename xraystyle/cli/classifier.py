"""`xraystyle classifier train`: the independent judge of counterfactuals, trained on real images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import ClassifierArch, Device, handle_errors

classifier_app = typer.Typer(help="Train the classifier that judges counterfactuals.", no_args_is_help=True)


@classifier_app.command("train")
@handle_errors
def classifier_train(
    cohort: Annotated[Path, typer.Option("--cohort", help="Manifest CSV (its train split is used; val picks thresholds).")],
    findings: Annotated[str, typer.Option("--findings", help="Comma-separated findings, e.g. effusion,nodule.")],
    out: Annotated[Path, typer.Option("--out", help="Output classifier file (.pt).")],
    arch: Annotated[ClassifierArch, typer.Option("--arch", help="densenet121 or resnet50 (GPU), small (CPU).")] = "small",
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training split.")] = 10,
    size: Annotated[int, typer.Option("--size", help="Input size in pixels (match the generator's).")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (0: 1e-3 for small, 1e-4 otherwise).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    augment: Annotated[bool, typer.Option(help="Physics augmentation (exposure, contrast, gamma, noise, blur).")] = True,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a multi-label classifier on the REAL train-split images of a manifest and write
    it, with its validation AUC and operating points, to OUT (.pt)."""
    from ..cohorts.manifest import load_manifest
    from ..errors import ConfigError
    from ..evaluation.classifier_train import train_classifier
    from ..training.accel import resolve_device

    if out.suffix != ".pt":
        raise ConfigError(f"--out {out}: the classifier file must end in .pt")
    manifest = load_manifest(cohort)
    names = [f.strip() for f in findings.split(",") if f.strip()]
    summary = train_classifier(manifest, names, out, arch=arch, epochs=epochs, size=size, batch_size=batch_size,
                               device=resolve_device(device), seed=seed, lr=lr or None, augment=augment,
                               progress=progress)
    typer.echo(f"classifier {out} ({arch}, {size} px, {summary['train']['n_train']} training images, "
               f"{summary['train']['n_val']} validation images)")
    for f, t in zip(summary["findings"], summary["thresholds"]):
        a = summary["val_auc"][f]
        typer.echo(f"  {f:<28} val AUC {'n/a' if a is None else f'{a:.3f}'}   threshold {t:.3f}")
    typer.echo(f"  thresholds: {summary['threshold_rule']}")
