"""Which part of a reference's acquisition reaches a reference-guided add? (issue #16, thirteenth round.)

    python experiments/physics_leak.py RUN... --out leak.json [--n-sources 60] [--n-physics 8]

The truth benchmark's ``phys_transfer_spearman`` correlates the reference's exposure, over four
joint physics draws, with the output's global exposure change: at 40 sources its noise floor is
about 0.1, the size of the effects in question. Here, per run (EMA weights), on the built-in
phantom's test split at the run's size, with the benchmark's reference (another patient with a
left effusion of volume 0.325) for each of the first ``--n-sources`` fluid-free sources (the test split has 51):

- ``joint``: ``--n-physics`` joint draws (``physics_variant``, as the benchmark) and, for every
  acquisition factor, the within-source Spearman of that factor with the output's exposure change
  (mean change over the pixels no finding touches, the benchmark's ``exposure_change``), signed
  mean over sources with a 95 % bootstrap interval. ``exposure`` is the benchmark's metric with
  more draws and sources.
- ``sweep``: one factor at a time over five levels across its range, every other factor at the
  middle of its range: the same Spearman, and the mean over sources of the change in the output's
  exposure change from the lowest to the highest level (image units, [-1, 1] images), which says
  how large a leak is as well as how regular.
- ``joint_range`` / ``attr_range``: the mean over sources of the spread (max - min) of the output's
  exposure change across the joint physics draws, and across six references that differ in the
  finding (the benchmark's stratified side x volume, own physics): the size of the leak beside
  the wobble a reference's finding causes, in image units (an 8-bit display's grey level is
  2 / 255 = 0.0078).

A model that keeps the acquisition out scores about 0 everywhere; an output that follows the
reference's exposure 1 on ``exposure``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_LEVELS = 5
N_ATTR = 6  # references that differ in the finding (the benchmark's --n-styles)
N_BOOT = 2000
OWN = {"side": "left", "volume": 0.325}  # the benchmark's physics reference (truth._references)


def factor_levels() -> tuple[dict, dict[str, list]]:
    """The middle of every range, and ``N_LEVELS`` levels of each factor across its range."""
    from xraystyle.phantom.physics import BIT_DEPTHS, PHYSICS_RANGES

    mid = {k: (float(np.sqrt(lo * hi)) if k in ("exposure", "gamma") else (lo + hi) / 2)
           for k, (lo, hi) in ((k, v) for k, v in PHYSICS_RANGES.items() if k not in ("bit_depth", "monochrome1"))}
    mid |= {"bit_depth": 12, "monochrome1": 0}
    levels = {}
    for k, (lo, hi) in ((k, v) for k, v in PHYSICS_RANGES.items() if k not in ("bit_depth", "monochrome1")):
        t = np.linspace(0, 1, N_LEVELS)
        levels[k] = [round(float(lo * (hi / lo) ** u if k in ("exposure", "gamma") else lo + u * (hi - lo)), 5) for u in t]
    levels["bit_depth"] = list(BIT_DEPTHS)
    levels["monochrome1"] = [0, 1]
    return mid, levels


def boot_mean(items: np.ndarray, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(items), (N_BOOT, len(items)))
    means = items[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"value": round(float(items.mean()), 4), "ci": [round(float(lo), 4), round(float(hi), 4)], "n": len(items)}


def diagnose(run: Path, a, cache: dict) -> dict:
    from experiments.phantom_runs import load_phantom_run
    from xraystyle.evaluation.truth import (
        Case,
        ModelTranslator,
        _lung_source,
        _reference_attrs,
        _spearman,
        exposure_change,
    )
    from xraystyle.phantom.attributes import patient_baseline
    from xraystyle.phantom.ideal import physics_variant
    from xraystyle.phantom.physics import NEUTRAL_PHYSICS

    setup = load_phantom_run(run, order_seed=a.seed)
    # renders depend on the model's preprocessing only: one renderer (and its cache) per preprocessing
    renderer = cache.setdefault(repr(setup.model.preprocess), setup.renderer)
    tr = ModelTranslator(setup.model, a.seed)
    normals = [r for r in setup.rows if not r.labels.get("effusion")]
    sources = normals[:a.n_sources]
    used = {(r.cohort_seed, r.case_index) for r in sources}
    pool = [r for r in setup.rows if (r.cohort_seed, r.case_index) not in used]  # another patient, as the benchmark
    mid, levels = factor_levels()
    factors = list(levels)
    joint = {k: [] for k in factors}
    sweep = {k: [] for k in factors}
    size = {k: [] for k in factors}
    spread = {"joint": [], "attr": []}
    for j, row in enumerate(sources):
        src = Case(row, renderer.render(row)[0], index=j)
        base = patient_baseline(row.seed, setup.size, row.physics, lung_source=_lung_source(row))
        ref_row = pool[j % len(pool)]
        draws = [physics_variant(ref_row, k) for k in range(a.n_physics)]
        plan = [dict(NEUTRAL_PHYSICS) | d for d in draws]
        for k in factors:
            plan += [dict(NEUTRAL_PHYSICS) | mid | {k: v} for v in levels[k]]
        refs = [Case(ref_row, renderer.render(ref_row, add={"effusion": OWN}, physics=p)[0]) for p in plan]
        attrs = _reference_attrs(N_ATTR)
        refs += [Case(ref_row, renderer.render(ref_row, add={"effusion": at})[0]) for at in attrs]
        out = tr.reference(src, refs, "effusion")
        change = np.array([exposure_change(o, src.image, base.reference) for o in out])
        jc, rest, ac = change[:a.n_physics], change[a.n_physics:-N_ATTR], change[-N_ATTR:]
        spread["joint"].append(float(np.ptp(jc)))
        spread["attr"].append(float(np.ptp(ac)))
        for k in factors:
            joint[k].append(_spearman([float(d[k]) for d in draws], jc))
            lv, rest = rest[:len(levels[k])], rest[len(levels[k]):]
            sweep[k].append(_spearman(levels[k], lv))
            size[k].append(float(lv[-1] - lv[0]))
        print(f"{run.name}: source {j + 1}/{len(sources)}", file=sys.stderr, flush=True)
    return {
        "run": str(run),
        "joint": {k: boot_mean(np.array(v)) for k, v in joint.items()},
        "sweep": {k: boot_mean(np.array(v)) for k, v in sweep.items()},
        "sweep_change": {k: boot_mean(np.array(v)) for k, v in size.items()},
        "joint_range": boot_mean(np.array(spread["joint"])), "attr_range": boot_mean(np.array(spread["attr"])),
        "levels": levels, "mid": mid,
    }


def main() -> None:
    import argparse

    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--n-sources", type=int, default=60)
    p.add_argument("--n-physics", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    cache: dict = {}
    results = [diagnose(run, a, cache) for run in a.runs]
    text = json.dumps({"n_sources": a.n_sources, "n_physics": a.n_physics, "seed": a.seed, "runs": results}, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    for r in results:
        print(Path(r["run"]).name, f"joint range {r['joint_range']['value']:.4f}  attr range {r['attr_range']['value']:.4f}")
        for k in r["joint"]:
            j, s, c = r["joint"][k], r["sweep"][k], r["sweep_change"][k]
            print(f"  {k:12s} joint {j['value']:+.3f} [{j['ci'][0]:+.3f}, {j['ci'][1]:+.3f}]   "
                  f"sweep {s['value']:+.3f} [{s['ci'][0]:+.3f}, {s['ci'][1]:+.3f}]   change {c['value']:+.4f}")


if __name__ == "__main__":
    main()
