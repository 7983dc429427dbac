"""Can G's removal of a reference tell the added size? (issue #16, thirteenth round.)

    python experiments/reference_size.py RUN... [--out size.json]

Two checks behind ``loss.lambda_ref_extent`` and ``loss.laterality_grid``, on the built-in
phantom's test split at the runs' size (EMA weights):

- ``ideal``: on ideal renders of 12 fluid-free sources and 12 other patients as references (left
  effusions of volume 0.15 and 0.5), the total-variation distance between where an add changes
  its source and where the ideal removal changes the reference (``change_cells``, grids 1 x 2 and
  8 x 2), for a reference of the same volume, another volume and the other side: how much of the
  grid's distance is the finding and how much the two patients' anatomy. No model needed.
- per run: 24 references of known volume (left, 0.15-0.5) each given to one of 16 sources; the
  Spearman of the reference's volume with the ``extent`` of the ideal removal, of G's removal
  (the fixed normal style) and of the reference-guided add, the add's extent with the oracle's
  volume of the add, and the mean extents.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_SOURCES, N_REFS = 16, 24


def _tensor(a):
    import torch

    return torch.from_numpy(np.asarray(a, np.float32))[None, None]


def ideal_grid(setup) -> dict:
    from xraystyle.training.losses import change_cells

    r = setup.renderer
    normals = [x for x in setup.rows if not x.labels.get("effusion")]
    out = {}
    for grid in ((1, 2), (8, 2)):
        tv = {"same": [], "other_volume": [], "other_side": []}
        for s_row, r_row in zip(normals[:12], normals[12:24]):
            xs = _tensor(r.render(s_row)[0])
            clean = _tensor(r.render(r_row)[0])
            for v in (0.15, 0.5):
                cells_ref = change_cells(_tensor(r.render(r_row, add={"effusion": {"side": "left", "volume": v}})[0]),
                                         clean, grid)

                for key, side, vol in (("same", "left", v), ("other_volume", "left", 0.65 - v), ("other_side", "right", v)):
                    add = _tensor(r.render(s_row, add={"effusion": {"side": side, "volume": vol}})[0])
                    tv[key].append(0.5 * float((change_cells(add, xs, grid) - cells_ref).abs().sum()))
        out[f"{grid[0]}x{grid[1]}"] = {k: round(float(np.mean(v)), 3) for k, v in tv.items()}
    return out


def run_size(run: Path, seed: int) -> dict:
    from scipy.stats import spearmanr

    from experiments.phantom_runs import load_phantom_run
    from xraystyle.evaluation.truth import Case, ModelTranslator, _lung_source
    from xraystyle.phantom.attributes import patient_baseline
    from xraystyle.training.losses import extent

    setup = load_phantom_run(run, order_seed=seed)
    tr, r = ModelTranslator(setup.model, seed), setup.renderer
    normals = [x for x in setup.rows if not x.labels.get("effusion")]
    sources, ref_rows = normals[:N_SOURCES], normals[N_SOURCES:N_SOURCES + N_REFS]
    cols = {k: [] for k in ("volume", "ideal_removal", "g_removal", "add", "add_oracle_volume")}
    for i, rr in enumerate(ref_rows):
        v = round(0.15 + 0.35 * ((i * 7) % N_REFS) / (N_REFS - 1), 4)  # volumes spread, not in patient order
        ref = r.render(rr, add={"effusion": {"side": "left", "volume": v}})[0]
        removed = tr.latent(Case(rr, ref), "normal", 1)[0]  # G(x_ref, the fixed normal style)
        s_row = sources[i % N_SOURCES]
        src = r.render(s_row)[0]
        add = tr.reference(Case(s_row, src), [Case(rr, ref)], "effusion")[0]
        base = patient_baseline(s_row.seed, setup.size, s_row.physics, lung_source=_lung_source(s_row))
        cols["volume"].append(v)
        cols["ideal_removal"].append(float(extent(_tensor(ref), _tensor(r.render(rr)[0]))))
        cols["g_removal"].append(float(extent(_tensor(ref), _tensor(removed))))
        cols["add"].append(float(extent(_tensor(add), _tensor(src))))
        cols["add_oracle_volume"].append(setup.oracle.measure(add, base).fluid_volume)

    def rho(a, b):
        return round(float(spearmanr(cols[a], cols[b]).statistic), 2)

    return {"run": str(run),
            "volume_vs_extent": {k: rho("volume", k) for k in ("ideal_removal", "g_removal", "add")},
            "volume_vs_add_oracle_volume": rho("volume", "add_oracle_volume"),
            "add_extent_vs_add_oracle_volume": rho("add", "add_oracle_volume"),
            "mean_extent": {k: round(float(np.mean(cols[k])), 3) for k in ("ideal_removal", "g_removal", "add")}}


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    from experiments.phantom_runs import load_phantom_run

    result = {"ideal_grid": ideal_grid(load_phantom_run(a.runs[0], order_seed=a.seed)),
              "runs": [run_size(run, a.seed) for run in a.runs]}
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
