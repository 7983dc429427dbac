"""The labelled demo grid of README.md / docs/demo.md from a run's last latent sample grid.

    python experiments/demo_figure.py runs/demo docs/img/demo_grid.png [--columns "source,-> normal,-> effusion"]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--columns", default="source,-> normal,-> effusion")
    p.add_argument("--scale", type=float, default=1.8, help="display size per grid pixel / 100 dpi")
    a = p.parse_args(argv)
    # Grids are drawn from the EMA networks during training (training/samples.py).
    grid_path = sorted((a.run / "samples").glob("latent_*.png"))[-1]
    step = int(grid_path.stem.split("_")[1])
    grid = np.asarray(Image.open(grid_path).convert("L"))
    labels = a.columns.split(",")
    h, w = grid.shape
    fig = plt.figure(figsize=(w * a.scale / 100 + 0.9, h * a.scale / 100 + 0.9), dpi=100)
    ax = fig.add_axes((0.45 / (w * a.scale / 100 + 0.9), 0.6 / (h * a.scale / 100 + 0.9),
                       w * a.scale / 100 / (w * a.scale / 100 + 0.9), h * a.scale / 100 / (h * a.scale / 100 + 0.9)))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    col = w / len(labels)
    ax.set_xticks([col * (j + 0.5) for j in range(len(labels))], labels, fontsize=11)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    fig.text(0.5, 0.01, f"SYNTHETIC (columns 2-{len(labels)}) - research use, not for diagnosis\n"
                        f"CPU demo, {step} steps, EMA weights", ha="center", va="bottom", fontsize=9)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"{grid_path} -> {a.out}")


if __name__ == "__main__":
    main()
