"""How precisely must a removal place the lung base the fluid hid? (issue #16, eighth and ninth rounds.)

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

Then ``ESTIMATES``: the same fluid-free renders with the ratio set as a removal that does not see
the hidden base could set it (every other parameter the patient's own): the cohort's mean, the
prior's lowest base, and the patient's own where one side is clear (both lungs share the ratio, so
the other side shows the base: an upper bound on reading it) with the mean or the lowest base
where both sides have fluid. Each is scored like the sweep and split by the effusion's side: the
scores an image-only removal reaches if it leaves no fluid and guesses the base that way.

Last, ``SHAPES``: the lung's *shape* where the fluid hid it. Inside the source's fluid mask
(dilated by a pixel) the fluid-free render of the patient with **another patient's lung
template** (the next source's; the ratio as said), outside it the patient's own fluid-free
render: a removal that takes all the fluid and draws, where it could not see, a plausible lung
that is not this patient's (and, at the patient's own ratio, with the lung of the source two and
three further on, to see how much one pairing decides). Beside it, the run's own removals (the
normal style is fixed, so one per source): their mean |difference| in the model's units, inside
the fluid mask, from the patient's fluid-free render and from the render with the other lung:
does G draw this patient's hidden lung, or a lung?
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FACTORS = (1.0, 0.99, 0.98, 0.96, 0.94, 0.92, 1.02, 1.04)
PRIOR = (0.92, 1.08)  # draw_anatomy's lung_stretch ~ U[PRIOR]
MEAN, LOWEST = sum(PRIOR) / 2, PRIOR[1]
ESTIMATES = {  # name -> ratio from (the patient's own ratio, the effusion's side)
    "own": lambda own, side: own,
    "mean": lambda own, side: MEAN,
    "lowest": lambda own, side: LOWEST,
    "other side, else mean": lambda own, side: own if side != "both" else MEAN,
    "other side, else lowest": lambda own, side: own if side != "both" else LOWEST,
}
SHAPES = {  # name -> ratio of the other lung from the patient's own
    "another patient's lung shape, own ratio": lambda own: own,
    "another patient's lung shape, mean ratio": lambda own: MEAN,
}


def main() -> None:
    import torch
    from PIL import Image

    from experiments.phantom_runs import diagnosis_args, load_phantom_run
    from experiments.removal_diagnosis import fluid_area
    from xraystyle.evaluation.truth import _lung_source, prepare
    from xraystyle.models.translate import translate_latent
    from xraystyle.phantom.anatomy import draw_anatomy
    from xraystyle.phantom.attributes import patient_baseline
    from xraystyle.phantom.generator import _render, _seed_sequence, _streams
    from xraystyle.phantom.physics import resolve_physics

    a = diagnosis_args(__doc__, n_sources=29, n_styles=1)
    setup = load_phantom_run(a.runs[0], order_seed=a.seed)
    model, oracle, size = setup.model, setup.oracle, setup.size
    effusions = [r for r in setup.rows if r.labels.get("effusion")][:a.n_sources]

    def anatomy_of(row):
        return draw_anatomy(_streams(_seed_sequence(row.seed))["anatomy"], _lung_source(row))

    def fluid_free(row, stretch=lambda own: own, lung_of=None, params=None):
        # render_phantom's own steps (same streams, so the same patient, physics and noise), with
        # the lung's height ratio set by ``stretch`` from the patient's own, the lung template of
        # the anatomy ``lung_of`` if given, and no finding unless ``params`` (the source's) are
        streams = _streams(_seed_sequence(row.seed))
        anatomy = draw_anatomy(streams["anatomy"], _lung_source(row))
        anatomy = dataclasses.replace(anatomy, lung_stretch=stretch(anatomy.lung_stretch))
        if lung_of is not None:
            anatomy = dataclasses.replace(anatomy, lung_template=lung_of.lung_template,
                                          procedural_seed=lung_of.procedural_seed)
        return _render(anatomy, dict(params or {}), resolve_physics(dict(row.physics)), streams["noise"], row.size)

    # per source, rendered once: the source itself and the patient without fluid
    sources = {id(row): fluid_free(row, params=row.params) for row in effusions}
    own_free = {id(row): fluid_free(row) for row in effusions}

    def composite(row, other, stretch):
        hidden = ndi.binary_dilation(sources[id(row)].masks["effusion"], iterations=1)
        drawn = fluid_free(row, stretch, lung_of=anatomy_of(other))
        own_image = own_free[id(row)].image
        return dataclasses.replace(own_free[id(row)], image=np.where(hidden, drawn.image, own_image))

    def lowest_row(sample):  # at the model's size
        lungs = sample.anatomy_masks["lung_right"] | sample.anatomy_masks["lung_left"]
        return float(np.flatnonzero(lungs.any(axis=1))[-1]) * size / lungs.shape[0]

    own = [lowest_row(own_free[id(row)]) for row in effusions]  # each patient's own base
    bases = [patient_baseline(row.seed, size, row.physics, lung_source=_lung_source(row)) for row in effusions]
    sides = [row.params["effusion"]["side"] for row in effusions]

    def score(stretches, render=fluid_free):
        clear, areas, shifts = [], [], []
        for row, own_row, base, stretch in zip(effusions, own, bases, stretches):
            sample = render(row, stretch)
            read = oracle.measure(prepare(sample, model.preprocess), base)
            clear.append(bool(read.valid and read.side == "none"))
            areas.append(fluid_area(read) if read.valid else np.nan)
            shifts.append(lowest_row(sample) - own_row)
        return {"no_fluid": f"{sum(clear)}/{len(clear)}", "fluid_area_median": round(float(np.nanmedian(areas)), 3),
                "base_shift_px": round(float(np.mean(shifts)), 2),
                "base_shift_px_range": [round(float(min(shifts)), 2), round(float(max(shifts)), 2)],
                "by_side": {sd: f"{sum(c for c, s in zip(clear, sides) if s == sd)}/{sides.count(sd)}"
                            for sd in sorted(set(sides))}}

    out = {"factor": {}, "estimate": {}}
    for factor in FACTORS:
        r = out["factor"][factor] = score([lambda own, f=factor: own * f] * len(effusions))
        print(f"lung_stretch x{factor:.2f}: base moved {r['base_shift_px']:+.2f} px, read without fluid "
              f"{r['no_fluid']}, fluid area median {r['fluid_area_median']:.3f}")
    for name, estimate in ESTIMATES.items():
        r = out["estimate"][name] = score([lambda own, sd=sd, e=estimate: e(own, sd) for sd in sides])
        print(f"base from {name}: moved {r['base_shift_px']:+.2f} px {r['base_shift_px_range']}, read without "
              f"fluid {r['no_fluid']} (by side {r['by_side']}), fluid area median {r['fluid_area_median']:.3f}")
    others = effusions[1:] + effusions[:1]  # each source's "another patient": the next one
    other_of = {id(row): other for row, other in zip(effusions, others)}
    same = sum(anatomy_of(r).lung_template == anatomy_of(o).lung_template for r, o in zip(effusions, others))
    out["shape"] = {"same_template": f"{same}/{len(effusions)}"}
    y = model.labels.parse("normal")
    d_own, d_other, d_lungs = [], [], []
    for row, other in zip(effusions, others):
        source = sources[id(row)]
        hidden = np.asarray(Image.fromarray(source.masks["effusion"]).resize((size, size), Image.NEAREST))
        x = torch.from_numpy(prepare(source, model.preprocess))[None, None]
        with torch.no_grad():
            removal = translate_latent(model.nets, x, y, torch.zeros(1, model.latent_dim), model.fixed(y))[0, 0].numpy()
        own_img = prepare(own_free[id(row)], model.preprocess)
        other_img = prepare(fluid_free(row, lung_of=anatomy_of(other)), model.preprocess)
        d_own.append(float(np.abs(removal - own_img)[hidden].mean()))
        d_other.append(float(np.abs(removal - other_img)[hidden].mean()))
        d_lungs.append(float(np.abs(own_img - other_img)[hidden].mean()))
    out["shape"]["run_removal"] = {"to_own": round(float(np.mean(d_own)), 3), "to_other": round(float(np.mean(d_other)), 3),
                                   "closer_to_own": f"{sum(a < b for a, b in zip(d_own, d_other))}/{len(d_own)}",
                                   "own_to_other": round(float(np.mean(d_lungs)), 3)}
    print(f"the run's removals inside the fluid mask: |removal - own| {np.mean(d_own):.3f}, |removal - other lung| "
          f"{np.mean(d_other):.3f} (closer to own {out['shape']['run_removal']['closer_to_own']}); |own - other| "
          f"{np.mean(d_lungs):.3f}")
    for name, stretch in SHAPES.items():
        r = out["shape"][name] = score([stretch] * len(effusions),
                                       render=lambda row, st: composite(row, other_of[id(row)], st))
        print(f"{name}: read without fluid {r['no_fluid']} (by side {r['by_side']}), fluid area median "
              f"{r['fluid_area_median']:.3f} ({same} of the pairs share a template)")
    # the same with the second- and third-next source's lung: how much one pairing decides
    out["shape"]["other pairings, own ratio"] = {}
    for shift in (2, 3):
        paired = {id(row): effusions[(i + shift) % len(effusions)] for i, row in enumerate(effusions)}
        r = out["shape"]["other pairings, own ratio"][shift] = score(
            [SHAPES["another patient's lung shape, own ratio"]] * len(effusions),
            render=lambda row, st, paired=paired: composite(row, paired[id(row)], st))
        print(f"  the lung of the source {shift} further on: read without fluid {r['no_fluid']}")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
