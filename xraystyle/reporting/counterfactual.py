"""The content of a counterfactual report: for one source image, the counterfactuals towards
every other domain, their signed differences, the style variability and classifier beliefs.

Numbers are in "% of the display range": the model's [-1, 1] grey scale spans 100 %, so a
change of 10 % is a tenth of the way from black to white.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..cohorts.vocabulary import NORMAL
from ..errors import XrayStyleError
from ..synthesis import ReferenceImage, SourceImage, synthesize
from .provenance import generated_on, model_record, technical_metadata


@dataclass
class Panel:
    """One counterfactual. ``label``: "z0", "z1", ... (latent styles) or "ref1", ... (references)."""

    label: str
    mode: str
    image: np.ndarray  # (S, S) in [-1, 1]
    diff: np.ndarray  # image - source
    probs: list[float] | None = None  # classifier probabilities, report.findings order
    reference_sha256: str | None = None
    reference_image: np.ndarray | None = None


@dataclass
class Section:
    """All counterfactuals towards one target domain."""

    target: str
    title: str  # what the counterfactual does, e.g. "add effusion"
    panels: list[Panel]
    std: np.ndarray | None  # pixelwise std over the latent styles (None with fewer than 2)
    mean_abs_change: float  # % of display range, valid pixels, averaged over panels
    key_finding: str | None = None  # the finding this section adds or removes, if charted
    key_shift: float | None = None  # mean probability change of key_finding over panels
    edited: str | None = None  # multi-label models: the one finding this section adds or removes

    @property
    def column(self) -> str:
        """Cohort index column: the edited finding (multi-label) or the target domain."""
        return self.edited or self.target


@dataclass
class CounterfactualReport:
    source: np.ndarray  # (S, S) in [-1, 1]
    valid: np.ndarray  # (S, S) bool
    source_sha256: str
    source_domain: str | None
    technical: dict[str, Any]
    burned_in_annotation: bool
    sections: list[Section]
    diff_limit: float  # shared symmetric scale of every difference map ([-1, 1] units, robust)
    std_limit: float
    n_styles: int
    seed: int
    provenance: list[tuple[str, Any]]
    findings: list[str] | None = None
    source_probs: list[float] | None = None
    classifier_name: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def short_hash(self) -> str:
        return self.source_sha256[:8]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def select_findings(available: Sequence[str], requested: Sequence[str] | None, domains: Sequence[str]) -> list[str]:
    """Classifier findings to chart: ``requested`` (each must be predicted), else the model's
    findings the classifier predicts (matched ignoring case and punctuation), else all."""
    by_norm = {_norm(f): f for f in available}
    if requested:
        missing = [r for r in requested if _norm(r) not in by_norm]
        if missing:
            raise XrayStyleError(f"the classifier does not predict {', '.join(missing)} "
                                 f"(it predicts: {', '.join(available)})")
        return [by_norm[_norm(r)] for r in requested]
    matched = [by_norm[_norm(d)] for d in domains if d != NORMAL and _norm(d) in by_norm]
    return matched or list(available)


def _predict(classifier, images: list[np.ndarray]) -> np.ndarray:
    x = torch.as_tensor(np.stack(images), dtype=torch.float32)[:, None]
    with torch.no_grad():
        p = classifier.predict_proba(x)
    return np.asarray(torch.as_tensor(p).detach().float().cpu(), dtype=np.float64)


def build_report(model, source: SourceImage, *, source_domain: str | None = None, n_styles: int = 3,
                 seed: int = 0, references: Sequence[ReferenceImage] = (), classifier=None,
                 classifier_name: str | None = None, findings: Sequence[str] | None = None,
                 batch_size: int = 8, source_set: torch.Tensor | None = None) -> CounterfactualReport:
    """Counterfactuals of ``source`` towards every domain but its own (all when unknown).

    Multi-label models get one section per finding instead: *remove f* when the source has it,
    *add f* otherwise, each applied to the source's own set (``source_set`` [1, K] with NaN =
    unknown, e.g. a manifest row, or ``source_domain`` written ``effusion+nodule``)."""
    if n_styles < 1:
        raise XrayStyleError(f"--n-styles must be at least 1, got {n_styles}")
    notes: list[str] = []
    targets, source_domain = model.labels.counterfactuals(source_domain, source_set, notes)
    target_names = {t.target for t in targets}
    for ref in references:
        if ref.domain == source_domain:
            notes.append(f"a reference of the source's own domain ({ref.domain}) was not used")
        elif ref.domain not in target_names:
            notes.append(f"a reference of {ref.domain} was not used: no section of this report targets it")
    src = source.image[0].numpy().astype(np.float64)
    valid = source.valid_mask[0].numpy().astype(bool)
    if not valid.any():
        valid = np.ones_like(valid)

    sections = []
    for cf in targets:
        target, title, edited = cf.target, cf.title, cf.edited
        panels = [Panel(f"z{r.style_index}", "latent", r.image[0].numpy().astype(np.float64), None)
                  for r in synthesize(model, [source], target=target, n_styles=n_styles, seed=seed,
                                      batch_size=batch_size)]
        ref_number = 0
        for ref in references:
            if ref.domain != target:
                continue
            ref_number += 1
            for r in synthesize(model, [source], reference=ref):
                panels.append(Panel(f"ref{ref_number}", "reference", r.image[0].numpy().astype(np.float64), None,
                                    reference_sha256=ref.sha256,
                                    reference_image=ref.image[0].numpy().astype(np.float64)))
        for p in panels:
            p.diff = p.image - src
        latent = np.stack([p.image for p in panels if p.mode == "latent"])
        std = latent.std(axis=0) if len(latent) >= 2 else None
        change = float(np.mean([np.abs(p.diff[valid]).mean() for p in panels]) * 50)
        sections.append(Section(target, title, panels, std, change, edited=edited))

    diffs = [np.abs(p.diff).ravel() for s in sections for p in s.panels]
    diff_limit = _robust_limit(diffs)
    std_limit = _robust_limit([s.std.ravel() for s in sections if s.std is not None])

    report = CounterfactualReport(
        source=src, valid=valid, source_sha256=source.sha256, source_domain=source_domain,
        technical=technical_metadata(source.meta),
        burned_in_annotation=str(source.meta.get("burned_in_annotation") or "").upper() == "YES",
        sections=sections, diff_limit=diff_limit, std_limit=std_limit, n_styles=n_styles, seed=seed,
        provenance=[], notes=notes)
    if classifier is not None:
        _add_classifier(report, classifier, classifier_name, findings, model.domains)
    report.provenance = _provenance(model, report, references, getattr(classifier, "identity", None))
    return report


def _add_classifier(report: CounterfactualReport, classifier, name, requested, domains) -> None:
    available = list(classifier.findings)
    chosen = select_findings(available, requested, domains)
    columns = [available.index(f) for f in chosen]
    images = [report.source] + [p.image for s in report.sections for p in s.panels]
    probs = _predict(classifier, images)
    if probs.ndim != 2 or probs.shape != (len(images), len(available)):
        raise XrayStyleError(f"classifier returned probabilities of shape {probs.shape}, expected "
                             f"({len(images)}, {len(available)})")
    probs = probs[:, columns]
    report.findings = chosen
    report.classifier_name = name or getattr(classifier, "name", None) or type(classifier).__name__
    report.source_probs = probs[0].tolist()
    row = 1
    for section in report.sections:
        for panel in section.panels:
            panel.probs = probs[row].tolist()
            row += 1
        key = section.edited or (section.target if section.target != NORMAL else report.source_domain)
        match = [f for f in chosen if key is not None and _norm(f) == _norm(key)]
        if match:
            j = chosen.index(match[0])
            section.key_finding = match[0]
            section.key_shift = float(np.mean([p.probs[j] for p in section.panels]) - report.source_probs[j])


# Colour scales cover this percentile of the values: a handful of extreme pixels (an edge, the
# padding border) would otherwise stretch the scale and wash every map out to white.
SCALE_PERCENTILE = 99.5


def _robust_limit(values: list[np.ndarray]) -> float:
    if not values:
        return _nice(0.0)
    return _nice(float(np.percentile(np.concatenate(values), SCALE_PERCENTILE)))


def _nice(value: float) -> float:
    """Round a colour-scale limit up to 1, 2, 2.5 or 5 times a power of ten (at least 0.01)."""
    value = max(float(value), 0.01)
    power = 10 ** np.floor(np.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return float(step * power)
    return float(10 * power)


def _provenance(model, report: CounterfactualReport, references, identity: str | None) -> list[tuple[str, Any]]:
    info = model_record(model)
    rows = [
        ("model checkpoint sha256", info["checkpoint_sha256"]),
        ("training step", info["step"]),
        ("model domains", ", ".join(info["domains"])),
        ("model image size", f"{info['img_size']} px"),
        ("config sha256", info["config_sha256"]),
        ("seed", report.seed),
        ("latent styles per target", report.n_styles),
        ("source content sha256 (pixels)", report.source_sha256),
        ("source domain", report.source_domain or "unknown"),
    ]
    for i, ref in enumerate(references, start=1):
        rows.append((f"reference {i} ({ref.domain}) sha256 (pixels)", ref.sha256))
    if report.classifier_name:
        rows.append(("classifier", report.classifier_name))
        if identity:
            rows.append(("classifier weights id", identity))
    rows += [("xraystyle version", info["xraystyle_version"]), ("generated on (UTC date)", generated_on())]
    return rows
