"""Report figures: display images with a burned-in SYNTHETIC mark, difference and variability
maps, colour bars and the classifier chart, and the optional PDF.

Figures use matplotlib's object API (``Figure`` with an Agg canvas), never pyplot: importing or
using this module leaves the user's backend (a notebook's, say) as it was.

Model outputs are small (32-256 px), so display images are enlarged by an integer factor with
nearest-neighbour sampling: every model pixel stays a sharp square, nothing is invented by
interpolation. The SYNTHETIC mark is drawn in a strip below the image (part of the same PNG),
so it travels with the picture when it is saved from the report but never hides anatomy; the
lung bases, where effusions show, are at the bottom edge.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

DISPLAY_TARGET = 192  # enlarge small model outputs to at least this many pixels
DIFF_CMAP = "RdBu_r"  # red: brighter (denser) in the counterfactual, blue: darker
STD_CMAP = "magma"
MARK_FILL = (255, 176, 0)  # amber strip under synthetic images
SOURCE_FILL = (90, 90, 90)


def display_scale(size: int) -> int:
    """Integer nearest-neighbour enlargement for a ``size`` px image (1 from 192 px up)."""
    return max(1, math.ceil(DISPLAY_TARGET / max(1, size)))


def _enlarge(rgb: np.ndarray, scale: int) -> np.ndarray:
    return rgb if scale == 1 else np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def grey_rgb(image: np.ndarray, scale: int | None = None) -> np.ndarray:
    """[-1, 1] image -> enlarged uint8 RGB (air black, bone white)."""
    a = np.asarray(image, dtype=np.float64)
    g = np.round((np.clip(a, -1, 1) + 1) * 127.5).astype(np.uint8)
    return _enlarge(np.repeat(g[..., None], 3, axis=2), scale or display_scale(a.shape[-1]))


def colour_rgb(values: np.ndarray, vmin: float, vmax: float, cmap: str, scale: int | None = None) -> np.ndarray:
    """Values mapped through ``cmap`` on [vmin, vmax] -> enlarged uint8 RGB."""
    a = np.asarray(values, dtype=np.float64)
    unit = np.clip((a - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    rgb = (colormaps[cmap](unit)[..., :3] * 255).round().astype(np.uint8)
    return _enlarge(rgb, scale or display_scale(a.shape[-1]))


@lru_cache(maxsize=16)
def _font(size: int, bold: bool) -> ImageFont.FreeTypeFont:
    # DejaVu Sans ships with matplotlib, so the mark looks the same on every machine.
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"))
    return ImageFont.truetype(path, size)


def _fit_font(draw: ImageDraw.ImageDraw, text: str, width: int, size: int, bold: bool) -> ImageFont.FreeTypeFont:
    while size > 6:
        font = _font(size, bold)
        if draw.textlength(text, font=font) <= width:
            return font
        size -= 1
    return _font(6, bold)


def with_strip(rgb: np.ndarray, lines: tuple[str, ...], fill: tuple[int, int, int], ink=(0, 0, 0)) -> np.ndarray:
    """``rgb`` with a strip of centred text lines below it (first line bold), burned in."""
    w = rgb.shape[1]
    sizes = [max(13, w // 14)] + [max(10, w // 20)] * (len(lines) - 1)
    strip_h = sum(int(s * 1.3) for s in sizes) + 6
    canvas = Image.new("RGB", (w, rgb.shape[0] + strip_h), fill)
    canvas.paste(Image.fromarray(rgb), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = rgb.shape[0] + 3
    for i, (line, size) in enumerate(zip(lines, sizes)):
        font = _fit_font(draw, line, w - 6, size, bold=i == 0)
        draw.text((w / 2, y), line, fill=ink, font=font, anchor="ma")
        y += int(size * 1.3)
    return np.asarray(canvas)


def synthetic_panel(image: np.ndarray, scale: int | None = None) -> np.ndarray:
    """A counterfactual as displayed: enlarged, with the SYNTHETIC notice burned in below."""
    return with_strip(grey_rgb(image, scale), ("SYNTHETIC", "research use, not for diagnosis"), MARK_FILL)


def source_panel(image: np.ndarray, scale: int | None = None) -> np.ndarray:
    return with_strip(grey_rgb(image, scale), ("SOURCE", "real image"), SOURCE_FILL, ink=(255, 255, 255))


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def new_figure(**kwargs) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global figure registry to close."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def colorbar_png(vmin: float, vmax: float, cmap: str, label: str, end_labels: tuple[str, str] | None = None,
                 height_px: int = 192, extend: str = "neither") -> bytes:
    """A vertical colour bar ``height_px`` tall (to stand beside a map), ticks in the given
    units, optional words at the low and high ends; ``extend`` ("both", "max") draws the
    arrow ends that say values beyond the scale are shown in the end colour."""
    h = max(height_px, 120) / 100
    fig = new_figure(figsize=(1.25, h))
    top, bottom = 1 - 0.22 / h, 0.22 / h
    ax = fig.add_axes((0.12, bottom, 0.16, top - bottom))
    cb = fig.colorbar(ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=cmap), cax=ax, orientation="vertical",
                      extend=extend)
    cb.set_label(label, fontsize=8, labelpad=3)
    cb.ax.tick_params(labelsize=8)
    if end_labels:
        pad = 0.06 if extend != "neither" else 0.02
        ax.text(0.5, -pad, end_labels[0], transform=ax.transAxes, ha="center", va="top", fontsize=7.5)
        ax.text(0.5, 1 + pad, end_labels[1], transform=ax.transAxes, ha="center", va="bottom", fontsize=7.5)
    return _figure_png(fig)


BAR_COLOURS = {"source": "#555555"}


def _bar_colours(labels: list[str]) -> list[str]:
    latent = [lb for lb in labels if lb.startswith("z")]
    refs = [lb for lb in labels if lb.startswith("ref")]
    blues = colormaps["Blues"](np.linspace(0.45, 0.9, max(1, len(latent))))
    oranges = colormaps["Oranges"](np.linspace(0.45, 0.8, max(1, len(refs))))
    out = []
    for lb in labels:
        if lb == "source":
            out.append(BAR_COLOURS["source"])
        elif lb in latent:
            out.append(to_hex(blues[latent.index(lb)]))
        else:
            out.append(to_hex(oranges[refs.index(lb)]))
    return out


def _bars(ax, findings: list[str], series: list[tuple[str, list[float]]], title: str) -> None:
    n, m = len(findings), len(series)
    width = min(0.8 / max(m, 1), 0.25)
    x = np.arange(n)
    for j, ((label, probs), colour) in enumerate(zip(series, _bar_colours([s[0] for s in series]))):
        ax.bar(x + (j - (m - 1) / 2) * width, probs, width * 0.92, label=label, color=colour)
    ax.set_xticks(x, findings, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.axhline(0.5, color="#999999", lw=0.6, ls=":")
    ax.set_title(title, fontsize=8.5)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def probability_chart_png(findings: list[str], series: list[tuple[str, list[float]]], title: str) -> bytes:
    """Grouped bars: per finding, the classifier probability of the source and each
    counterfactual (``series`` = [(label, probabilities in ``findings`` order)])."""
    fig = new_figure(figsize=(max(4.6, 1.1 * len(findings) * max(1.0, len(series) * 0.3) + 2.4), 2.9))
    ax = fig.subplots()
    _bars(ax, findings, series, title)
    fig.tight_layout()
    return _figure_png(fig)


def pdf_figures(report):
    """The PDF pages as matplotlib figures: one per target domain (images with the burned-in
    mark, differences on the shared scale, variability, classifier chart), then provenance."""
    from .provenance import SYNTHETIC_NOTICE

    scale = display_scale(report.source.shape[-1])
    lim = report.diff_limit * 50
    for section in report.sections:
        cols = 1 + len(section.panels)
        fig = new_figure(figsize=(max(8.3, 2.0 * cols), 8.6))
        grid = fig.add_gridspec(3, cols, height_ratios=[1.15, 1, 1], hspace=0.35, wspace=0.08,
                                left=0.04, right=0.88, top=0.88, bottom=0.06)
        fig.suptitle(f"{SYNTHETIC_NOTICE}\n{section.title} (target domain {section.target})", fontsize=10,
                     color="#7a4500")
        ax = fig.add_subplot(grid[0, 0])
        ax.imshow(source_panel(report.source, scale))
        ax.set_title("source", fontsize=8)
        diff_axes = []
        for j, panel in enumerate(section.panels, start=1):
            ax = fig.add_subplot(grid[0, j])
            ax.imshow(synthetic_panel(panel.image, scale))
            ax.set_title(panel.label, fontsize=8)
            ax = fig.add_subplot(grid[1, j])
            im = ax.imshow(panel.diff * 50, cmap=DIFF_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(f"difference {panel.label}", fontsize=8)
            diff_axes.append(ax)
        fig.colorbar(im, ax=diff_axes, orientation="vertical", fraction=0.03, pad=0.01, extend="both",
                     label="counterfactual - source (% of display range)")
        if section.std is not None:
            ax = fig.add_subplot(grid[2, 0])
            sm = ax.imshow(section.std * 50, cmap=STD_CMAP, vmin=0, vmax=report.std_limit * 50, interpolation="nearest")
            ax.set_title("style variability (std, %)", fontsize=8)
            fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.06, pad=0.04, extend="max")
        if report.findings:
            ax = fig.add_subplot(grid[2, 2:] if cols > 3 else grid[2, 1:])
            series = [("source", report.source_probs)] + [(p.label, p.probs) for p in section.panels]
            _bars(ax, report.findings, series, f"{report.classifier_name}: probability per finding")
        for ax in fig.axes:
            if ax.images:
                ax.set_xticks([])
                ax.set_yticks([])
        yield fig
    fig = new_figure(figsize=(8.3, 11.7))
    fig.text(0.05, 0.95, "Provenance", fontsize=14, weight="bold", va="top")
    fig.text(0.05, 0.92, SYNTHETIC_NOTICE, fontsize=10, color="#7a4500", va="top")
    y = 0.88
    for key, value in report.provenance:
        fig.text(0.05, y, key, fontsize=8.5, va="top", weight="bold")
        fig.text(0.38, y, str(value), fontsize=8, va="top")
        y -= 0.025
    yield fig


def write_pdf(report, path) -> None:
    """:func:`pdf_figures` through matplotlib's PdfPages."""
    import logging

    from matplotlib.backends.backend_pdf import PdfPages

    # Core PDF fonts write text as plain strings: small files, searchable and checkable text.
    # Their AFM metrics only come in weight "medium", which font_manager reports as a warning
    # per text object ("Failed to find font weight normal for Helvetica"): noise, silenced here.
    fm_log = logging.getLogger("matplotlib.font_manager")
    level = fm_log.level
    fm_log.setLevel(logging.ERROR)
    try:
        with matplotlib.rc_context({"pdf.use14corefonts": True, "axes.unicode_minus": False}), \
                PdfPages(path, metadata={"Title": "xraystyle counterfactual report", "Creator": "xraystyle",
                                         "Producer": "xraystyle", "CreationDate": None, "ModDate": None}) as pdf:
            for fig in pdf_figures(report):
                pdf.savefig(fig)
    finally:
        fm_log.setLevel(level)
