"""The ``report`` job: one counterfactual report for an image, or one per manifest row plus an
index page. :func:`run_reports` is what ``xraystyle report`` calls; the command only parses
options and prints the :class:`ReportSummary`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError, XrayStyleError


@dataclass
class ReportRequest:
    checkpoint: Path
    out: Path
    input: Path | None = None  # one image ...
    manifest: Path | None = None  # ... or cohort mode: one report per row
    limit: int = 20
    split: str | None = None
    source_domain: str | None = None  # of --input; a finding set a+b for multi-label models
    n_styles: int = 3
    seed: int = 0
    references: Sequence[Path] = ()
    reference_domains: Sequence[str] = ()  # one for all references, or one each
    reference_manifest: Path | None = None
    classifier: str | None = None
    weights_dir: Path | None = None
    findings: Sequence[str] | None = None  # classifier findings to chart
    pdf: bool = False
    batch_size: int = 8
    device: str = "auto"
    progress: bool = False

    def __post_init__(self):
        if (self.input is None) == (self.manifest is None):
            raise ConfigError("give either --input IMAGE (one report) or --manifest MANIFEST (cohort mode)")
        if self.manifest is not None and self.source_domain is not None:
            raise ConfigError("--source-domain is for --input; in cohort mode each row's domain comes from the manifest")
        if self.input is not None and self.input.suffix.lower() == ".csv":
            raise ConfigError("--input takes one image; use --manifest for a manifest CSV")
        if self.n_styles < 1:
            raise ConfigError(f"--n-styles must be at least 1, got {self.n_styles}")
        if self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        refs, domains = list(self.references), list(self.reference_domains)
        if not refs and (domains or self.reference_manifest):
            raise ConfigError("--reference-domain and --reference-manifest need --reference")
        if refs and not domains and self.reference_manifest is None:
            raise ConfigError("--reference needs --reference-domain DOMAIN (or a --reference-manifest listing it)")
        if domains and len(domains) not in (1, len(refs)):
            raise ConfigError(f"give one --reference-domain for all references or one per reference "
                              f"({len(refs)} references, {len(domains)} domains)")
        if self.findings and self.classifier is None:
            raise ConfigError("--findings selects what the --classifier chart shows; give --classifier too")


@dataclass
class ReportSummary:
    written: list[Path]  # report files (and index.html in cohort mode)
    n_reports: int
    n_inputs: int
    failures: list[str] = field(default_factory=list)  # "manifest row 3: reason"
    index: Path | None = None


def run_reports(req: ReportRequest) -> ReportSummary:
    from ..synthesis import (
        LoadLog,
        SourceSpec,
        load_reference,
        load_source,
        load_sources,
        manifest_sources,
        reference_domain_from_manifest,
    )
    from ..trained import load_trained_model
    from ..training.accel import resolve_device
    from .counterfactual import build_report
    from .html import render_index, write_report

    model = load_trained_model(req.checkpoint, device=resolve_device(req.device))
    if req.source_domain is not None:
        model.labels.parse(req.source_domain)  # a domain, or a finding set written a+b
    refs = []
    for i, ref_path in enumerate(req.references):
        if req.reference_domains:
            domain = req.reference_domains[0] if len(req.reference_domains) == 1 else req.reference_domains[i]
        else:
            domain = reference_domain_from_manifest(ref_path, req.reference_manifest, model.domains)
        refs.append(load_reference(ref_path, domain, model))
    clf = None
    if req.classifier is not None:
        try:
            from ..evaluation.classifier import load_classifier
        except ImportError:
            raise XrayStyleError("--classifier: classifier support is not available in this installation") from None
        clf = load_classifier(req.classifier, weights_dir=req.weights_dir)

    def one(src, domain, source_set=None):
        return build_report(model, src, source_domain=domain, n_styles=req.n_styles, seed=req.seed,
                            references=refs, classifier=clf, findings=req.findings, batch_size=req.batch_size,
                            source_set=source_set)

    if req.input is not None:
        try:
            src = load_source(SourceSpec(req.input, str(req.input), 1), model.preprocess)
        except InputError as exc:  # the path may hold an identifier: not repeated
            raise XrayStyleError(f"--input: {exc.reason}") from None
        written = write_report(one(src, req.source_domain), req.out, pdf=req.pdf)
        return ReportSummary(written, 1, 1)

    specs = manifest_sources(req.manifest, model.domains, split=req.split, limit=req.limit)
    log = LoadLog()  # unreadable rows, and duplicates of an earlier row (the same report), left out
    entries, written = [], []
    for src in load_sources(specs, model.preprocess, log, lambda spec: f"manifest row {spec.position}",
                            progress=req.progress, desc="report"):
        spec = src.spec
        rep = one(src, spec.domain, model.labels.source(spec.findings))
        name = f"src-{src.short_hash}"
        written += write_report(rep, req.out, name=name, pdf=req.pdf)
        entry = {"href": f"{name}.html", "hash": src.short_hash, "domain": spec.domain}
        for section in rep.sections:
            entry[f"change:{section.column}"] = section.mean_abs_change
            entry[f"shift:{section.column}"] = section.key_shift
        entries.append(entry)
    req.out.mkdir(parents=True, exist_ok=True)
    index = req.out / "index.html"
    index.write_text(render_index(entries, list(model.domains), clf is not None, len(log.failures),
                                  per_finding=model.labels.kind == "finding-sets"), encoding="utf-8")
    return ReportSummary(written + [index], len(entries), len(specs), log.failures, index)
