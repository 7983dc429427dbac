"""Capacity curve of reports/phantom-truth.md: the remedy-free baseline over width x steps.

    python experiments/phantom_truth.py --out runs/phantom-truth --seeds 0 --table capacity-grid \\
        --variants baseline,baseline-w16-i1500,baseline-w32-i1500,baseline-w8-i4000,baseline-w16-i4000
    python experiments/capacity_figure.py --bench runs/phantom-truth/bench --out reports/figures

Reads each grid run's ``truth.json`` (seed 0) and plots, per metric, the value with its bootstrap
95 % interval against the base width, one line per training length; the ideal render's value
is the dashed line. Runs not benchmarked yet are left out (the figure says which are shown).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.phantom_truth import GRID, lookup  # noqa: E402

METRICS = [  # (task, mode, metric, label)
    ("normal->effusion", "latent", "add_validity", "add validity (latent)"),
    ("effusion->normal", "latent", "remove_validity", "remove validity (latent)"),
    ("normal->effusion", "reference", "ref_volume_spearman", "reference volume Spearman"),
    ("normal->effusion", "reference", "ref_side_accuracy", "reference side accuracy"),
    ("normal->effusion", "latent", "cf_ssim_vs_ideal_outside", "SSIM outside the finding (latent add)"),
    ("normal->effusion", "reference", "phys_transfer_spearman", "physics transfer Spearman"),
]


def grid_runs() -> list[tuple[str, int, int]]:
    """(variant, base width, steps) of every grid cell, ``baseline`` being width 8, 1500 steps."""
    return [("baseline", 8, 1500)] + [(f"baseline-w{w}-i{it}", w, it) for w, it in GRID]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, required=True, help="folder of <variant>-s<seed>/truth.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    found = {}
    for v, w, it in grid_runs():
        f = a.bench / f"{v}-s{a.seed}" / "truth.json"
        if f.exists():
            found[(w, it)] = json.loads(f.read_text())
    if not found:
        sys.exit(f"no grid benchmark under {a.bench}")
    steps = sorted({it for _, it in found})
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
    for ax, (task, mode, metric, label) in zip(axes.flat, METRICS):
        for it in steps:
            cells = sorted((w, lookup(t, "run", task, mode, metric)) for (w, i), t in found.items() if i == it)
            cells = [(w, r) for w, r in cells if r and r["value"] is not None]
            if not cells:
                continue
            ws = [w for w, _ in cells]
            vals = [r["value"] for _, r in cells]
            err = [[r["value"] - r["ci95"][0] for _, r in cells], [r["ci95"][1] - r["value"] for _, r in cells]]
            ax.errorbar(ws, vals, yerr=err, marker="o", capsize=3, label=f"{it} steps")
        ideal = lookup(next(iter(found.values())), "ideal", task, mode, metric)
        if ideal and ideal["value"] is not None:
            ax.axhline(ideal["value"], ls="--", c="grey", lw=1, label="ideal")
        ax.set_xscale("log", base=2)
        ax.set_xticks([8, 16, 32], ["8", "16", "32"])
        ax.set_xlabel("base width")
        ax.set_title(label, fontsize=10)
    axes.flat[0].legend(fontsize=8)
    shown = ", ".join(f"w{w}/{it}" for w, it in sorted(found))
    fig.suptitle(f"remedy-free baseline, seed {a.seed}, 64 px phantom test split (95 % bootstrap CI); runs: {shown}",
                 fontsize=9)
    a.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out / "capacity-grid.png", dpi=110)
    print(a.out / "capacity-grid.png")


if __name__ == "__main__":
    main()
