"""`xraystyle synth`: translate real radiographs to a target domain, as PNG and/or derived DICOM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import Device, SynthFormat, handle_errors


@handle_errors
def synth(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run folder (EMA weights are used).")],
    source: Annotated[Path, typer.Option("--source", help="Image file, folder of images, or manifest CSV.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    target: Annotated[Optional[str], typer.Option("--target", help="Target domain (latent-guided).")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="Reference image of the target domain (reference-guided).")] = None,
    reference_domain: Annotated[Optional[str], typer.Option("--reference-domain", help="Domain of the reference image.")] = None,
    reference_manifest: Annotated[Optional[Path], typer.Option("--reference-manifest", help="Manifest listing the reference (gives its domain).")] = None,
    n_styles: Annotated[int, typer.Option("--n-styles", help="Latent styles per source.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the latent styles.")] = 0,
    fmt: Annotated[SynthFormat, typer.Option("--format", help="png (16-bit), dcm (derived DICOM) or both.")] = "png",
    size: Annotated[Optional[int], typer.Option("--size", help="Resample the square output to N x N pixels.")] = None,
    restore_geometry: Annotated[bool, typer.Option("--restore-geometry", help="Map outputs back to each source's shape and grey levels.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 8,
    device: Device = "auto",
    add: Annotated[Optional[str], typer.Option("--add", help="Multi-label: findings to add to the source's set (comma-separated).")] = None,
    remove: Annotated[Optional[str], typer.Option("--remove", help="Multi-label: findings to remove from the source's set.")] = None,
    source_findings: Annotated[Optional[str], typer.Option("--source-findings", help="Multi-label: the sources' findings for --add/--remove (comma-separated; others absent). Default: each manifest row's labels.")] = None,
    keep_source_names: Annotated[bool, typer.Option("--keep-source-names", help="Put input paths in index.csv and error lines (they may hold identifiers).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Translate SOURCE images to --target (K latent styles) or to the style of --reference.

    Multi-label models take finding sets: --target effusion+nodule (normal = the empty set), or
    relative edits --add nodule --remove effusion applied to each source's own set: --source-findings
    when given, else the source's manifest row (unknown findings are taken as absent, with a note).

    Outputs are named by a hash of the source pixels, never by file name or DICOM tags:
    src-<hash>_to-<target>_z<k>.png|.dcm plus a provenance <name>.json, and index.csv.
    Unreadable inputs are skipped and reported by position; the exit code is then 1.
    """
    from ..cohorts.vocabulary import NORMAL
    from ..errors import XrayStyleError
    from ..synthesis.pipeline import SynthRequest, run_synth

    def names(text: str | None) -> list[str]:  # "normal" names the empty set wherever findings are listed
        return [n.strip() for n in (text or "").split(",") if n.strip() not in ("", NORMAL)]

    summary = run_synth(SynthRequest(
        checkpoint=checkpoint, source=source, out=out, target=target, reference=reference,
        reference_domain=reference_domain, reference_manifest=reference_manifest, add=names(add),
        remove=names(remove), source_findings=names(source_findings) if source_findings is not None else None,
        n_styles=n_styles, seed=seed, fmt=fmt, size=size, restore_geometry=restore_geometry,
        batch_size=batch_size, device=device, keep_source_names=keep_source_names, progress=progress))
    for note in summary.notes:
        typer.echo(f"xraystyle: {note}", err=True)
    typer.echo(f"wrote {summary.n_outputs} synthetic image(s) from {summary.n_sources} source(s): "
               f"{summary.n_files} files in {summary.out}")
    if summary.skipped.failures:
        for line in summary.skipped.failures:
            typer.echo(f"xraystyle: skipped {line}", err=True)
        raise XrayStyleError(f"{len(summary.skipped.failures)} of {summary.n_inputs} input(s) could not be read "
                             "(listed above)")
