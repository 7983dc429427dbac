"""Report figures: display images with a burned-in SYNTHETIC mark, difference and variability
maps, colour bars and the classifier chart (matplotlib, Agg backend), and the optional PDF.

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

matplotlib.use("Agg")  # no display: figures are rendered to PNG bytes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

DISPLAY_TARGET = 256  # enlarge small model outputs to about this many pixels
DIFF_CMAP = "RdBu_r"  # red: brighter (denser) in the counterfactual, blue: darker
STD_CMAP = "magma"
MARK_FILL = (255, 176, 0)  # amber strip under synthetic images
SOURCE_FILL = (90, 90, 90)


def display_scale(size: int) -> int:
    """Integer nearest-neighbour enlargement for a ``size`` px image (1 for 256 px and up)."""
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
    sizes = [max(9, w // 15)] + [max(8, w // 22)] * (len(lines) - 1)
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


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def colorbar_png(vmin: float, vmax: float, cmap: str, label: str, end_labels: tuple[str, str] | None = None,
                 width_in: float = 4.2) -> bytes:
    """A horizontal colour bar, ticks in the given units, optional words at both ends."""
    fig = plt.figure(figsize=(width_in, 0.95))
    ax = fig.add_axes((0.08, 0.55, 0.84, 0.22))
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)
    cb = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), cax=ax, orientation="horizontal")
    cb.set_label(label, fontsize=9, labelpad=2)
    cb.ax.tick_params(labelsize=8)
    if end_labels:
        ax.text(0, 1.25, end_labels[0], transform=ax.transAxes, ha="left", va="bottom", fontsize=8)
        ax.text(1, 1.25, end_labels[1], transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
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
            out.append(matplotlib.colors.to_hex(blues[latent.index(lb)]))
        else:
            out.append(matplotlib.colors.to_hex(oranges[refs.index(lb)]))
    return out


def probability_chart_png(findings: list[str], series: list[tuple[str, list[float]]], title: str) -> bytes:
    """Grouped bars: per finding, the classifier probability of the source and each
    counterfactual (``series`` = [(label, probabilities in ``findings`` order)])."""
    n, m = len(findings), len(series)
    width = min(0.8 / max(m, 1), 0.25)
    fig, ax = plt.subplots(figsize=(max(4.6, 1.1 * n * max(1.0, m * 0.3) + 2.4), 2.9))
    colours = _bar_colours([s[0] for s in series])
    x = np.arange(n)
    for j, ((label, probs), colour) in enumerate(zip(series, colours)):
        ax.bar(x + (j - (m - 1) / 2) * width, probs, width * 0.92, label=label, color=colour)
    ax.set_xticks(x, findings, fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.axhline(0.5, color="#999999", lw=0.6, ls=":")
    ax.set_title(title, fontsize=9.5)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _figure_png(fig)


def write_pdf(report, path) -> None:
    """One page per target domain (images, differences, variability, chart) and a provenance
    page, via matplotlib's PdfPages. Every synthetic image carries the burned-in mark."""
    from matplotlib.backends.backend_pdf import PdfPages

    from .provenance import SYNTHETIC_NOTICE

    scale = display_scale(report.source.shape[-1])
    with PdfPages(path, metadata={"Title": "xraystyle counterfactual report", "Creator": "xraystyle",
                                  "Producer": "xraystyle", "CreationDate": None, "ModDate": None}) as pdf:
        for section in report.sections:
            cols = 1 + len(section.panels)
            fig, axes = plt.subplots(3, cols, figsize=(2.2 * cols, 7.6), squeeze=False)
            fig.suptitle(f"{SYNTHETIC_NOTICE}\n{section.title}", fontsize=10, color="#a05a00")
            axes[0, 0].imshow(source_panel(report.source, scale))
            axes[0, 0].set_title("source", fontsize=8)
            for j, panel in enumerate(section.panels, start=1):
                axes[0, j].imshow(synthetic_panel(panel.image, scale))
                axes[0, j].set_title(panel.label, fontsize=8)
                im = axes[1, j].imshow(panel.diff * 50, cmap=DIFF_CMAP, vmin=-report.diff_limit * 50,
                                       vmax=report.diff_limit * 50, interpolation="nearest")
                axes[1, j].set_title(f"difference {panel.label}", fontsize=8)
            fig.colorbar(im, ax=axes[1, :].tolist(), orientation="horizontal", fraction=0.05,
                         label="counterfactual - source, % of display range")
            if section.std is not None:
                sm = axes[2, 0].imshow(section.std * 50, cmap=STD_CMAP, vmin=0, vmax=report.std_limit * 50,
                                       interpolation="nearest")
                axes[2, 0].set_title("style variability (std)", fontsize=8)
                fig.colorbar(sm, ax=axes[2, 0], orientation="horizontal", fraction=0.08)
            for ax in axes.ravel():
                ax.set_xticks([])
                ax.set_yticks([])
                if not ax.images:
                    ax.axis("off")
            pdf.savefig(fig)
            plt.close(fig)
        fig = plt.figure(figsize=(8.3, 11.7))
        fig.text(0.05, 0.95, "Provenance", fontsize=14, weight="bold", va="top")
        fig.text(0.05, 0.92, SYNTHETIC_NOTICE, fontsize=10, color="#a05a00", va="top")
        y = 0.88
        for key, value in report.provenance:
            fig.text(0.05, y, key, fontsize=8.5, va="top", weight="bold")
            fig.text(0.35, y, str(value), fontsize=8.5, va="top", family="monospace", wrap=True)
            y -= 0.025
        pdf.savefig(fig)
        plt.close(fig)
