"""Does the style decide how much fluid is added? (issue #16: reference volume transfer.)

    python experiments/volume_diagnosis.py runs/phantom-truth/runs/baseline-s0 ... --out volume.json

For each run, on the built-in phantom's test split at the run's size (EMA weights), ``--n-sources``
fluid-free sources are each translated to ``effusion`` with the *same* ``--n-styles`` styles: latent
codes (one fixed set of z) and, separately, reference images (the first effusions of the split).
The attribute oracle measures the added volume of every output, giving a sources x styles table
per mode. Its variance is split into the share explained by the style (variance of the
per-style means over the total) and by the source (variance of the per-source means over the
total); the rest is their interaction and the oracle's noise. A model whose style carries the
volume has a large style share and a small source share; the reference-guided volume Spearman of
the benchmark cannot be high while the style share is small. For references it also gives the
Spearman of each reference's true volume with its mean output volume (n = styles) and the share of
outputs on each reference's side. What in the source sets the volume: the Spearman of each
source's mean output volume with its lung height (pixels, mean of both sides) and with
its soft-tissue / lung contrast (the acquisition). The same numbers for the *ideal* reference-guided
outputs (each source rendered with each reference's effusion: volume and side) are the control: there
the style decides the volume and the contrast nothing, unless the oracle itself reads volume
differently at another exposure. Intervals: 95 % bootstrap over sources (1000 draws).

Where the latent codes lie (``codes``): can a linear readout of the code tell the mapping
network's codes F(z) (64 draws) from the style encoder's codes of real effusion images (up to 64
of the split)? 5-fold cross-validated accuracy of a logistic regression (0.5: alike; a style-aware
D, linear in the code, can tell latent fakes by their code alone when it is near 1), and the
unbiased kernel MMD of training's code matching (``loss.lambda_code_match``) between the two sets
beside the same MMD between two halves of the E codes (its noise floor).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def shares(v: np.ndarray) -> tuple[float, float]:
    """(style share, source share) of the variance of a sources x styles table."""
    total = v.var()
    if total == 0:
        return 0.0, 0.0
    return float(v.mean(0).var() / total), float(v.mean(1).var() / total)


def shares_ci(v: np.ndarray, seed: int = 0, n_boot: int = 1000) -> dict:
    rng = np.random.default_rng(seed)
    boot = np.array([shares(v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)])
    style, source = shares(v)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return {"style_share": round(style, 3), "style_share_ci95": [round(float(lo[0]), 3), round(float(hi[0]), 3)],
            "source_share": round(source, 3), "source_share_ci95": [round(float(lo[1]), 3), round(float(hi[1]), 3)],
            "mean_volume": round(float(v.mean()), 3), "sd_volume": round(float(v.std()), 3)}


def _logistic(x, t, l2: float = 1e-2):
    """Weights (bias last) of an L2-regularised logistic regression of ``t`` on ``x`` (LBFGS)."""
    import torch

    w = torch.zeros(x.shape[1] + 1, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def nll():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w[:-1] + w[-1], t) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(nll)
    return w.detach()


def separability(a, b, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy of a logistic regression telling rows of ``a`` from rows of ``b``
    (standardised on each training fold). No scikit-learn in the project's dependencies; a linear
    probe is a few lines of torch."""
    import torch

    x = torch.cat([a, b]).double()
    t = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).double()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    right = 0
    for k in range(folds):
        test = order[k::folds]
        train = order[torch.isin(order, test, invert=True)]
        mu, sd = x[train].mean(0), x[train].std(0).clamp(min=1e-6)
        w = _logistic((x[train] - mu) / sd, t[train])
        pred = (((x[test] - mu) / sd) @ w[:-1] + w[-1]) > 0
        right += int((pred.double() == t[test]).sum())
    return right / len(x)


def code_gap(model, rows, renderer, seed: int) -> dict:
    """How far the latent codes lie from the codes of real images (module docstring)."""
    import torch

    from xraystyle.training.losses import code_mmd

    refs = [r for r in rows if r.labels.get("effusion")][:64]
    x = torch.from_numpy(np.stack([renderer.render(r)[0] for r in refs]).astype(np.float32))[:, None]
    y = model.labels.parse("effusion")
    y_e = y.repeat(len(refs), *([1] * (y.ndim - 1)))
    y_f = y.repeat(64, *([1] * (y.ndim - 1)))
    z = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        s_e = model.nets["E"](x, y_e).float()
        s_f = model.nets["F"](z, y_f).float()
    every = lambda n: torch.ones(n, dtype=torch.bool)  # noqa: E731
    half = len(s_e) // 2
    return {"f_vs_e_separability": round(separability(s_f, s_e, seed), 3),
            "f_vs_e_mmd": round(float(code_mmd(s_f, y_f, every(64), s_e, y_e, every(len(s_e)))), 4),
            "e_halves_mmd": round(float(code_mmd(s_e[:half], y_e[:half], every(half), s_e[half:], y_e[half:],
                                                 every(len(s_e) - half))), 4),
            "n_latent": 64, "n_images": len(refs)}


