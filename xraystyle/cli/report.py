"""`xraystyle report`: self-contained HTML counterfactual reports, for one image or a cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import fail, handle_errors


@app.command("report")
@handle_errors
def report(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or run folder (EMA weights are used).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder, e.g. reports/NAME/.")],
    input: Annotated[Optional[Path], typer.Option("--input", help="One radiograph (DICOM, PNG, ...).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Cohort mode: one report per manifest row.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Cohort mode: at most this many rows (in manifest order).")] = 20,
    split: Annotated[Optional[str], typer.Option("--split", help="Cohort mode: only rows of this split.")] = None,
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
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Cohort mode: show a progress bar on stderr.")] = True,
) -> None:
    """Counterfactual report of --input (OUT/report.html), or of the first --limit rows of
    --manifest (OUT/src-<hash>.html each, plus OUT/index.html).

    Each report shows the source, K latent (and optional reference-guided) counterfactuals per
    target domain, signed difference maps on one shared scale, the style variability and, with
    --classifier, the classifier's probabilities. No file name or DICOM identifier is written.
    """
    import sys

    from ..errors import InputError, XrayStyleError
    from ..reporting.counterfactual import build_report
    from ..reporting.html import render_index, write_report
    from ..synthesis import (SourceSpec, load_reference, load_source, manifest_sources,
                             reference_domain_from_manifest)
    from ..trained import load_trained_model
    from ..training.accel import resolve_device

    if (input is None) == (manifest is None):
        fail("give either --input IMAGE (one report) or --manifest MANIFEST (cohort mode)")
    if manifest is not None and source_domain is not None:
        fail("--source-domain is for --input; in cohort mode each row's domain comes from the manifest")
    if input is not None and input.suffix.lower() == ".csv":
        fail("--input takes one image; use --manifest for a manifest CSV")
    if n_styles < 1:
        fail(f"--n-styles must be at least 1, got {n_styles}")
    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    refs_given = list(reference or [])
    domains_given = list(reference_domain or [])
    if not refs_given and (domains_given or reference_manifest):
        fail("--reference-domain and --reference-manifest need --reference")
    if refs_given and not domains_given and reference_manifest is None:
        fail("--reference needs --reference-domain DOMAIN (or a --reference-manifest listing it)")
    if domains_given and len(domains_given) not in (1, len(refs_given)):
        fail(f"give one --reference-domain for all references or one per reference "
             f"({len(refs_given)} references, {len(domains_given)} domains)")

    model = load_trained_model(checkpoint, device=resolve_device(device))
    if source_domain is not None:
        model.target_label(source_domain)  # a domain, or a finding set written a+b for multi-label models
    refs = []
    for i, ref_path in enumerate(refs_given):
        if domains_given:
            domain = domains_given[0] if len(domains_given) == 1 else domains_given[i]
        else:
            domain = reference_domain_from_manifest(ref_path, reference_manifest, model.domains)
        refs.append(load_reference(ref_path, domain, model))

    clf, wanted = None, None
    if findings:
        wanted = [f.strip() for f in findings.split(",") if f.strip()]
    if classifier is not None:
        try:
            from ..evaluation.classifier import load_classifier
        except ImportError:
            raise XrayStyleError("--classifier: classifier support is not available in this installation") from None
        clf = load_classifier(classifier, weights_dir=weights_dir)
    elif wanted:
        fail("--findings selects what the --classifier chart shows; give --classifier too")

    def one(src, domain, source_set=None):
        return build_report(model, src, source_domain=domain, n_styles=n_styles, seed=seed, references=refs,
                            classifier=clf, findings=wanted, batch_size=batch_size, source_set=source_set)

    if input is not None:
        try:
            src = load_source(SourceSpec(input, str(input), 1), model.cfg.data.preprocess)
        except InputError as exc:  # the path may hold an identifier: not repeated
            raise XrayStyleError(f"--input: {exc.reason}") from None
        written = write_report(one(src, source_domain), out, pdf=pdf)
        typer.echo(f"wrote {', '.join(str(p) for p in written)}")
        return

    from tqdm import tqdm

    specs = manifest_sources(manifest, model.domains, split=split, limit=limit)
    entries, failures, seen = [], [], set()
    targets = list(model.domains)
    for spec in tqdm(specs, desc="report", unit="image", file=sys.stderr, disable=not progress):
        try:
            src = load_source(spec, model.cfg.data.preprocess)
        except InputError as exc:
            failures.append(f"manifest row {spec.position}: {exc.reason}")
            continue
        if src.sha256 in seen:
            continue
        seen.add(src.sha256)
        rep = one(src, spec.domain, model.source_set(spec.findings) if model.multi_label else None)
        name = f"src-{src.short_hash}"
        write_report(rep, out, name=name, pdf=pdf)
        entry = {"href": f"{name}.html", "hash": src.short_hash, "domain": spec.domain}
        for section in rep.sections:
            entry[f"change:{section.column}"] = section.mean_abs_change
            entry[f"shift:{section.column}"] = section.key_shift
        entries.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(render_index(entries, targets, clf is not None, len(failures),
                                                         per_finding=model.multi_label), encoding="utf-8")
    typer.echo(f"wrote {len(entries)} report(s) and {out / 'index.html'}")
    if failures:
        for line in failures:
            typer.echo(f"xraystyle: skipped {line}", err=True)
        raise XrayStyleError(f"{len(failures)} of {len(specs)} image(s) could not be read (listed above)")
