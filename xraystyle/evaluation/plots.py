"""Evaluation figures: validity per pair, probability-shift histograms, example grids.

matplotlib's object API on an Agg canvas (``reporting.figures.new_figure``), never pyplot, so
the caller's backend is left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def new_figure(**kwargs):
    # matplotlib is imported on first use only: `import xraystyle.evaluation` stays light.
    from ..reporting.figures import new_figure

    return new_figure(**kwargs)


def validity_plot(metrics: dict, path: Path) -> Path | None:
    """Grouped bars per (pair, mode): classifier validity, oracle validity where known, with
    the base rate (doing nothing) and the real-image rate (the ceiling) as markers."""
    rows = [r for r in metrics["pairs"] if "validity" in r]
    if not rows:
        return None
    labels = [f"{r['source']}→{r['target']}\n{r['mode']}" for r in rows]
    x = np.arange(len(rows))
    has_oracle = any("oracle_validity" in r for r in rows)
    w = 0.38 if has_oracle else 0.6
    fig = new_figure(figsize=(max(4.0, 1.3 * len(rows) + 1.5), 3.4), dpi=110)
    ax = fig.subplots()
    ax.bar(x - (w / 2 if has_oracle else 0), [r["validity"] for r in rows], w, label="classifier validity",
           color="#3b6ea8")
    if has_oracle:
        ax.bar(x + w / 2, [r.get("oracle_validity", np.nan) for r in rows], w, label="oracle validity",
               color="#d08a2e")
    ax.scatter(x, [r["base_rate"] for r in rows], marker="_", s=400, color="black", zorder=3,
               label="base rate (sources)")
    ax.scatter(x, [r.get("real_rate", np.nan) for r in rows], marker="*", s=60, color="#2e8b57", zorder=3,
               label="real target images")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of outputs")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Counterfactual validity", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def shift_histograms(arrays: dict, path: Path) -> Path | None:
    """One panel per (pair, mode): histogram of p(output) - p(source) for the asked finding(s)."""
    items = [(k, v) for k, v in arrays.items() if v.shift_added is not None or v.shift_removed is not None]
    if not items:
        return None
    n = len(items)
    cols = min(n, 4)
    nrows = int(np.ceil(n / cols))
    fig = new_figure(figsize=(3.0 * cols, 2.4 * nrows), dpi=110)
    axes = fig.subplots(nrows, cols, squeeze=False)
    bins = np.linspace(-1, 1, 41)
    for ax, ((s, t, mode), arr) in zip(axes.ravel(), items):
        if arr.shift_added is not None:
            ax.hist(arr.shift_added, bins=bins, alpha=0.7, color="#3b6ea8", label=f"{t} (added)")
        if arr.shift_removed is not None:
            ax.hist(arr.shift_removed, bins=bins, alpha=0.7, color="#b0413e", label=f"{s} (removed)")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{s}→{t} ({mode})", fontsize=9)
        ax.set_xlabel("probability shift", fontsize=8)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    return path


def example_grid(examples: np.ndarray, path: Path, scale: int = 2) -> Path:
    """Rows = sources; first column the source, then its outputs. 8-bit grey PNG."""
    from PIL import Image

    rows, cols, s, _ = examples.shape
    pad = 2
    canvas = np.full((rows * (s + pad) - pad, cols * (s + pad) - pad), 255, np.uint8)
    for i in range(rows):
        for j in range(cols):
            tile = ((np.clip(examples[i, j], -1, 1) + 1) * 127.5).round().astype(np.uint8)
            canvas[i * (s + pad):i * (s + pad) + s, j * (s + pad):j * (s + pad) + s] = tile
    im = Image.fromarray(canvas)  # uint8 (H, W): mode L
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
    return path
