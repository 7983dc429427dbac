"""Evaluation outputs: metrics.json, a line in metrics.jsonl, figures and a self-contained HTML
summary (images inlined as base64, every text escaped)."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

from .plots import example_grid, shift_histograms, validity_plot
from .runner import EvalResult, flat_metrics

TABLE_KEYS = (
    ("validity", "validity"), ("base_rate", "base rate"), ("real_rate", "real rate"),
    ("oracle_validity", "oracle validity"), ("oracle_agreement", "oracle agrees"),
    ("off_target_shift", "off-target |shift|"), ("fid_xray", "FID (X-ray)"),
    ("fid_xray_source_baseline", "FID source→target (real)"), ("fid_inception", "FID (Inception)"),
    ("lpips", "LPIPS"), ("diversity_l1", "diversity L1"), ("diversity_feat", "diversity feat"),
    ("identity_ssim", "SSIM outside"), ("identity_l1", "L1 outside"),
    ("exposure_spread_ratio", "exposure spread / real"), ("contrast_spread_ratio", "contrast spread / real"),
    ("exposure_shift", "exposure shift"),
)


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "–"
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    return str(v)


def metrics_table_markdown(metrics: dict, keys=TABLE_KEYS) -> str:
    """The per-pair table as Markdown (docs and terminal)."""
    rows = [r for r in metrics["pairs"] if "validity" in r]
    used = [(k, name) for k, name in keys if any(k in r for r in rows)]
    head = "| pair | mode | " + " | ".join(name for _, name in used) + " |"
    sep = "|" + "---|" * (len(used) + 2)
    lines = [head, sep]
    for r in rows:
        lines.append(f"| {r['source']} → {r['target']} | {r['mode']} | "
                     + " | ".join(_fmt(r.get(k)) for k, _ in used) + " |")
    return "\n".join(lines)


def _img(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _style_physics_html(sp: dict) -> str:
    """Style code vs the cohort's known acquisition parameters (phantom ``phys_*``), per domain."""
    e = html.escape
    per = {d: v for d, v in sp.items() if isinstance(v, dict)}
    if not per:
        return ""
    names = sorted({k.split("/", 1)[1] for v in per.values() for k in v if "/" in k})
    rows = []
    for d, v in per.items():
        if "skipped" in v:
            rows.append(f"<tr><td>{e(d)}</td><td colspan=\"{2 * len(names)}\">{e(v['skipped'])}</td></tr>")
            continue
        rows.append(f"<tr><td>{e(d)}</td>" + "".join(f"<td>{e(_fmt(v.get(f'{kind}/{n}')))}</td>"
                                                     for n in names for kind in ("style_r2", "image_r2")) + "</tr>")
    head = "".join(f"<th>{e(n)}: style</th><th>{e(n)}: image</th>" for n in names)
    return ("<h2>Physics in the style code</h2><p>Cross-validated R² of the known acquisition parameters from the "
            "style encoder's codes of real images (style) and from the images' own intensity statistics "
            "(image: what there is to leak). Near 0: the style code does not carry the acquisition.</p>"
            f"<table><tr><th>domain</th>{head}</tr>{''.join(rows)}</table>")


