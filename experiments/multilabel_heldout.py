"""Multi-label phantom experiment: does a finding-set model add what it is asked for, only that,
and a combination it never saw in training?

    python experiments/multilabel_heldout.py RUN_DIR [RUN_DIR ...] --limit 40 --n-styles 5

For each run (a multi-label model over the phantom findings, trained with
``data.holdout_combinations``), sources are test-split phantoms negative for every finding of the
model. Each source is translated (latent-guided, EMA weights, fixed latent codes) to every
finding set over the model's findings, the empty set included, and the phantom oracle
(xraystyle.phantom.oracle) judges, per finding, whether it appeared. A target set is *valid*
for one output when every finding in the set appeared, no other finding did, and the oracle's
anatomy gate passes. Prints a markdown table per run; held-out sets are marked.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xraystyle.cohorts import load_manifest  # noqa: E402
from xraystyle.models.translate import translate_latent  # noqa: E402
from xraystyle.phantom.oracle import load_oracle  # noqa: E402
from xraystyle.synthesis import style_latents  # noqa: E402
from xraystyle.trained import load_trained_model  # noqa: E402
from xraystyle.transforms import eval_pipeline  # noqa: E402


def sources(model, manifest, limit: int) -> torch.Tensor:
    df = manifest.subset(split="test").df
    negative = np.ones(len(df), bool)
    for f in model.domains:
        negative &= df[f].to_numpy(dtype=float) == 0.0
    pipe = eval_pipeline(model.preprocess)
    rows = df[negative].head(limit)
    return torch.stack([pipe({"path": str(manifest.resolve(p))})["image"] for p in rows["path"]])


def evaluate(run: Path, manifest, limit: int, n_styles: int) -> list[dict]:
    model = load_trained_model(run)
    x = sources(model, manifest, limit)
    oracle = load_oracle(list(model.domains), model.size, model.preprocess)
    holdout = [set(c) for c in model.args.holdout_combinations]
    z = style_latents(0, n_styles, model.latent_dim)
    rows = []
    for k in range(len(model.domains) + 1):
        for combo in itertools.combinations(model.domains, k):
            y = model.labels.edit(list(combo)).expand(len(x), -1)
            fixed = model.fixed(y)  # the empty set uses the fixed normal style where the model trained one
            appeared = {f: [] for f in model.domains}
            kept, valid = [], []
            for j in range(n_styles):
                out = translate_latent(model.nets, x, y, z[j:j + 1].expand(len(x), -1), fixed)[:, 0]
                src = x[:, 0]
                flags = {f: oracle.added(out, src, f) for f in model.domains}
                anatomy = oracle.anatomy_kept(out, src, list(model.domains))
                ok = anatomy.clone()
                for f in model.domains:
                    ok &= flags[f] if f in combo else ~flags[f]
                    appeared[f].append(flags[f].float().mean().item())
                kept.append(anatomy.float().mean().item())
                valid.append(ok.float().mean().item())
            rows.append({"target": "+".join(combo) or "normal", "held_out": set(combo) in holdout,
                         **{f"added:{f}": float(np.mean(v)) for f, v in appeared.items()},
                         "anatomy_kept": float(np.mean(kept)), "validity": float(np.mean(valid))})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--cohort", type=Path, help="phantom manifest (default: the one each run trained on is not "
                                               "recorded; pass it)", required=True)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--n-styles", type=int, default=5)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    manifest = load_manifest(a.cohort)
    for run in a.runs:
        rows = evaluate(run, manifest, a.limit, a.n_styles)
        model = load_trained_model(run)
        print(f"\n### {run.name}: conditioning {model.args.model.conditioning}, step {model.step}\n")
        keys = [k for k in rows[0] if k not in ("target", "held_out")]
        print("| target | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for r in rows:
            name = r["target"] + (" (held out)" if r["held_out"] else "")
            print(f"| {name} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
