"""`xraystyle cohort ...`: build, summarise, check cohorts; `cohort phantom` lives in phantom.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import CohortSource, MissingImages, Uncertain, fail, handle_errors

cohort_app = typer.Typer(help="Build, summarise and check cohort manifests.", no_args_is_help=True)


@cohort_app.command("build")
@handle_errors
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")],
    source: Annotated[Optional[CohortSource], typer.Argument(
        help="Public cohort whose metadata is read (or give --cohort).")] = None,
    cohort: Annotated[Optional[Path], typer.Option(
        "--cohort", help="Cohort definition YAML (cohorts/*.yaml); the options below override it.")] = None,
    csv: Annotated[Optional[list[Path]], typer.Option(
        "--csv", help="Source label CSV (repeat for several, e.g. CheXpert train + valid).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(
        "--metadata", help="Second CSV: MIMIC metadata, or RSNA DICOM headers (views).")] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="Image folder: source paths are looked up below it.")] = None,
    findings: Annotated[Optional[str], typer.Option(
        "--findings", help="Comma-separated findings to keep, e.g. effusion,cardiomegaly.")] = None,
    views: Annotated[Optional[str], typer.Option(
        "--views", help="Comma-separated views (PA,AP,...), 'frontal' (default) or 'all'.")] = None,
    split_seed: Annotated[Optional[int], typer.Option("--split-seed", help="Seed of the patient split.")] = None,
    split: Annotated[Optional[str], typer.Option(
        "--split", help="train,val,test fractions (default 0.8,0.1,0.1).")] = None,
    uncertain: Annotated[Optional[Uncertain], typer.Option(
        "--uncertain", help="CheXpert/MIMIC -1 labels: ignore (blank), positive or negative.")] = None,
    missing: Annotated[Optional[MissingImages], typer.Option(
        "--missing", help="Images not found under --images: drop (default), keep or error.")] = None,
) -> None:
    """Build a manifest CSV from a public cohort's metadata (images are optional)."""
    from ..cohorts.build import build_manifest
    from ..cohorts.definition import PHANTOM, definition_build_args, parse_definition, read_definition

    args: dict = {}
    if cohort is not None:
        data = read_definition(cohort)
        if data["source"] == PHANTOM:
            fail(f"{cohort}: phantom cohorts are generated with `xraystyle cohort phantom`")
        d = parse_definition(cohort, data)
        if source is not None and source != d.source:
            fail(f"{cohort}: defines source {d.source}, but the command names {source}")
        source = d.source
        if csv:  # explicit files: do not look up the YAML's file names at all
            d.csv = None
        if metadata is not None:
            d.metadata = None
        args = definition_build_args(cohort, d, images)
    if source is None:
        fail("give a SOURCE (nih, chexpert, mimic, vindr, rsna, padchest, folder) or --cohort FILE")
    overrides = dict(csv=csv or None, metadata=metadata, images=images, findings=findings, views=views,
                     uncertain=uncertain, split=split, split_seed=split_seed, missing=missing)
    args.update({k: v for k, v in overrides.items() if v is not None})
    args.setdefault("csv", [])
    manifest, report = build_manifest(source, out, **args)
    counts = manifest.df["split"].value_counts()
    typer.echo(f"wrote {out}: {len(manifest)} images, {manifest.df['patient_id'].nunique()} patients "
               f"(train {counts.get('train', 0)} / val {counts.get('val', 0)} / test {counts.get('test', 0)}); "
               f"findings: {', '.join(manifest.findings) or 'none'}")
    if report.dropped_view or report.dropped_missing or report.dropped_domain:
        typer.echo(f"left out: {report.dropped_view} outside the views, {report.dropped_missing} images not found, "
                   f"{report.dropped_domain} of other domains")


@cohort_app.command("summary")
@handle_errors
def summary(manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")]) -> None:
    """Counts per split, per finding x split (positive / negative / unknown) and per view."""
    from ..cohorts.manifest import load_manifest
    from ..cohorts.summary import summarize

    typer.echo(summarize(load_manifest(manifest)))


@cohort_app.command("check")
@handle_errors
def check(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    workers: Annotated[int, typer.Option("--workers", min=1, help="Reader threads.")] = 4,
) -> None:
    """Verify that every image exists and decodes; lists all failures, exit 1 if any."""
    from ..cohorts.check import check_manifest
    from ..cohorts.manifest import load_manifest

    m = load_manifest(manifest)
    n, failures = check_manifest(m, workers=workers, progress=True)
    for f in failures:
        typer.echo(f"row {f.row}: {f.path}: {f.reason}")
    if failures:
        fail(f"{manifest}: {len(failures)} of {n} files failed the check")
    typer.echo(f"{manifest}: all {n} files exist and decode")