def main() -> None:
    import torch
    from scipy.stats import spearmanr

    from experiments.phantom_runs import diagnosis_args, load_phantom_run
    from xraystyle.evaluation.truth import _lung_source
    from xraystyle.models.translate import translate_latent, translate_reference
    from xraystyle.phantom.attributes import patient_baseline

    a = diagnosis_args(__doc__, n_sources=16, n_styles=8)
    results = {}
    for run in a.runs:
        setup = load_phantom_run(run)
        model, rows, split, oracle, renderer, size = (setup.model, setup.rows, setup.split, setup.oracle,
                                                      setup.renderer, setup.size)
        normals = [r for r in rows if not r.labels.get("effusion")][:a.n_sources]
        refs = [r for r in rows if r.labels.get("effusion")][:a.n_styles]
        k = len(refs)
        y = model.labels.parse("effusion")
        y = y.repeat(k, *([1] * (y.ndim - 1)))
        z = torch.randn(k, model.latent_dim, generator=torch.Generator().manual_seed(a.seed))
        x_ref = torch.from_numpy(np.stack([renderer.render(r)[0] for r in refs]).astype(np.float32))[:, None]
        ref_volume = [float(r.params["effusion"]["volume"]) for r in refs]
        ref_side = [r.params["effusion"]["side"] for r in refs]
        volume = {m: np.zeros((len(normals), k)) for m in ("latent", "reference", "ideal")}
        lung_height, contrast = [], []
        side = {m: np.empty((len(normals), k), object) for m in volume}
        for i, row in enumerate(normals):
            x = torch.from_numpy(np.ascontiguousarray(renderer.render(row)[0], np.float32))[None, None].repeat(k, 1, 1, 1)
            base = patient_baseline(row.seed, size, row.physics, lung_source=_lung_source(row))
            lung_height.append(np.mean([g["height"] for g in base.geometry.values()]))
            contrast.append(base.contrast)
            outs = {"latent": translate_latent(model.nets, x, y, z, model.fixed(y)),
                    "reference": translate_reference(model.nets, x, x_ref, y, model.fixed(y))}
            outs = {m: out[:, 0].numpy() for m, out in outs.items()}
            outs["ideal"] = [renderer.render(row, add={"effusion": {"volume": v, "side": sd}})[0]
                             for v, sd in zip(ref_volume, ref_side)]
            for mode, out in outs.items():
                for j, o in enumerate(out):
                    read = oracle.measure(o, base)
                    volume[mode][i, j], side[mode][i, j] = read.fluid_volume, read.side
        res = {mode: shares_ci(v, a.seed) for mode, v in volume.items()}
        per_ref = volume["reference"].mean(0)
        res["reference"]["ref_volume_vs_mean_output_spearman"] = round(float(spearmanr(ref_volume, per_ref).statistic), 3)
        res["reference"]["per_reference"] = [
            {"true_volume": round(v, 3), "side": s, "mean_output_volume": round(float(m), 3),
             "on_its_side": round(float(np.mean(side["reference"][:, j] == s)), 3)}
            for j, (v, s, m) in enumerate(zip(ref_volume, ref_side, per_ref))]
        for mode in volume:
            per_source = volume[mode].mean(1)
            res[mode]["source_volume_vs_lung_height_spearman"] = round(float(spearmanr(per_source, lung_height).statistic), 3)
            res[mode]["source_volume_vs_contrast_spearman"] = round(float(spearmanr(per_source, contrast).statistic), 3)
        res["codes"] = code_gap(model, rows, renderer, a.seed)
        res["n_sources"], res["n_styles"], res["step"], res["split"] = len(normals), k, model.step, split
        results[str(run)] = res
        print(f"\n{run} (step {model.step}, split {split}; {len(normals)} sources x {k} styles)")
        for mode in volume:
            r = res[mode]
            print(f"  {mode:9s} volume {r['mean_volume']:.3f} +- {r['sd_volume']:.3f}  share of its variance: "
                  f"style {r['style_share']:.2f} {r['style_share_ci95']}, source {r['source_share']:.2f} "
                  f"{r['source_share_ci95']}; per-source mean vs lung height "
                  f"{r['source_volume_vs_lung_height_spearman']:+.2f}, vs contrast "
                  f"{r['source_volume_vs_contrast_spearman']:+.2f} (Spearman, n = {len(normals)})")
        print(f"  reference true volume vs mean output volume: Spearman "
              f"{res['reference']['ref_volume_vs_mean_output_spearman']:+.2f} (n = {k})")
        c = res["codes"]
        print(f"  codes: F(z) vs E(effusion image) linear separability {c['f_vs_e_separability']:.2f} "
              f"(0.5 = alike; n = {c['n_latent']} + {c['n_images']}), MMD {c['f_vs_e_mmd']:.3f} "
              f"(E's halves: {c['e_halves_mmd']:.3f})")
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
