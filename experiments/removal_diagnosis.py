"""Why removal fails (issue #16, item 3): what the attribute oracle reads on a model's "normal"
outputs when there was no fluid to remove.

    python experiments/removal_diagnosis.py runs/phantom-truth/runs/baseline-s0 ... --out removal.json

For each run, on the built-in phantom's test split at the run's size (EMA weights, latent-guided,
``--n-styles`` codes per source, the benchmark's seeded source order), the share of outputs the
oracle reads as *this patient without fluid* for three inputs translated to ``normal``:

- ``normal->normal``: sources without an effusion. An ideal model returns the source (oracle:
  1.00); what is missing from 1 is fluid the generator *draws* (blunted costophrenic angles) or a
  different patient: the ceiling of ``remove_validity`` for this generator.
- ``ideal-removed->normal``: the effusion sources' ideal removals (the same patients without the
  fluid): the same ceiling on the removal task's own patients.
- ``effusion->normal``: the benchmark's removal (``remove_validity``'s numerator).

A removal that works scores the second and third rows alike; a generator whose outputs read as
fluid anyway scores all three low. For the removal row it also gives the oracle's fluid area left
in the output as a share of the source's (median and IQR over outputs): a removal that takes
most of the fluid but stays above the oracle's threshold counts as a failure in the share, not
here.

The removal row is also split by the side the oracle reads on the source (left / right / both;
``by_source_side``: outputs read without fluid, of how many), and the fluid-free row says what G
does to a chest that needs no edit (``lung_edit``: mean change of the grey level over the lower
60 % of the lungs, where the oracle looks for fluid, output minus source, in the model's [-1, 1]
units; ``abs_edit``: mean |output - source| over the image):
a removal that is one template for every chest (darken every lung base) shows as a negative
``lung_edit`` here. ``largest_cleared`` / ``smallest_kept``: the source fluid area (the oracle's,
side with more fluid) of the largest effusion every style clears and of the smallest none clears:
when the first is about the second, the verdict is a cut by the effusion's size, as when G takes
a fixed share of any effusion. ``remnant_median``: the fluid area of the outputs not cleared;
``remnant_below_smallest``: how many of them hold less fluid than the smallest effusion among the
sources (``smallest_effusion``; ``effusion_p10_median``: their 10th percentile and median), i.e.
less than any effusion the data shows as one. ``against_ideal`` (outputs cleared / kept): the share
of the source's fluid region the output leaves denser than the ideal removal, and the pixels where
it draws lung outside the patient's lungs below the fluid's top (``against_ideal()``).

It also asks the run's discriminator (training weights, not EMA) what it sees: the mean logit of
its ``normal`` and ``effusion`` heads on real normals, real effusions, the effusions' ideal
removals and the model's removals (with a patch head, ``model.d_patch``, the per-image logit its
loss uses: half the image logit, half the mean cell; each part also on its own), and, where D
has the domain classifier (``loss.lambda_cls``),
its mean P(effusion). A head that scores real effusions as high as real normals does not look at
the fluid, and cannot ask G to remove it. The same for the real effusions of the bottom quarter
by fluid area (``small real effusion``) and the removals the oracle still reads fluid in
(``removal, fluid left``): a D that rejects the first and accepts the second does not see what
the removals leave as an effusion. ``--figure PNG`` draws the first run's removals with the most
fluid left beside the ideal removals and the differences. Intervals: Wilson 95 % over outputs (``n`` = sources x styles;
styles of one source are not independent, so the intervals are narrow by about sqrt(styles)).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [math.nan, math.nan]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(c - h, 3), round(c + h, 3)]


def fluid_area(read) -> float:
    """The oracle's fluid area (share of the lung field) on the side with more of it."""
    return max(side.area for side in read.fluid.values())


def labels(model, text: str, n: int):
    """The label ``text`` parsed by the model's label space, repeated for ``n`` images."""
    y = model.labels.parse(text)
    return y.repeat(n, *([1] * (y.ndim - 1)))


