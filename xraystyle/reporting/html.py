"""Self-contained HTML: one file per report, images as base64 PNG, inline CSS, no scripts.

A Content-Security-Policy meta tag forbids every fetch except inline data, so a report opens
offline and cannot call out even if someone edits it. Every text that did not come from this
module (domain names, DICOM-derived technical fields, classifier names) goes through
``html.escape``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import figures
from .counterfactual import CounterfactualReport, Section
from .provenance import SYNTHETIC_NOTICE

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --amber: #ffb000; --bg: #fafafa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: var(--bg); }
.banner { background: var(--amber); color: #000; font-weight: bold; padding: 10px 24px; font-size: 15px; }
.banner span { font-weight: normal; }
main { padding: 4px 16px 16px; }
h1 { font-size: 22px; margin: 14px 0 2px; }
h2 { font-size: 18px; margin: 0 0 2px; }
h3 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.lede { color: var(--muted); margin: 0 0 12px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; margin: 14px 0; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; }
figure img { display: block; border: 1px solid var(--line); image-rendering: pixelated; }
img[data-panel$="colorbar"], img[data-panel="classifier-chart"] { border: none; image-rendering: auto; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 3px; max-width: 200px; }
figcaption b { color: var(--ink); }
.grid { display: grid; gap: 6px 12px; align-items: start; overflow-x: auto; padding-bottom: 4px; }
.grid .span { grid-column: 1 / -1; margin-bottom: 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 0; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; word-break: break-all; }
.up { color: #b3261e; } .down { color: #1a56b0; }
.note { background: #fff4d6; border-left: 4px solid var(--amber); padding: 6px 10px; margin: 8px 0; }
.summary { display: flex; gap: 28px; flex-wrap: wrap; margin: 6px 0 4px; }
.summary div { font-size: 13px; } .summary b { font-size: 18px; display: block; }
footer { color: var(--muted); font-size: 12px; margin-top: 18px; }
"""


def e(value: Any) -> str:
    """HTML-escaped text (quotes too: values may land in attributes)."""
    return html.escape(str(value), quote=True)


