"""Evaluation outputs: metrics.json, a line in metrics.jsonl, figures and a self-contained HTML
summary (a jinja2 template shared with the reports: images inlined as base64, autoescaped,
the reports' Content-Security-Policy)."""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path
from typing import Any

from ..reporting.templates import render
from .plots import example_grid, shift_histograms, validity_plot
from .runner import EvalResult, flat_metrics

TABLE_KEYS = (
    ("validity", "validity"), ("base_rate", "base rate"), ("real_rate", "real rate"),
    ("oracle_validity", "oracle validity"), ("oracle_agreement", "oracle agrees"),
    ("off_target_shift", "off-target |shift|"), ("fid_xray", "FID (X-ray)"),
    ("fid_xray_real_floor", "FID real vs real, same n"), ("fid_xray_source_baseline", "FID source→target (real)"),
    ("fid_inception", "FID (Inception)"), ("fid_inception_real_floor", "FID Inception real vs real"),
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


def _img(path: Path | None) -> tuple[str, str] | None:
    """(alt text, data: URI) of a PNG written by this evaluation, None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    return Path(path).stem, "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _style_physics(sp: dict) -> dict | None:
    """Style code vs the cohort's known acquisition parameters (phantom ``phys_*``), per domain:
    column names and rows of (domain, reason skipped or None, formatted cells)."""
    per = {d: v for d, v in sp.items() if isinstance(v, dict)}
    if not per:
        return None
    names = sorted({k.split("/", 1)[1] for v in per.values() for k in v if "/" in k})
    rows = [(d, v["skipped"], []) if "skipped" in v else
            (d, None, [_fmt(v.get(f"{kind}/{n}")) for n in names for kind in ("style_r2", "image_r2")])
            for d, v in per.items()]
    return {"names": names, "rows": rows}


def write_html(metrics: dict, figures: dict[str, Path | None], examples: dict[str, Path], path: Path) -> Path:
    """summary.html from ``templates/summary.html`` (xraystyle.reporting): autoescaped, the
    report's CSP and SYNTHETIC banner, images inlined."""
    meta = metrics["meta"]
    rows = [r for r in metrics["pairs"] if "validity" in r]
    used = [(k, name) for k, name in TABLE_KEYS if any(k in r for r in rows)]
    table = [{"source": r["source"], "target": r["target"], "mode": r["mode"],
              "cells": [_fmt(r.get(k)) for k, _ in used]} for r in rows]
    availability = []
    for name in ("inception", "lpips", "oracle"):
        info = meta.get(name, {})
        availability.append((name, "available" if info.get("available") else f"unavailable: {info.get('reason', '')}"))
    oracle = []
    for f, m in (meta.get("oracle", {}).get("findings") or {}).items():
        a, r, an = m["add"], m["remove"], m["anatomy"]
        oracle.append((f, [a["balanced_accuracy"], a["sensitivity"], a["specificity"], r["balanced_accuracy"],
                           an["same_patient_pass"], an["other_patient_reject"]]))
    info = [("date", meta.get("date")), ("checkpoint sha256", meta.get("checkpoint_sha256")),
            ("step", meta.get("step")), ("domains", ", ".join(meta.get("domains", []))),
            ("classifier", meta["classifier"]["name"]), ("split", meta.get("split")),
            ("FID real split", meta.get("fid_split")), ("real rate split", meta.get("real_rate_split")),
            ("styles per source", meta.get("n_styles")),
            ("sources per domain", json.dumps(meta.get("n_sources"))),
            ("real images per domain", json.dumps(meta.get("n_real")))]
    doc = render("summary.html", info=[(k, _fmt(v)) for k, v in info], columns=[n for _, n in used], rows=table,
                 availability=availability, oracle=oracle,
                 physics=_style_physics(metrics.get("style_physics") or {}),
                 figures={"validity": _img(figures.get("validity")), "shifts": _img(figures.get("shifts"))},
                 examples=[(name, _img(p)) for name, p in examples.items()])
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