def d_probe(run: Path, model, cases: dict, removed: np.ndarray, small: np.ndarray, kept: np.ndarray) -> dict:
    """Mean logit of D's normal / effusion heads (and P(effusion) of its classifier) per input;
    ``removed``: the model's removal of each effusion source; ``small`` / ``kept`` (bool per
    source): the real effusion is in the bottom quarter by fluid area / the oracle reads fluid
    left in the removal."""
    import torch

    from xraystyle.models.networks import build_networks
    from xraystyle.training.checkpoint import load_latest
    from xraystyle.training.config import load_config
    from xraystyle.training.losses import per_image

    payload, _ = load_latest(run)
    cfg = load_config(run / "config.yaml")
    nets = build_networks(cfg.model, len(cfg.domains), d_classify=cfg.loss.lambda_cls > 0,
                          d_style=cfg.loss.lambda_style_match > 0)
    nets["D"].load_state_dict(payload["state"]["nets"]["D"])
    D = nets["D"].eval()

    def stack(items):
        return torch.from_numpy(np.stack([im for _, im in items]).astype(np.float32))[:, None]

    x_eff = stack(cases["effusion->normal"])
    x_rem = torch.from_numpy(removed.astype(np.float32))[:, None]
    small, kept = torch.from_numpy(small), torch.from_numpy(kept)
    # Does D see a remnant as it sees a small effusion? The real effusions of the bottom quarter
    # by fluid area beside the removals the oracle still reads fluid in.
    inputs = {"real normal": stack(cases["normal->normal"]), "real effusion": x_eff,
              "ideal removal": stack(cases["ideal-removed->normal"]), "model removal": x_rem,
              "small real effusion": x_eff[small], "removal, fluid left": x_rem[kept]}
    out = {}
    for name, x in inputs.items():
        row = {"n": len(x)}
        if not len(x):
            out[name] = row
            continue
        with torch.no_grad():
            for head in ("normal", "effusion"):
                yh = labels(model, head, len(x))
                if D.cls is not None and head == "normal":
                    logit, cls = D(x, yh, classify=True)
                    row["P(effusion)"] = round(float(torch.softmax(cls, 1)[:, model.domains.index("effusion")].mean()), 3)
                else:
                    logit = D(x, yh)
                row[f"D_{head}"] = round(float(per_image(logit).mean()), 3)  # a patch D: as its loss weighs it
                if logit.dim() > 1:  # a patch D's two parts: the image logit and the mean cell
                    row[f"D_{head}_image"] = round(float(logit[:, 0].mean()), 3)
                    row[f"D_{head}_cells"] = round(float(logit[:, 1:].mean()), 3)
        out[name] = row
    return out


def against_ideal(out: np.ndarray, source: np.ndarray, ideal: np.ndarray, base, step: float = 0.15) -> tuple[float, float]:
    """A removal beside the ideal one: ``dense_left``, the share of the source's fluid region
    (source denser than the ideal by more than 0.1) where the output is still denser than the
    ideal by more than ``step``; ``drawn_outside``, pixels where the output is darker than the
    ideal by more than ``step`` outside the patient's lungs, from the fluid's top row down (lung
    drawn where this patient has none). Units: the model's [-1, 1]."""
    fluid = (source - ideal) > 0.1
    rows = np.flatnonzero(fluid.any(axis=1))
    if not rows.size:
        return 0.0, 0.0
    d = out - ideal
    lower = np.zeros_like(fluid)
    lower[rows[0]:] = True
    lungs = base.lungs["right"] | base.lungs["left"]
    return float(((d > step) & fluid).sum() / fluid.sum()), float(((d < -step) & lower & ~lungs).sum())