def img(data: bytes, alt: str, panel: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{e(alt)}" data-panel="{e(panel)}">'


def figure(data: bytes, alt: str, panel: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{img(data, alt, panel)}{cap}</figure>"


def _pct(value: float, signed: bool = False) -> str:
    return f"{value:+.1f} %" if signed else f"{value:.1f} %"


def _prob(p: float) -> str:
    return f"{p:.3f}"


def _shift_class(d: float) -> str:
    return "up" if d > 0.005 else "down" if d < -0.005 else ""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<div class=\"banner\">{e(SYNTHETIC_NOTICE)} <span>&mdash; images marked SYNTHETIC were generated "
        "by a model; they are not observations of a patient.</span></div>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _technical_table(report: CounterfactualReport) -> str:
    names = {"source_format": "format", "modality": "modality", "view_position": "view position",
             "body_part": "body part", "rows": "rows", "columns": "columns",
             "pixel_spacing": "pixel spacing (mm)", "bits_stored": "bits stored",
             "photometric_interpretation": "photometric interpretation"}
    rows = []
    for key, label in names.items():
        if key in report.technical:
            value = report.technical[key]
            if isinstance(value, (list, tuple)):
                value = " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            rows.append(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>")
    rows.append(f"<tr><th>domain</th><td>{e(report.source_domain or 'unknown (all targets shown)')}</td></tr>")
    return f"<table data-table=\"technical\">{''.join(rows)}</table>"


def _source_section(report: CounterfactualReport, scale: int) -> str:
    parts = ["<section data-section=\"source\"><h2>Source</h2>",
             "<p class=\"lede\">As the model sees it: robust intensity window, aspect-preserving resize "
             f"and padding to {report.source.shape[-1]} px (shown enlarged {scale}x, nearest neighbour).</p>",
             "<div class=\"row\">",
             figure(figures.png(figures.source_panel(report.source, scale)), "source image", "source",
                    f"<b>source</b> &middot; pixels sha256 {e(report.short_hash)}"),
             f"<div>{_technical_table(report)}</div></div>"]
    if report.burned_in_annotation:
        parts.append("<p class=\"note\">The source file declares burned-in annotation: its pixels may "
                     "contain text, possibly identifying. Review the images before sharing this report.</p>")
    for note in report.notes:
        parts.append(f"<p class=\"note\">{e(note)}</p>")
    parts.append("</section>")
    return "".join(parts)


def _how_to_read(report: CounterfactualReport) -> str:
    return ("<section data-section=\"how-to-read\"><h2>How to read this report</h2><p class=\"lede\">"
            "Each target section shows the source and its counterfactuals, then the signed difference "
            "<i>counterfactual &minus; source</i> in % of the display range (black to white = 100 %): red "
            "areas became brighter (denser), blue areas darker. All difference maps of this report share one "
            f"symmetric scale, &plusmn;{report.diff_limit * 50:g} %, set to cover 99.5 % of the differences; "
            "the few larger ones show in the end colours (the arrow ends of the colour bar). The style "
            "variability map is the pixelwise standard deviation over the latent styles: bright where the "
            "styles disagree.</p></section>")


def _prob_table(report: CounterfactualReport, section: Section) -> str:
    head = "".join(f"<th class=\"num\">{e(p.label)}</th>" for p in section.panels)
    rows = []
    for j, finding in enumerate(report.findings):
        src = report.source_probs[j]
        cells = "".join(f"<td class=\"num\">{_prob(p.probs[j])}</td>" for p in section.panels)
        shift = sum(p.probs[j] for p in section.panels) / len(section.panels) - src
        rows.append(f"<tr><th>{e(finding)}</th><td class=\"num\">{_prob(src)}</td>{cells}"
                    f"<td class=\"num {_shift_class(shift)}\">{shift:+.3f}</td></tr>")
    return (f"<table data-table=\"probabilities\" data-target=\"{e(section.target)}\"><tr><th>finding</th>"
            f"<th class=\"num\">source</th>{head}<th class=\"num\">mean shift</th></tr>{''.join(rows)}</table>")


def _target_section(report: CounterfactualReport, section: Section, scale: int) -> str:
    lim, side = report.diff_limit, report.source.shape[-1] * scale
    n_lat = sum(p.mode == "latent" for p in section.panels)
    n_ref = len(section.panels) - n_lat
    what = f"{n_lat} latent style{'s' if n_lat != 1 else ''}" + (f", {n_ref} reference{'s' if n_ref != 1 else ''}" if n_ref else "")
    parts = [f"<section data-section=\"target\" data-target=\"{e(section.target)}\">",
             f"<h2>{e(section.title)}</h2>",
             f"<p class=\"lede\">target domain <b>{e(section.target)}</b> &middot; {e(what)}</p>",
             "<div class=\"summary\">",
             f"<div><b>{_pct(section.mean_abs_change)}</b>mean |change| inside the image</div>"]
    if section.key_shift is not None:
        parts.append(f"<div><b class=\"{_shift_class(section.key_shift)}\">{section.key_shift:+.3f}</b>"
                     f"mean change of p({e(section.key_finding)})</div>")
    # One grid: each difference map sits under its counterfactual, the colour bar at the row's end.
    columns = len(section.panels) + 2
    parts.append(f"</div><div class=\"grid\" style=\"grid-template-columns: repeat({columns}, max-content)\">"
                 "<h3 class=\"span\">Counterfactuals</h3>")
    parts.append(figure(figures.png(figures.source_panel(report.source, scale)), "source image", "source",
                        "<b>source</b>"))
    for p in section.panels:
        how = (f"latent style {e(p.label[1:])}, seed {report.seed}" if p.mode == "latent"
               else f"style of reference {e(p.label[3:])} (sha256 {e(p.reference_sha256[:8])})")
        parts.append(figure(figures.png(figures.synthetic_panel(p.image, scale)), f"counterfactual {p.label}",
                            f"counterfactual-{p.mode}", f"<b>{e(p.label)}</b> &middot; {how}"))
    parts.append("<div></div><h3 class=\"span\">Difference: counterfactual &minus; source (shared scale)</h3><div></div>")
    for p in section.panels:
        change = float(abs(p.diff[report.valid]).mean() * 50)
        parts.append(figure(figures.png(figures.colour_rgb(p.diff, -lim, lim, figures.DIFF_CMAP, scale)),
                            f"difference {p.label}", "difference",
                            f"<b>{e(p.label)}</b> &middot; mean |change| {_pct(change)}, "
                            f"max {_pct(float(abs(p.diff).max() * 50))}"))
    parts.append(figure(figures.colorbar_png(-lim * 50, lim * 50, figures.DIFF_CMAP, "% of display range",
                                             ("darker", "brighter"), side, extend="both"), "difference colour scale",
                        "diff-colorbar"))
    parts.append("</div>")
    extras = []
    if section.std is not None:
        extras.append(figure(figures.png(figures.colour_rgb(section.std, 0, report.std_limit, figures.STD_CMAP, scale)),
                             "style variability", "variability",
                             f"<b>style variability</b> &middot; pixelwise std over the {n_lat} latent styles "
                             f"(mean {_pct(float(section.std[report.valid].mean() * 50))})"))
        extras.append(figure(figures.colorbar_png(0, report.std_limit * 50, figures.STD_CMAP, "std, % of display range",
                                                  None, side, extend="max"), "variability colour scale",
                                    "std-colorbar"))
    for p in (p for p in section.panels if p.reference_image is not None):
        extras.append(figure(figures.png(figures.grey_rgb(p.reference_image, scale)), f"reference {p.label}",
                             "reference", f"<b>reference {e(p.label[3:])}</b> &middot; real image of "
                             f"{e(section.target)} whose style was used"))
    if report.findings:
        series = [("source", report.source_probs)] + [(p.label, p.probs) for p in section.panels]
        chart = figures.probability_chart_png(report.findings, series,
                                              f"{report.classifier_name}: probability per finding")
        extras.append(figure(chart, f"classifier probabilities towards {section.target}", "classifier-chart"))
    if extras:
        parts.append("<h3>Variability, references and classifier</h3><div class=\"row\">" + "".join(extras) + "</div>")
    if report.findings:
        parts.append(_prob_table(report, section))
    parts.append("</section>")
    return "".join(parts)


def _provenance_section(report: CounterfactualReport) -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td class=\"mono\">{e(v)}</td></tr>" for k, v in report.provenance)
    return ("<section data-section=\"provenance\"><h2>Provenance</h2>"
            "<p class=\"lede\">What made these images. The source is identified only by a hash of its "
            f"pixels; no file name or DICOM identifier is kept.</p><table data-table=\"provenance\">{rows}</table></section>")


