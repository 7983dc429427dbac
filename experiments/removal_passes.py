"""Does a removal applied again take what the first left? (issue #16, ninth round.)

    python experiments/removal_passes.py runs/phantom-truth/runs/default-s0 --out removal-passes.json

Each effusion source of the removal task (the benchmark's seeded order) and, as a control, each
fluid-free source is translated to ``normal`` up to ``PASSES`` times in a row, the output of one
pass being the next one's input (one latent code per source; the normal style is fixed in
today's default, so it does not matter). After each pass the oracle reads the output against the
patient's own fluid-free baseline: the share read as this patient without fluid. If G took the
remnant of its first removal for fluid, a second pass would clear it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSES = 3


def main() -> None:
    import torch

    from experiments.phantom_runs import diagnosis_args, load_phantom_run
    from xraystyle.evaluation.truth import _lung_source
    from xraystyle.models.translate import translate_latent
    from xraystyle.phantom.attributes import patient_baseline

    a = diagnosis_args(__doc__, n_sources=29, n_styles=1)
    results = {}
    for run in a.runs:
        setup = load_phantom_run(run, order_seed=a.seed)
        model, rows, oracle, renderer = setup.model, setup.rows, setup.oracle, setup.renderer
        y = model.labels.parse("normal")
        res = {}
        for name, wanted in (("effusion->normal", True), ("normal->normal", False)):
            items = [r for r in rows if bool(r.labels.get("effusion")) == wanted][:a.n_sources]
            cleared = np.zeros(PASSES, int)
            for j, row in enumerate(items):
                x = torch.from_numpy(np.ascontiguousarray(renderer.render(row)[0], np.float32))[None, None]
                z = torch.randn(1, model.latent_dim, generator=torch.Generator().manual_seed(a.seed * 1_000_003 + j))
                base = patient_baseline(row.seed, setup.size, row.physics, lung_source=_lung_source(row))
                for p in range(PASSES):
                    with torch.no_grad():
                        x = translate_latent(model.nets, x, y, z, model.fixed(y))
                    read = oracle.measure(x[0, 0].numpy(), base)
                    cleared[p] += read.valid and read.side == "none"
            res[name] = {f"pass {p + 1}": f"{k}/{len(items)}" for p, k in enumerate(cleared)}
            print(f"{run.name} {name}: read without fluid after each pass {res[name]}", flush=True)
        results[str(run)] = res
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
