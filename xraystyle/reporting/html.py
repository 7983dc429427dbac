"""Self-contained HTML: one file per report, images as base64 PNG, inline CSS, no scripts.

The pages are jinja2 templates (``templates/report.html``, ``templates/index.html``, both
extending ``templates/base.html``) rendered with autoescaping on: every text that did not come
from the templates (domain names, DICOM-derived technical fields, classifier names) is escaped
by jinja2. A Content-Security-Policy meta tag (:data:`CSP`) forbids every fetch except inline
data, so a report opens offline and cannot call out even if someone edits it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import figures
from .counterfactual import CounterfactualReport, Section
from .templates import render

# The policy written by templates/base.html (kept here for tests and readers).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

TECHNICAL_LABELS = {"source_format": "format", "modality": "modality", "view_position": "view position",
                    "body_part": "body part", "rows": "rows", "columns": "columns",
                    "pixel_spacing": "pixel spacing (mm)", "bits_stored": "bits stored",
                    "photometric_interpretation": "photometric interpretation"}


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI (the only image source the CSP allows)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _technical_rows(report: CounterfactualReport) -> list[tuple[str, Any]]:
    rows = []
    for key, label in TECHNICAL_LABELS.items():
        if key in report.technical:
            value = report.technical[key]
            if isinstance(value, (list, tuple)):
                value = " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            rows.append((label, value))
    return rows


def _section_view(report: CounterfactualReport, section: Section, scale: int) -> dict[str, Any]:
    """Everything the template shows for one target section: images as data: URIs, numbers."""
    panels = []
    for p in section.panels:
        panels.append({
            "panel": p,
            "image": data_uri(figures.png(figures.synthetic_panel(p.image, scale))),
            "diff": data_uri(figures.png(figures.colour_rgb(p.diff, -report.diff_limit, report.diff_limit,
                                                            figures.DIFF_CMAP, scale))),
            "change": float(abs(p.diff[report.valid]).mean() * 50),
            "max_change": float(abs(p.diff).max() * 50),
            "reference": (None if p.reference_image is None
                          else data_uri(figures.png(figures.grey_rgb(p.reference_image, scale)))),
        })
    n_lat = sum(p.mode == "latent" for p in section.panels)
    n_ref = len(section.panels) - n_lat
    what = f"{n_lat} latent style{'s' if n_lat != 1 else ''}" + (
        f", {n_ref} reference{'s' if n_ref != 1 else ''}" if n_ref else "")
    view = {"section": section, "panels": panels, "what": what, "n_latent": n_lat,
            "references": [p for p in panels if p["reference"] is not None],
            "std": None, "std_mean": None, "chart": None, "prob_rows": []}
    if section.std is not None:
        view["std"] = data_uri(figures.png(figures.colour_rgb(section.std, 0, report.std_limit, figures.STD_CMAP,
                                                              scale)))
        view["std_mean"] = float(section.std[report.valid].mean() * 50)
    if report.findings:
        series = [("source", report.source_probs)] + [(p.label, p.probs) for p in section.panels]
        view["chart"] = data_uri(figures.probability_chart_png(report.findings, series,
                                                               f"{report.classifier_name}: probability per finding"))
        for j, finding in enumerate(report.findings):
            values = [p.probs[j] for p in section.panels]
            view["prob_rows"].append({"finding": finding, "source": report.source_probs[j], "probs": values,
                                      "shift": sum(values) / len(values) - report.source_probs[j]})
    return view


def render_report(report: CounterfactualReport) -> str:
    """The full HTML page of one report."""
    scale = figures.display_scale(report.source.shape[-1])
    side = report.source.shape[-1] * scale
    lim = report.diff_limit
    img = {"source": data_uri(figures.png(figures.source_panel(report.source, scale))),
           "diff_colorbar": data_uri(figures.colorbar_png(-lim * 50, lim * 50, figures.DIFF_CMAP, "% of display range",
                                                          ("darker", "brighter"), side, extend="both"))}
    if any(s.std is not None for s in report.sections):
        img["std_colorbar"] = data_uri(figures.colorbar_png(0, report.std_limit * 50, figures.STD_CMAP,
                                                            "std, % of display range", None, side, extend="max"))
    return render("report.html", r=report, img=img, scale=scale, technical=_technical_rows(report),
                  targets=", ".join(s.target for s in report.sections), diff_limit_pct=f"{lim * 50:g}",
                  views=[_section_view(report, s, scale) for s in report.sections])


def write_report(report: CounterfactualReport, out_dir: str | os.PathLike, name: str = "report",
                 pdf: bool = False) -> list[Path]:
    """Write ``<out_dir>/<name>.html`` (and ``.pdf``); returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.html"
    path.write_text(render_report(report), encoding="utf-8")
    written = [path]
    if pdf:
        pdf_path = out / f"{name}.pdf"
        figures.write_pdf(report, pdf_path)
        written.append(pdf_path)
    return written


def render_index(entries: Sequence[dict[str, Any]], targets: Sequence[str], has_classifier: bool,
                 failures: int = 0, per_finding: bool = False) -> str:
    """Cohort index: one row per report (link, source domain, per-target summary numbers).

    ``entries``: dicts with ``href``, ``hash``, ``domain`` and per target ``change:<t>`` and
    ``shift:<t>`` (None where not applicable). ``per_finding``: the columns are findings each
    report adds or removes (multi-label models), not target domains.
    """
    rows = [{"href": entry["href"], "hash": entry["hash"], "domain": entry.get("domain") or "unknown",
             "changes": [entry.get("change:" + t) for t in targets],
             "shifts": [entry.get("shift:" + t) for t in targets]} for entry in entries]
    return render("index.html", rows=rows, targets=list(targets), has_classifier=has_classifier,
                  failures=failures, verb="add / remove" if per_finding else "to")
