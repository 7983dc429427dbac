"""How precisely must a removal place the lung base the fluid hid? (issue #16, eighth round.)

    python experiments/base_tolerance.py runs/phantom-truth/runs/default-s0 --out base-tolerance.json

The removal benchmark's oracle reads a removal against the patient's own fluid-free render, so a
removal is only read without fluid if it puts back this patient's lung base, which the effusion
hid. This asks the oracle about images with **no fluid at all**: each effusion source of the
benchmark (the run's size and seeded order; the run only sets both) re-rendered without any
finding, with its own physics and noise, but with the lung's height / width ratio
(``AnatomyParams.lung_stretch``) scaled by each of ``FACTORS`` (the lung top stays, so the
base moves: < 1 higher, > 1 lower; the cohort draws the ratio from U[0.92, 1.08]). For each
factor: the share read as this patient without fluid, the median fluid area read, and the mean
shift of the lowest lung row at the model's size (pixels). An image-only removal that cannot see
the base places it with some error; this says how small that error must be for the oracle.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FACTORS = (1.0, 0.99, 0.98, 0.96, 0.94, 0.92, 1.02, 1.04)


def main() -> None:
    from experiments.phantom_runs import diagnosis_args, load_phantom_run
    from experiments.removal_diagnosis import fluid_area
    from xraystyle.evaluation.truth import _lung_source, prepare
    from xraystyle.phantom.anatomy import draw_anatomy
    from xraystyle.phantom.attributes import patient_baseline
    from xraystyle.phantom.generator import _render, _seed_sequence, _streams
    from xraystyle.phantom.physics import resolve_physics

    a = diagnosis_args(__doc__, n_sources=29, n_styles=1)
    setup = load_phantom_run(a.runs[0], order_seed=a.seed)
    model, oracle, size = setup.model, setup.oracle, setup.size
    effusions = [r for r in setup.rows if r.labels.get("effusion")][:a.n_sources]

    def fluid_free(row, factor):
        # render_phantom's own steps (same streams, so the same patient, physics and noise), with
        # the one anatomy parameter changed and no finding
        streams = _streams(_seed_sequence(row.seed))
        anatomy = draw_anatomy(streams["anatomy"], _lung_source(row))
        anatomy = dataclasses.replace(anatomy, lung_stretch=anatomy.lung_stretch * factor)
        return _render(anatomy, {}, resolve_physics(dict(row.physics)), streams["noise"], row.size)

    def lowest_row(sample):  # at the model's size
        lungs = sample.anatomy_masks["lung_right"] | sample.anatomy_masks["lung_left"]
        return float(np.flatnonzero(lungs.any(axis=1))[-1]) * size / lungs.shape[0]

    own = [lowest_row(fluid_free(row, 1.0)) for row in effusions]  # each patient's own base
    out = {}
    for factor in FACTORS:
        clear, areas, shifts = 0, [], []
        for row, own_row in zip(effusions, own):
            sample = fluid_free(row, factor)
            base = patient_baseline(row.seed, size, row.physics, lung_source=_lung_source(row))
            read = oracle.measure(prepare(sample, model.preprocess), base)
            clear += read.valid and read.side == "none"
            areas.append(fluid_area(read) if read.valid else np.nan)
            shifts.append(lowest_row(sample) - own_row)
        out[factor] = {"no_fluid": f"{clear}/{len(effusions)}", "fluid_area_median": round(float(np.nanmedian(areas)), 3),
                       "base_shift_px": round(float(np.mean(shifts)), 2)}
        print(f"lung_stretch x{factor:.2f}: base moved {out[factor]['base_shift_px']:+.2f} px, read without fluid "
              f"{out[factor]['no_fluid']}, fluid area median {out[factor]['fluid_area_median']:.3f}")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
