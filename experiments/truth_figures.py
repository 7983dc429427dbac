"""Figures of reports/phantom-truth.md: what the truth benchmark's numbers look like.

    python experiments/truth_figures.py --runs runs/phantom-truth/runs --seed 0 --out reports/figures

1. ``truth-ref-volume.png``: reference-guided normal -> effusion, the reference's true effusion
   volume (x) against the volume the attribute oracle measures on the output (y; 0 where it reads
   no fluid or not this patient), per variant and for the ideal render.
2. ``truth-grid-add.png`` / ``truth-grid-remove.png``: source | ideal | each variant's output,
   for test-split sources (add: reference-guided with one stratified reference effusion; remove:
   latent-guided, first style).

Same sources, references and seeds as ``xraystyle bench phantom --seed 0`` uses for its first
sources (the benchmark's seeded order), on the built-in phantom cohort at the runs' size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.phantom_truth import TRUTH_VARIANTS  # noqa: E402


def wrap(name: str, width: int = 18) -> str:
    """A long variant name over several lines, broken after its '+' (grid column titles)."""
    lines = [""]
    for part in name.replace("+", "+\n").split("\n"):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xraystyle.evaluation.bench import split_rows
    from xraystyle.evaluation.truth import TASKS, Case, ModelTranslator, _full_effusion, _reference_attrs, _Renderer
    from xraystyle.paths import cache_dir
    from xraystyle.phantom.attributes import calibrate_attribute_oracle, patient_baseline
    from xraystyle.phantom.default import default_phantom_manifest
    from xraystyle.phantom.ideal import read_truth
    from xraystyle.streams import Stream
    from xraystyle.trained import load_trained_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="folder with <variant>-s<seed> run folders")
    p.add_argument("--variants", default="baseline,residual+mismatch+e-equalized+fixed,"
                   "residual+mismatch+e-equalized+fixed-cross-dlr4",
                   help="runs <variant>-s<seed> shown")
    p.add_argument("--seed", type=int, default=0, help="training seed of the runs shown")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-sources", type=int, default=24)
    p.add_argument("--n-styles", type=int, default=6)
    p.add_argument("--grid", type=int, default=4, help="sources per grid")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    variants = [v for v in a.variants.split(",") if v]
    missing = [v for v in variants if v not in TRUTH_VARIANTS or not (a.runs / f"{v}-s{a.seed}" / "checkpoints").is_dir()]
    if missing:
        sys.exit(f"no run {missing[0]}-s{a.seed} under {a.runs}")
    models = {v: load_trained_model(a.runs / f"{v}-s{a.seed}") for v in variants}
    size = next(iter(models.values())).size
    manifest = default_phantom_manifest(size, cache_dir())
    rows, _ = split_rows(read_truth(manifest), manifest, "test")
    order = np.random.default_rng(np.random.SeedSequence([0, Stream.TRUTH, 4])).permutation(len(rows))  # the bench's order
    rows = [rows[i] for i in order]
    oracle = calibrate_attribute_oracle(size, n=400, seed=0)
    renderer = _Renderer(next(iter(models.values())).preprocess)
    add, remove = TASKS
    normals = [r for r in rows if r.labels["effusion"] == 0][: a.n_sources]
    effusions = [r for r in rows if r.labels["effusion"] == 1][: a.grid]
    pool = [r for r in rows if r not in normals]
    translators = {v: ModelTranslator(m, 0) for v, m in models.items()}

    # 1. reference volume vs measured output volume
    points: dict[str, list[tuple[float, float]]] = {v: [] for v in ["ideal", *variants]}
    grid_add: list[list[np.ndarray]] = []
    for j, row in enumerate(normals):
        src = Case(row, renderer.render(row)[0], index=j)
        base = patient_baseline(row.seed, size, row.physics,
                                lung_source="procedural" if row.lung_template == "procedural" else "auto")
        ref_row = pool[(j * a.n_styles) % len(pool)]
        refs = []
        for attrs in _reference_attrs(a.n_styles):
            img, _ = renderer.render(ref_row, add={"effusion": attrs})
            refs.append(Case(ref_row, img, _full_effusion(ref_row, attrs)))
        ideals = [renderer.render(row, add={"effusion": c.attrs})[0] for c in refs]
        outs = {"ideal": np.stack(ideals), **{v: t.reference(src, refs, add.target) for v, t in translators.items()}}
        for v, o in outs.items():
            for c, img in zip(refs, o):
                m = oracle.measure(img, base)
                points[v].append((c.attrs["volume"], m.fluid_volume if m.valid else 0.0))
        if j < a.grid:
            k = j % a.n_styles
            grid_add.append([src.image, refs[k].image, ideals[k], *(outs[v][k] for v in variants)])

    fig, axes = plt.subplots(1, len(points), figsize=(3.0 * len(points), 3.1), sharex=True, sharey=True)
    for ax, (v, pts) in zip(np.atleast_1d(axes), points.items()):
        x, y = np.array(pts).T
        ax.scatter(x + np.random.default_rng(0).uniform(-0.006, 0.006, len(x)), y, s=8, alpha=0.6)
        ax.plot([0, 0.6], [0, 0.6], color="grey", lw=0.8, ls="--")
        ax.set_title(wrap(v, 24), fontsize=9)
        ax.set_xlabel("reference volume (true)")
    np.atleast_1d(axes)[0].set_ylabel("output volume (oracle)")
    fig.suptitle(f"reference-guided normal -> effusion, {len(normals)} test sources x {a.n_styles} references, "
                 f"training seed {a.seed}", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out / "truth-ref-volume.png", dpi=110)

    # 2. grids
    grid_remove = []
    for j, row in enumerate(effusions):
        src = Case(row, renderer.render(row)[0], index=j)
        ideal = renderer.render(row, remove=remove.remove)[0]
        grid_remove.append([src.image, ideal, *(translators[v].latent(src, remove.target, 1)[0] for v in variants)])
    for name, grid, cols in (("add", grid_add, ["source", "reference", "ideal", *variants]),
                             ("remove", grid_remove, ["source", "ideal", *variants])):
        fig, axes = plt.subplots(len(grid), len(cols), figsize=(1.6 * len(cols), 1.6 * len(grid) + 0.3))
        for i, images in enumerate(grid):
            for k, img in enumerate(images):
                ax = axes[i, k]
                ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(wrap(cols[k]), fontsize=8)
        fig.tight_layout()
        fig.savefig(a.out / f"truth-grid-{name}.png", dpi=110)
    print(f"wrote {a.out}/truth-ref-volume.png, truth-grid-add.png, truth-grid-remove.png")


if __name__ == "__main__":
    main()