def render_report(report: CounterfactualReport) -> str:
    """The full HTML page of one report."""
    scale = figures.display_scale(report.source.shape[-1])
    targets = ", ".join(s.target for s in report.sections)
    body = [f"<h1>Counterfactual report &middot; source {e(report.short_hash)}</h1>",
            f"<p class=\"lede\">Counterfactuals towards {e(targets)}: what the model changes when a finding "
            "is added or removed, and how much a classifier's belief moves.</p>",
            _source_section(report, scale), _how_to_read(report)]
    body += [_target_section(report, s, scale) for s in report.sections]
    body.append(_provenance_section(report))
    body.append(f"<footer>{e(SYNTHETIC_NOTICE)}. Generated by xraystyle.</footer>")
    return _page(f"xraystyle counterfactual report {report.short_hash}", "\n".join(body))


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
    verb = "add / remove" if per_finding else "to"
    head = "".join(f"<th class=\"num\">{verb} {e(t)}<br>mean |change|</th>" for t in targets)
    if has_classifier:
        head += "".join(f"<th class=\"num\">{verb} {e(t)}<br>&Delta;p</th>" for t in targets)
    rows = []
    for entry in entries:
        cells = "".join(f"<td class=\"num\">{'' if entry.get('change:' + t) is None else _pct(entry['change:' + t])}</td>"
                        for t in targets)
        if has_classifier:
            for t in targets:
                v = entry.get("shift:" + t)
                cells += f"<td class=\"num {_shift_class(v or 0)}\">{'' if v is None else f'{v:+.3f}'}</td>"
        rows.append(f"<tr><td><a href=\"{e(entry['href'])}\">{e(entry['hash'])}</a></td>"
                    f"<td>{e(entry.get('domain') or 'unknown')}</td>{cells}</tr>")
    note = (f"<p class=\"note\">{failures} image(s) could not be read and have no report.</p>" if failures else "")
    body = ("<h1>Counterfactual reports</h1><p class=\"lede\">One report per image, named by a hash of its "
            "pixels. Mean |change|: average absolute grey-level change inside the image, % of the display "
            "range. &Delta;p: mean change of the classifier's probability for the finding added (or, towards "
            f"normal, removed).</p>{note}<section><table data-table=\"index\"><tr><th>report</th><th>source domain</th>"
            f"{head}</tr>{''.join(rows)}</table></section>")
    return _page("xraystyle counterfactual reports", body)
