"""`xraystyle synth`: translate real radiographs to a target domain, as PNG and/or derived DICOM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import fail, handle_errors


@app.command("synth")
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
    fmt: Annotated[str, typer.Option("--format", help="png (16-bit), dcm (derived DICOM) or both.")] = "png",
    size: Annotated[Optional[int], typer.Option("--size", help="Resample the square output to N x N pixels.")] = None,
    restore_geometry: Annotated[bool, typer.Option("--restore-geometry", help="Map outputs back to each source's shape and grey levels.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
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
    import itertools
    import sys

    from tqdm import tqdm

    from ..errors import InputError, XrayStyleError
    from ..reporting.export import FORMATS, index_row, write_index, write_result
    from ..reporting.provenance import model_record
    from ..synthesis import list_sources, load_reference, load_source, reference_domain_from_manifest, synthesize
    from ..trained import load_trained_model
    from ..training.accel import resolve_device

    # "normal" names the empty set wherever findings are listed
    names = lambda text: [n.strip() for n in (text or "").split(",") if n.strip() not in ("", "normal")]  # noqa: E731
    relative = bool(add or remove)
    if relative and (target is not None or reference is not None):
        fail("--add/--remove edit the source's finding set; do not combine them with --target or --reference")
    if source_findings is not None and not relative:
        fail("--source-findings goes with --add/--remove")
    if not relative and (target is None) == (reference is None):
        fail("give either --target DOMAIN (latent-guided) or --reference IMAGE (reference-guided)")
    if reference is None and (reference_domain or reference_manifest):
        fail("--reference-domain and --reference-manifest need --reference")
    if reference is not None and reference_domain is None and reference_manifest is None:
        fail("--reference needs --reference-domain DOMAIN (or a --reference-manifest listing it)")
    if n_styles < 1:
        fail(f"--n-styles must be at least 1, got {n_styles}")
    if batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if size is not None and not 16 <= size <= 4096:
        fail(f"--size must be in 16..4096, got {size}")
    if size is not None and restore_geometry:
        fail("--size and --restore-geometry exclude each other")

    model = load_trained_model(checkpoint, device=resolve_device(device))
    given = names(source_findings) if source_findings is not None else None
    added, removed = names(add), names(remove)
    if relative:  # validate the names now; each source's target is its own set with the edits applied
        model.finding_set(added + (given or []), absent=removed)
    ref = None
    if target is not None:
        model.target_label(target)
    elif not relative:
        domain = reference_domain
        if domain is None:
            domain = reference_domain_from_manifest(reference, reference_manifest, model.domains)
        ref = load_reference(reference, domain, model)
    try:
        specs = list_sources(source, model.domains)
    except InputError as exc:  # the path may hold an identifier: shown only on request
        raise XrayStyleError(f"--source {source if keep_source_names else ''}: {exc.reason}".replace(" :", ":")) from None
    out.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    seen: dict[str, int] = {}

    def loaded():
        bar = tqdm(total=len(specs), desc="synth", unit="image", file=sys.stderr, disable=not progress)
        for spec in specs:
            where = f"input {spec.position} of {len(specs)}"
            if keep_source_names:
                where += f" ({spec.label})"
            try:
                src = load_source(spec, model.cfg.data.preprocess)
            except InputError as exc:
                failures.append(f"{where}: {exc.reason}")
            else:
                if src.sha256 in seen:
                    typer.echo(f"xraystyle: {where}: same pixels as input {seen[src.sha256]}; skipped", err=True)
                else:
                    seen[src.sha256] = spec.position
                    yield src
            bar.update(1)
        bar.close()

    unknown: set[str] = set()

    def with_targets(stream):
        """(target, source): the source's own set (--source-findings, else its manifest row) edited."""
        for src in stream:
            base = model.source_set(src.spec.findings if src.spec is not None else None, given)
            unknown.update(d for d, v in zip(model.domains, base[0].tolist()) if v != v and d not in added + removed)
            yield model.set_text(model.finding_set(added, base=base, absent=removed)), src

    def chunks(stream):
        """(target, up to batch_size sources): consecutive sources with the same target share
        batches; nothing is held beyond one batch."""
        for t, group in itertools.groupby(stream, key=lambda p: p[0]):
            while chunk := [s for _, s in itertools.islice(group, batch_size)]:
                yield t, chunk

    if relative:
        groups = chunks(with_targets(loaded()))
    else:
        groups = iter([(target, loaded())])
    info = model_record(model)
    rows, n_files = [], 0
    for group_target, group in groups:
        for result in synthesize(model, group, target=group_target, reference=ref, n_styles=n_styles, seed=seed,
                                 batch_size=batch_size):
            n_files += len(write_result(result, out, info, fmt=fmt, restore=restore_geometry, size=size))
            rows.append(index_row(result))
    if unknown:
        typer.echo(f"xraystyle: {', '.join(sorted(unknown))} unknown for some sources (no --source-findings and no "
                   "manifest label): taken as absent", err=True)
    write_index(rows, out, keep_source_names)
    typer.echo(f"wrote {len(rows)} synthetic image(s) from {len(seen)} source(s): {n_files + 1} files in {out}")
    if failures:
        for line in failures:
            typer.echo(f"xraystyle: skipped {line}", err=True)
        raise XrayStyleError(f"{len(failures)} of {len(specs)} input(s) could not be read (listed above)")
