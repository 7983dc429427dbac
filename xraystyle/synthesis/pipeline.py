"""The ``synth`` job: sources (a file, folder or manifest) -> counterfactuals -> written outputs.

:func:`run_synth` is what ``xraystyle synth`` calls; the command only parses options and prints
the :class:`SynthSummary`. Targets are a domain or finding set (latent-guided), a reference
image (reference-guided), or relative finding-set edits applied to each source's own set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError, XrayStyleError
from .batches import synthesize
from .sources import LoadLog, SourceImage, list_sources, load_reference, load_sources, reference_domain_from_manifest


@dataclass
class SynthRequest:
    checkpoint: Path
    source: Path
    out: Path
    target: str | None = None  # latent-guided
    reference: Path | None = None  # reference-guided
    reference_domain: str | None = None
    reference_manifest: Path | None = None
    add: Sequence[str] = ()  # relative finding-set edits (multi-label models)
    remove: Sequence[str] = ()
    source_findings: Sequence[str] | None = None  # the sources' own set for the edits (else manifest rows)
    n_styles: int = 1
    seed: int = 0
    fmt: str = "png"  # png | dcm | both
    size: int | None = None
    restore_geometry: bool = False
    batch_size: int = 8
    device: str = "auto"
    keep_source_names: bool = False  # input paths in index.csv and messages (they may hold identifiers)
    progress: bool = False

    @property
    def relative(self) -> bool:
        return bool(self.add or self.remove)

    def __post_init__(self):
        if self.relative and (self.target is not None or self.reference is not None):
            raise ConfigError("--add/--remove edit the source's finding set; do not combine them with --target or --reference")
        if self.source_findings is not None and not self.relative:
            raise ConfigError("--source-findings goes with --add/--remove")
        if not self.relative and (self.target is None) == (self.reference is None):
            raise ConfigError("give either --target DOMAIN (latent-guided) or --reference IMAGE (reference-guided)")
        if self.reference is None and (self.reference_domain or self.reference_manifest):
            raise ConfigError("--reference-domain and --reference-manifest need --reference")
        if self.reference is not None and self.reference_domain is None and self.reference_manifest is None:
            raise ConfigError("--reference needs --reference-domain DOMAIN (or a --reference-manifest listing it)")
        if self.n_styles < 1:
            raise ConfigError(f"--n-styles must be at least 1, got {self.n_styles}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.size is not None and not 16 <= self.size <= 4096:
            raise ConfigError(f"--size must be in 16..4096, got {self.size}")
        if self.size is not None and self.restore_geometry:
            raise ConfigError("--size and --restore-geometry exclude each other")


@dataclass
class SynthSummary:
    out: Path
    n_inputs: int
    n_sources: int  # read and used (duplicates and unreadable inputs skipped)
    n_outputs: int  # synthetic images
    n_files: int  # images, sidecars and index.csv
    skipped: LoadLog
    notes: list[str] = field(default_factory=list)


def run_synth(req: SynthRequest) -> SynthSummary:
    """Load the model and the sources, synthesise, write every output and index.csv."""
    from ..reporting.export import index_row, write_index, write_result
    from ..reporting.provenance import model_record
    from ..trained import load_trained_model
    from ..training.accel import resolve_device

    model = load_trained_model(req.checkpoint, device=resolve_device(req.device))
    labels = model.labels
    added, removed = list(req.add), list(req.remove)
    given = list(req.source_findings) if req.source_findings is not None else None
    ref = None
    if req.relative:  # validate the names now; each source's target is its own set with the edits applied
        labels.edit(added + (given or []), absent=removed)
    elif req.target is not None:
        labels.parse(req.target)
    else:
        domain = req.reference_domain
        if domain is None:
            domain = reference_domain_from_manifest(req.reference, req.reference_manifest, model.domains)
        ref = load_reference(req.reference, domain, model)
    try:
        specs = list_sources(req.source, model.domains)
    except InputError as exc:  # the path may hold an identifier: shown only on request
        shown = f" {req.source}" if req.keep_source_names else ""
        raise XrayStyleError(f"--source{shown}: {exc.reason}") from None
    req.out.mkdir(parents=True, exist_ok=True)

    def where(spec) -> str:
        text = f"input {spec.position} of {len(specs)}"
        return f"{text} ({spec.label})" if req.keep_source_names else text

    skipped = LoadLog()
    sources = load_sources(specs, model.preprocess, skipped, where, progress=req.progress, desc="synth")
    unknown: set[str] = set()

    def edited(stream: Iterator[SourceImage]) -> Iterator[tuple[str, SourceImage]]:
        """(target, source): the source's own set (source_findings, else its manifest row), edited."""
        for src in stream:
            base = labels.source(src.spec.findings if src.spec is not None else None, given)
            unknown.update(d for d in labels.unknown(base) if d not in added + removed)
            yield labels.text(labels.edit(added, base=base, absent=removed)), src

    def chunks(pairs: Iterator[tuple[str, SourceImage]]):
        """(target, up to batch_size sources): consecutive sources with the same target share
        batches; nothing is held beyond one batch."""
        for t, group in itertools.groupby(pairs, key=lambda p: p[0]):
            while chunk := [s for _, s in itertools.islice(group, req.batch_size)]:
                yield t, chunk

    groups = chunks(edited(sources)) if req.relative else iter([(req.target, sources)])
    info = model_record(model)
    rows, n_files = [], 0
    for group_target, group in groups:
        for result in synthesize(model, group, target=group_target, reference=ref, n_styles=req.n_styles,
                                 seed=req.seed, batch_size=req.batch_size):
            n_files += len(write_result(result, req.out, info, fmt=req.fmt, restore=req.restore_geometry,
                                        size=req.size))
            rows.append(index_row(result))
    write_index(rows, req.out, req.keep_source_names)
    notes = list(skipped.duplicates)
    if unknown:
        notes.append(f"{', '.join(sorted(unknown))} unknown for some sources (no --source-findings and no "
                     "manifest label): taken as absent")
    return SynthSummary(req.out, len(specs), skipped.loaded, len(rows), n_files + 1, skipped, notes)
