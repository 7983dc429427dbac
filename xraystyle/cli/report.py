"""`xraystyle report`: self-contained HTML counterfactual reports, for one image or a cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import Device, Split, handle_errors


@handle_errors
def report(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run folder (EMA weights are used).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder, e.g. reports/NAME/.")],
    input: Annotated[Optional[Path], typer.Option("--input", help="One radiograph (DICOM, PNG, ...).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Cohort mode: one report per manifest row.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Cohort mode: at most this many rows (in manifest order).")] = 20,
    split: Annotated[Optional[Split], typer.Option("--split", help="Cohort mode: only rows of this split.")] = None,
    source_domain: Annotated[Optional[str], typer.Option("--source-domain", help="Domain of --input; multi-label models: its finding set, e.g. effusion+nodule or normal (default: unknown).")] = None,
    n_styles: Annotated[int, typer.Option("--n-styles", help="Latent styles per target domain.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the latent styles.")] = 0,
    reference: Annotated[Optional[list[Path]], typer.Option("--reference", help="Reference image (repeatable).")] = None,
    reference_domain: Annotated[Optional[list[str]], typer.Option("--reference-domain", help="Domain of each --reference (once for all, or once per reference).")] = None,
    reference_manifest: Annotated[Optional[Path], typer.Option("--reference-manifest", help="Manifest listing the references (gives their domains).")] = None,
    classifier: Annotated[Optional[str], typer.Option("--classifier", help="Classifier spec for the probability chart.")] = None,
    weights_dir: Annotated[Optional[Path], typer.Option("--weights-dir", help="Where the classifier's weights are cached.")] = None,
    findings: Annotated[Optional[str], typer.Option("--findings", help="Comma-separated classifier findings to chart (default: the model's).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write the report as PDF.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 8,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Cohort mode: show a progress bar on stderr.")] = True,
) -> None:
    """Counterfactual report of --input (OUT/report.html), or of the first --limit rows of
    --manifest (OUT/src-<hash>.html each, plus OUT/index.html).

    Each report shows the source, K latent (and optional reference-guided) counterfactuals per
    target domain, signed difference maps on one shared scale, the style variability and, with
    --classifier, the classifier's probabilities. No file name or DICOM identifier is written.
    """
    from ..errors import XrayStyleError
    from ..reporting.pipeline import ReportRequest, run_reports

    summary = run_reports(ReportRequest(
        checkpoint=checkpoint, out=out, input=input, manifest=manifest, limit=limit, split=split,
        source_domain=source_domain, n_styles=n_styles, seed=seed, references=list(reference or []),
        reference_domains=list(reference_domain or []), reference_manifest=reference_manifest,
        classifier=classifier, weights_dir=weights_dir,
        findings=[f.strip() for f in findings.split(",") if f.strip()] if findings else None,
        pdf=pdf, batch_size=batch_size, device=device, progress=progress))
    if summary.index is None:
        typer.echo(f"wrote {', '.join(str(p) for p in summary.written)}")
        return
    typer.echo(f"wrote {summary.n_reports} report(s) and {summary.index}")
    if summary.failures:
        for line in summary.failures:
            typer.echo(f"xraystyle: skipped {line}", err=True)
        raise XrayStyleError(f"{len(summary.failures)} of {summary.n_inputs} image(s) could not be read (listed above)")