def write_html(metrics: dict, figures: dict[str, Path | None], examples: dict[str, Path], path: Path) -> Path:
    e = html.escape
    meta = metrics["meta"]
    rows = [r for r in metrics["pairs"] if "validity" in r]
    used = [(k, name) for k, name in TABLE_KEYS if any(k in r for r in rows)]
    table = ["<table><tr><th>pair</th><th>mode</th>" + "".join(f"<th>{e(n)}</th>" for _, n in used) + "</tr>"]
    for r in rows:
        table.append(f"<tr><td>{e(r['source'])} → {e(r['target'])}</td><td>{e(r['mode'])}</td>"
                     + "".join(f"<td>{e(_fmt(r.get(k)))}</td>" for k, _ in used) + "</tr>")
    table.append("</table>")
    avail = []
    for name in ("inception", "lpips", "oracle"):
        info = meta.get(name, {})
        status = "available" if info.get("available") else f"unavailable: {info.get('reason', '')}"
        avail.append(f"<li><b>{e(name)}</b>: {e(status)}</li>")
    oracle_rows = []
    for f, m in (meta.get("oracle", {}).get("findings") or {}).items():
        a, r, an = m["add"], m["remove"], m["anatomy"]
        oracle_rows.append(
            f"<tr><td>{e(f)}</td><td>{a['balanced_accuracy']:.3f}</td><td>{a['sensitivity']:.3f}</td>"
            f"<td>{a['specificity']:.3f}</td><td>{r['balanced_accuracy']:.3f}</td>"
            f"<td>{an['same_patient_pass']:.3f}</td><td>{an['other_patient_reject']:.3f}</td></tr>")
    oracle_html = ""
    if oracle_rows:
        oracle_html = ("<h2>Oracle accuracy (held-out phantom pairs)</h2><table><tr><th>finding</th>"
                       "<th>add bal. acc.</th><th>add sens.</th><th>add spec.</th><th>remove bal. acc.</th>"
                       "<th>same patient passes</th><th>other patient rejected</th></tr>"
                       + "".join(oracle_rows) + "</table>")
    physics_html = _style_physics_html(metrics.get("style_physics") or {})
    ex_html = "".join(f"<figure>{_img(p)}<figcaption>{e(name)}: source, then outputs</figcaption></figure>"
                      for name, p in examples.items())
    info = [("date", meta.get("date")), ("checkpoint sha256", meta.get("checkpoint_sha256")),
            ("step", meta.get("step")), ("domains", ", ".join(meta.get("domains", []))),
            ("classifier", meta["classifier"]["name"]), ("split", meta.get("split")),
            ("FID real split", meta.get("fid_split")), ("styles per source", meta.get("n_styles")),
            ("sources per domain", json.dumps(meta.get("n_sources"))),
            ("real images per domain", json.dumps(meta.get("n_real")))]
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xraystyle evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #bbb;padding:3px 6px;text-align:right}}th{{background:#eee}}
td:first-child,td:nth-child(2){{text-align:left}}img{{max-width:100%;image-rendering:pixelated}}
figure{{display:inline-block;margin:0.5em}}</style></head><body>
<h1>xraystyle evaluation</h1>
<table>{''.join(f'<tr><th>{e(k)}</th><td>{e(_fmt(v))}</td></tr>' for k, v in info)}</table>
<h2>Metrics per pair</h2>{''.join(table)}
<p>Validity: share of outputs the classifier judges to carry the asked change at its operating
points; base rate: the same judgement on the unchanged sources; real rate: on real target-domain
images. Identity metrics are computed outside the finding region. See docs/evaluation.md.</p>
<ul>{''.join(avail)}</ul>
{oracle_html}
{physics_html}
<h2>Figures</h2>{_img(figures.get('validity'))}{_img(figures.get('shifts'))}
<h2>Examples</h2>{ex_html}
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path


def write_outputs(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """metrics.json (replaced atomically), metrics.jsonl (appended), figures, examples, HTML."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = _clean(result.metrics)
    tmp = out / f".metrics.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(metrics, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(tmp, out / "metrics.json")
    meta = metrics["meta"]
    line = {"date": meta["date"], "checkpoint_sha256": meta["checkpoint_sha256"], "step": meta["step"],
            "classifier": meta["classifier"]["identity"], "split": meta["split"], "n_styles": meta["n_styles"],
            "limit": meta["limit"], "seed": meta["seed"], **_clean(flat_metrics(result.metrics))}
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, allow_nan=False) + "\n")
    figures = {"validity": validity_plot(metrics, out / "validity.png"),
               "shifts": shift_histograms(result.arrays, out / "prob_shift_hist.png")}
    examples: dict[str, Path] = {}
    ex_dir = out / "examples"
    for (s, t, mode), arr in result.arrays.items():
        if arr.examples is not None and len(arr.examples):
            ex_dir.mkdir(exist_ok=True)
            name = f"{mode}_{s}_to_{t}"
            examples[f"{s} → {t} ({mode})"] = example_grid(arr.examples, ex_dir / f"{name}.png")
    html_path = write_html(metrics, figures, examples, out / "summary.html")
    return {"metrics": out / "metrics.json", "jsonl": out / "metrics.jsonl", "html": html_path,
            **{k: v for k, v in figures.items() if v is not None}}
