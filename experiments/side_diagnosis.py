"""Where does the reference's side get lost? (issue #16, eleventh round.)

    python experiments/side_diagnosis.py runs/phantom-truth/runs/default-s0 ... --out side.json

For each run, on the built-in phantom's test split at the run's size (EMA weights): the first
``--n-styles`` effusion images of the split are references, each given to the first
``--n-sources`` fluid-free sources (reference-guided adds), and the attribute oracle reads the
side of every output. Reported per run:

- ``confusion``: the references' true side (right / left / both) against the outputs' measured
  side (right / left / both / none; "invalid" where the oracle does not read the output as this
  patient), counts over all reference x source pairs;
- ``latent_sides``: the measured sides of 64 latent adds (F(z), sources in turn);
- ``removal_side_accuracy``: whether G's own removal of each reference (the fixed or the source's
  normal style) tells its side: the share of the removal's squared change in the image's left
  half (``xraystyle.training.losses.laterality``; right of the patient = left of the image) read
  as right above 0.65, left below 0.35, both between; the same for the ideal removal (the
  reference rendered without fluid) as the control;
- ``add_laterality_by_side``: the adds' laterality (mean, sd) grouped by the side the oracle
  measures, which says how cleanly the statistic separates the sides of G's own edits;
- ``code_side_accuracy``: whether E's codes of the references tell their side (leave-one-out
  nearest class centroid in code space; chance about the largest class's share).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIDES = ("right", "left", "both")
N_LATENT = 64  # latent adds read for their sides (sources in turn)


def side_of_share(share: float, lo: float = 0.35, hi: float = 0.65) -> str:
    return "right" if share > hi else ("left" if share < lo else "both")


def loo_centroid_accuracy(codes: np.ndarray, labels: list[str]) -> float:
    lab = np.asarray(labels)
    hits = 0
    for i in range(len(codes)):
        rest = np.arange(len(codes)) != i
        cents = {k: codes[rest & (lab == k)].mean(0) for k in set(lab[rest])}
        hits += min(cents, key=lambda k: float(np.linalg.norm(codes[i] - cents[k]))) == lab[i]
    return hits / len(codes)


def diagnose(run: Path, a) -> dict:
    import torch

    from experiments.phantom_runs import load_phantom_run
    from xraystyle.evaluation.truth import _lung_source
    from xraystyle.models.translate import translate_latent, translate_reference
    from xraystyle.phantom.attributes import patient_baseline
    from xraystyle.training.losses import laterality

    setup = load_phantom_run(run, order_seed=a.seed)
    model, oracle, renderer = setup.model, setup.oracle, setup.renderer
    normals = [r for r in setup.rows if not r.labels.get("effusion")][:a.n_sources]
    refs = [r for r in setup.rows if r.labels.get("effusion")][:a.n_styles]

    def images(rows, **kw):
        return torch.from_numpy(np.stack([renderer.render(r, **kw)[0] for r in rows]).astype(np.float32))[:, None]

    x_src, x_ref, x_ideal = images(normals), images(refs), images(refs, remove=("effusion",))
    sides = [r.params["effusion"]["side"] for r in refs]
    bases = [patient_baseline(r.seed, setup.size, r.physics, lung_source=_lung_source(r)) for r in normals]
    y_e, y_n = model.labels.parse("effusion"), model.labels.parse("normal")

    def measured(img, j) -> str:
        read = oracle.measure(img, bases[j])
        return read.side if read.valid else "invalid"

    confusion, by_side = Counter(), {}
    y = y_e.repeat(len(x_src))
    with torch.no_grad():
        for i in range(len(refs)):
            out = translate_reference(model.nets, x_src, x_ref[i:i + 1].expand(len(x_src), -1, -1, -1), y, model.fixed(y))
            lat = laterality(out, x_src).tolist()
            for j in range(len(normals)):
                side = measured(out[j, 0].numpy(), j)
                confusion[(sides[i], side)] += 1
                by_side.setdefault(side, []).append(lat[j])
        z = torch.randn(N_LATENT, model.latent_dim, generator=torch.Generator().manual_seed(a.seed))
        idx = [k % len(normals) for k in range(N_LATENT)]
        y = y_e.repeat(N_LATENT)
        latent = translate_latent(model.nets, x_src[idx], y, z, model.fixed(y))
        latent_sides = Counter(measured(latent[k, 0].numpy(), j) for k, j in enumerate(idx))
        y = y_n.repeat(len(refs))
        removed = translate_latent(model.nets, x_ref, y, torch.zeros(len(refs), model.latent_dim), model.fixed(y))
        codes = model.nets["E"](x_ref, y_e.repeat(len(refs))).numpy()
    g_share, ideal_share = laterality(x_ref, removed).tolist(), laterality(x_ref, x_ideal).tolist()
    acc = lambda shares: round(float(np.mean([side_of_share(s) == t for s, t in zip(shares, sides)])), 3)  # noqa: E731
    return {
        "n_sources": len(normals), "n_references": len(refs), "reference_sides": dict(Counter(sides)),
        "confusion": {t: {o: confusion[(t, o)] for o in (*SIDES, "none", "invalid")} for t in SIDES},
        "latent_sides": dict(latent_sides),
        "removal_side_accuracy": {"G": acc(g_share), "ideal": acc(ideal_share)},
        "removal_laterality": [{"side": t, "G": round(g, 3), "ideal": round(i, 3)}
                               for t, g, i in zip(sides, g_share, ideal_share)],
        "add_laterality_by_side": {k: [round(float(np.mean(v)), 3), round(float(np.std(v)), 3), len(v)]
                                   for k, v in sorted(by_side.items())},
        "code_side_accuracy": round(loo_centroid_accuracy(codes, sides), 3),
    }


def main() -> None:
    from experiments.phantom_runs import diagnosis_args

    a = diagnosis_args(__doc__, n_sources=16, n_styles=24)  # n_styles: references (effusions of the split)
    results = {}
    for run in a.runs:
        r = results[str(run)] = diagnose(run, a)
        print(f"{run}: removal tells the side G {r['removal_side_accuracy']['G']} / ideal "
              f"{r['removal_side_accuracy']['ideal']}; E's codes {r['code_side_accuracy']}; latent {r['latent_sides']}")
        for t, row in r["confusion"].items():
            print(f"  reference {t:5s} -> {row}")
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
