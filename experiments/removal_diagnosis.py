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

It also asks the run's discriminator (training weights, not EMA) what it sees: the mean logit of
its ``normal`` and ``effusion`` heads on real normals, real effusions, the effusions' ideal
removals and the model's removals, and, where D has the domain classifier (``loss.lambda_cls``),
its mean P(effusion). A head that scores real effusions as high as real normals does not look at
the fluid, and cannot ask G to remove it. Intervals: Wilson 95 % over outputs (``n`` = sources x styles;
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


def d_probe(run: Path, model, cases: dict, renderer) -> dict:
    """Mean logit of D's normal / effusion heads (and P(effusion) of its classifier) per input."""
    import torch

    from xraystyle.models.networks import build_networks
    from xraystyle.models.translate import translate_latent
    from xraystyle.training.checkpoint import load_latest
    from xraystyle.training.config import load_config

    payload, _ = load_latest(run)
    cfg = load_config(run / "config.yaml")
    nets = build_networks(cfg.model, len(cfg.domains), d_classify=cfg.loss.lambda_cls > 0,
                          d_style=cfg.loss.lambda_style_match > 0)
    nets["D"].load_state_dict(payload["state"]["nets"]["D"])
    D = nets["D"].eval()

    def stack(items):
        return torch.from_numpy(np.stack([im for _, im in items]).astype(np.float32))[:, None]

    x_eff = stack(cases["effusion->normal"])
    y = labels(model, "normal", len(x_eff))
    z = torch.randn(len(x_eff), model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        removed = translate_latent(model.nets, x_eff, y, z, model.fixed(y))
    inputs = {"real normal": stack(cases["normal->normal"]), "real effusion": x_eff,
              "ideal removal": stack(cases["ideal-removed->normal"]), "model removal": removed}
    out = {}
    for name, x in inputs.items():
        row = {}
        with torch.no_grad():
            for head in ("normal", "effusion"):
                yh = labels(model, head, len(x))
                if D.cls is not None and head == "normal":
                    logit, cls = D(x, yh, classify=True)
                    row["P(effusion)"] = round(float(torch.softmax(cls, 1)[:, model.domains.index("effusion")].mean()), 3)
                else:
                    logit = D(x, yh)
                row[f"D_{head}"] = round(float(logit.mean()), 3)
        out[name] = row
    return out


def main() -> None:
    import torch

    from experiments.phantom_runs import diagnosis_args, load_phantom_run
    from xraystyle.evaluation.truth import _lung_source
    from xraystyle.models.translate import translate_latent
    from xraystyle.phantom.attributes import patient_baseline

    a = diagnosis_args(__doc__, n_sources=29, n_styles=6)
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
        for name, items in cases.items():
            k = n = 0
            left = []  # effusion->normal: fluid area left, as a share of the source's
            for j, (row, image) in enumerate(items):
                x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].repeat(a.n_styles, 1, 1, 1)
                yy = y.repeat(a.n_styles, *([1] * (y.ndim - 1)))
                g = torch.Generator().manual_seed(a.seed * 1_000_003 + j)
                z = torch.randn(a.n_styles, model.latent_dim, generator=g)
                with torch.no_grad():
                    out = translate_latent(model.nets, x, yy, z, model.fixed(yy))[:, 0].numpy()
                base = patient_baseline(row.seed, size, row.physics, lung_source=_lung_source(row))
                reads = [oracle.measure(o, base) for o in out]
                k += sum(r.valid and r.side == "none" for r in reads)
                n += len(reads)
                if name == "effusion->normal":
                    before = fluid_area(oracle.measure(image, base))
                    left += [fluid_area(r) / before for r in reads if before > 0]
            res[name] = {"no_fluid": round(k / n, 3), "ci95": wilson(k, n), "n": n, "sources": len(items)}
            if left:
                # continuous, unlike the thresholded share: how much of the fluid a removal takes
                res[name]["area_left_median"] = round(float(np.median(left)), 3)
                res[name]["area_left_iqr"] = [round(float(q), 3) for q in np.percentile(left, [25, 75])]
        res["discriminator"] = d_probe(run, model, cases, renderer)
        results[str(run)] = res
        print(f"\n{run} (step {model.step}, split {split})")
        for name, r in res.items():
            if name != "discriminator":
                extra = (f"  fluid area left {r['area_left_median']:.2f} (IQR {r['area_left_iqr']})"
                         if "area_left_median" in r else "")
                print(f"  {name:24s} {r['no_fluid']:.3f} {r['ci95']}  n={r['n']}{extra}")
        for name, r in res["discriminator"].items():
            print(f"  D on {name:20s} " + "  ".join(f"{k} {v:+.2f}" for k, v in r.items()))
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