def remnant_figure(path: Path, panels: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], k: int = 6) -> None:
    """The ``k`` removals with the most fluid left, one row each: source | removal | ideal removal |
    removal - ideal | source - ideal (differences on +-0.4, grey = 0), enlarged 3x. ``panels``:
    (source, removal, ideal, fluid area left) per effusion source."""
    from PIL import Image

    def u8(a, lo=-1.0, hi=1.0):
        return np.clip((a - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)

    rows = [np.concatenate([u8(src), u8(out), u8(ideal), u8(out - ideal, -0.4, 0.4), u8(src - ideal, -0.4, 0.4)], 1)
            for src, out, ideal, _ in sorted(panels, key=lambda p: -p[3])[:k]]
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def main() -> None:
    import torch

    from experiments.phantom_runs import diagnosis_args, load_phantom_run
    from xraystyle.evaluation.truth import _lung_source
    from xraystyle.models.translate import translate_latent
    from xraystyle.phantom.attributes import BASAL_FROM, patient_baseline

    a = diagnosis_args(__doc__, n_sources=29, n_styles=6,
                       figure="PNG of the first run's removals with the most fluid left (remnant_figure)")
    results = {}
    for run in a.runs:
        setup = load_phantom_run(run, order_seed=a.seed)
        model, rows, split, oracle, renderer, size = (setup.model, setup.rows, setup.split, setup.oracle,
                                                      setup.renderer, setup.size)
        effusions = [r for r in rows if r.labels.get("effusion")][:a.n_sources]
        normals = [r for r in rows if not r.labels.get("effusion")][:a.n_sources]
        y = model.labels.parse("normal")
        cases = {
            "normal->normal": [(r, renderer.render(r)[0]) for r in normals],
            "ideal-removed->normal": [(r, renderer.render(r, remove=("effusion",))[0]) for r in effusions],
            "effusion->normal": [(r, renderer.render(r)[0]) for r in effusions],
        }
        res = {}
        # per effusion source, its first output: (source, removal, ideal, source's fluid area, area left, kept)
        first: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, float, bool]] = []
        for name, items in cases.items():
            k = n = 0
            left = []  # effusion->normal: fluid area left, as a share of the source's
            sides: dict[str, list[int]] = {}  # effusion->normal: [no fluid, outputs] per source side
            sizes: list[tuple[float, float]] = []  # effusion->normal: (source's fluid area, share cleared)
            remnant: list[float] = []  # effusion->normal: fluid area of the outputs not cleared
            anatomy: dict[bool, list[tuple[float, float]]] = {True: [], False: []}  # by cleared: (dense_left, drawn_outside)
            lung_edit, abs_edit = [], []  # normal->normal: what G does where nothing is to be done
            for j, (row, image) in enumerate(items):
                x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].repeat(a.n_styles, 1, 1, 1)
                yy = y.repeat(a.n_styles, *([1] * (y.ndim - 1)))
                g = torch.Generator().manual_seed(a.seed * 1_000_003 + j)
                z = torch.randn(a.n_styles, model.latent_dim, generator=g)
                with torch.no_grad():
                    out = translate_latent(model.nets, x, yy, z, model.fixed(yy))[:, 0].numpy()
                base = patient_baseline(row.seed, size, row.physics, lung_source=_lung_source(row))
                reads = [oracle.measure(o, base) for o in out]
                cleared = [r.valid and r.side == "none" for r in reads]
                k += sum(cleared)
                n += len(reads)
                if name == "effusion->normal":
                    read_src = oracle.measure(image, base)
                    before = fluid_area(read_src)
                    left += [fluid_area(r) / before for r in reads if before > 0]
                    remnant += [fluid_area(r) for r, c in zip(reads, cleared) if not c]
                    ideal = cases["ideal-removed->normal"][j][1]
                    # the source's area where the oracle reads an effusion (NaN: a trace it does not)
                    first.append((image, out[0], ideal, before if read_src.side != "none" else np.nan,
                                  fluid_area(reads[0]), not cleared[0]))
                    for o, c in zip(out, cleared):
                        anatomy[c].append(against_ideal(o, image, ideal, base))
                    tally = sides.setdefault(read_src.side, [0, 0])
                    tally[0] += sum(cleared)
                    tally[1] += len(reads)
                    if read_src.side != "none":  # a trace the oracle does not read is no effusion to size
                        sizes.append((before, float(np.mean(cleared))))
                if name == "normal->normal":
                    # the oracle's fluid zone: the lower 60 % of each lung
                    basal = np.zeros_like(base.lungs["right"])
                    for side, lung in base.lungs.items():
                        basal |= lung & (base.geometry[side]["y_rel"] >= BASAL_FROM)
                    lung_edit += [float((o - image)[basal].mean()) for o in out]
                    abs_edit += [float(np.abs(o - image).mean()) for o in out]
            res[name] = {"no_fluid": round(k / n, 3), "ci95": wilson(k, n), "n": n, "sources": len(items)}
            if left:
                # continuous, unlike the thresholded share: how much of the fluid a removal takes
                res[name]["area_left_median"] = round(float(np.median(left)), 3)
                res[name]["area_left_iqr"] = [round(float(q), 3) for q in np.percentile(left, [25, 75])]
            if sides:
                res[name]["by_source_side"] = {side: f"{kk}/{nn}" for side, (kk, nn) in sorted(sides.items())}
                # Whether the source's fluid area decides the verdict: the largest source cleared by
                # every style, the smallest cleared by none (areas: the oracle's, side with more fluid).
                res[name]["largest_cleared"] = round(max([a for a, c in sizes if c == 1] or [0.0]), 3)
                res[name]["smallest_kept"] = round(min([a for a, c in sizes if c == 0] or [math.inf]), 3)
                # Is what is left an effusion the training data shows? The remnants' area against
                # the smallest source effusion's (the same cohort: the smallest the data has).
                smallest = min(a for a, _ in sizes)
                res[name]["smallest_effusion"] = round(smallest, 3)
                res[name]["effusion_p10_median"] = [round(float(q), 3) for q in np.percentile([a for a, _ in sizes], [10, 50])]
                res[name]["remnant_median"] = round(float(np.median(remnant)), 3) if remnant else None
                res[name]["remnant_below_smallest"] = (f"{sum(r < smallest for r in remnant)}/{len(remnant)}")
                res[name]["against_ideal"] = {
                    key: {"n": len(v), "dense_left": round(float(np.mean([a for a, _ in v])), 3),
                          "drawn_outside_px": round(float(np.mean([b for _, b in v])), 1)} if v else {"n": 0}
                    for key, v in (("cleared", anatomy[True]), ("kept", anatomy[False]))}
            if lung_edit:
                res[name]["lung_edit"] = round(float(np.mean(lung_edit)), 4)
                res[name]["abs_edit"] = round(float(np.mean(abs_edit)), 4)
        areas = np.array([f[3] for f in first])
        res["discriminator"] = d_probe(run, model, cases, np.stack([f[1] for f in first]),
                                       areas <= np.nanpercentile(areas, 25), np.array([f[5] for f in first]))
        results[str(run)] = res
        if a.figure and len(results) == 1:
            remnant_figure(a.figure, [(src, out, ideal, left) for src, out, ideal, _, left, _ in first])
        print(f"\n{run} (step {model.step}, split {split})")
        for name, r in res.items():
            if name != "discriminator":
                extra = (f"  fluid area left {r['area_left_median']:.2f} (IQR {r['area_left_iqr']})"
                         f"  by source side {r['by_source_side']}  largest source cleared {r['largest_cleared']}"
                         f"  smallest kept {r['smallest_kept']}  remnant (not cleared) median {r['remnant_median']},"
                         f" below the smallest effusion ({r['smallest_effusion']}) {r['remnant_below_smallest']};"
                         f" source effusions p10 / median {r['effusion_p10_median']}"
                         if "area_left_median" in r else "")
                if "against_ideal" in r:
                    extra += "  against the ideal (cleared / kept): dense left " + " / ".join(
                        f"{r['against_ideal'][k].get('dense_left', float('nan')):.2f}" for k in ("cleared", "kept")) + \
                        ", lung drawn outside the patient's (px) " + " / ".join(
                        f"{r['against_ideal'][k].get('drawn_outside_px', float('nan')):.1f}" for k in ("cleared", "kept"))
                if "lung_edit" in r:
                    extra += f"  basal lung edit {r['lung_edit']:+.3f}  |edit| {r['abs_edit']:.3f}"
                print(f"  {name:24s} {r['no_fluid']:.3f} {r['ci95']}  n={r['n']}{extra}")
        for name, r in res["discriminator"].items():
            print(f"  D on {name:20s} " + "  ".join(f"{k} {v:+.2f}" if k != "n" else f"n={v}" for k, v in r.items()))
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
