"""Physics-disentanglement ablation on the phantom cohort (docs/physics.md).

    python experiments/physics_ablation.py --out runs/physics-ablation --seeds 0,1,2 --jobs 2

Trains the baseline StarGAN v2 and each remedy of ``xraystyle.training.physics`` (plus the
deterministic "normal" style) with the same budget and seeds, evaluates every run with
``xraystyle eval`` (a judge classifier trained here on real phantom images, the phantom oracle,
style/physics leakage) and writes ``ablation.md`` (mean +- sd over seeds) and ``ablation.json``.
The phantom draws its acquisition physics independently of its findings, so any physics a
style carries is leakage. Finished runs and evaluations are reused: rerun to resume.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xraystyle.paths import cache_dir, resolve_config  # noqa: E402

# Every remedy off: the base config's own physics choices (demo.yaml now has the winner on) must
# not leak into the baseline or the single-remedy variants.
BASELINE = {"physics.d_augment": False, "physics.e_augment": False, "physics.lambda_inv": 0.0,
            "physics.lambda_eq": 0.0, "physics.sty_augment": False, "model.normal_style": "sampled",
            "model.style_input": "image", "model.generator_output": "image", "loss.lambda_cls": 0.0,
            "loss.lambda_mismatch": 0.0, "optim.d_lr": None, "train.target_policy": "mixed",
            "loss.lambda_laterality": 0.0, "loss.e_ref": False}

VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline": ("StarGAN v2 (data augmentation of all inputs only)", {}),
    "d-e-augment": ("D and E see augmented images", {"physics.d_augment": True, "physics.e_augment": True}),
    "e-invariance": ("E(aug(x)) ~ E(x), weight 1", {"physics.lambda_inv": 1.0}),
    "g-equivariance": ("G(aug(x), s) ~ aug(G(x, s)), weight 1", {"physics.lambda_eq": 1.0}),
    "sty-augment": ("style reconstruction through aug", {"physics.sty_augment": True}),
    "normal-fixed": ("deterministic normal style", {"model.normal_style": "fixed"}),
    "d-e+inv": ("d-e-augment + e-invariance",
                {"physics.d_augment": True, "physics.e_augment": True, "physics.lambda_inv": 1.0}),
    "d-e+fixed": ("d-e-augment + normal-fixed",
                  {"physics.d_augment": True, "physics.e_augment": True, "model.normal_style": "fixed"}),
    "d-e+inv+fixed": ("d-e-augment + e-invariance + normal-fixed",
                      {"physics.d_augment": True, "physics.e_augment": True, "physics.lambda_inv": 1.0,
                       "model.normal_style": "fixed"}),
}

# (label, mode, key): means over the model's domain pairs from metrics.json "summary", one pair
# ("mode:source->target"), or the style/physics regression of one domain ("physics:domain",
# mean over the physics parameters).
COLUMNS = [
    ("validity (judge)", "latent", "validity"),
    ("validity (judge, ref)", "reference", "validity"),
    ("oracle validity", "latent", "oracle_validity"),
    ("SSIM outside finding", "latent", "identity_ssim"),
    ("X-ray FID", "latent", "fid_xray"),
    ("diversity L1", "latent", "diversity_l1"),
    ("diversity L1, ref, normal->effusion", "reference:normal->effusion", "diversity_l1"),
    ("oracle validity, ref, normal->effusion", "reference:normal->effusion", "oracle_validity"),
    ("exposure spread / real", "latent", "exposure_spread_ratio"),
    ("exposure spread / real, normal->effusion", "latent:normal->effusion", "exposure_spread_ratio"),
    ("contrast spread / real", "latent", "contrast_spread_ratio"),
    ("exposure shift", "latent", "exposure_shift_abs"),
    # effusion codes only: a deterministic normal style has no normal codes to score
    ("style->physics R2 (effusion)", "physics:effusion", "style_r2"),
    ("image->physics R2 (ceiling)", "physics:effusion", "image_r2"),
]


def set_dotted(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def chosen_variants(p: argparse.ArgumentParser, text: str, known) -> list[str]:
    """The comma-separated variants asked for; argparse's error for an unknown one."""
    variants = [v for v in text.split(",") if v]
    unknown = sorted(set(variants) - set(known))
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return variants


def run_all(jobs: list[tuple[str, int]], fn, n_jobs: int) -> None:
    """``fn(variant, seed)`` for every job, ``n_jobs`` at a time (each a subprocess with one
    thread); a failed job is reported and the others go on."""
    with cf.ThreadPoolExecutor(n_jobs) as pool:
        futures = {pool.submit(fn, v, s): (v, s) for v, s in jobs}
        for f in cf.as_completed(futures):
            v, s = futures[f]
            try:
                f.result()
                print(f"done {v} seed {s}", flush=True)
            except RuntimeError as exc:
                print(f"FAILED {v} seed {s}: {exc}", flush=True)


def run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")


def one(variant: str, seed: int, a, manifest: Path, judge: Path) -> Path:
    name = f"{variant}-s{seed}"
    run_dir, eval_dir = a.out / "runs" / name, a.out / "eval" / name
    log = a.out / "logs" / f"{name}.log"
    cfg_path = a.out / "configs" / f"{variant}.yaml"
    if not (eval_dir / "metrics.json").exists():
        resume = ["--resume"] if (run_dir / "checkpoints").exists() else []
        run([sys.executable, "-m", "xraystyle", "train", "--config", str(cfg_path), "--cohort", str(manifest),
             "--out", str(run_dir), "--seed", str(seed), "--no-progress", *resume], log)
        run([sys.executable, "-m", "xraystyle", "eval", "--checkpoint", str(run_dir), "--cohort", str(manifest),
             "--classifier", str(judge), "--out", str(eval_dir), "--n-styles", str(a.n_styles),
             "--limit", str(a.limit), "--no-progress"], log)
    return eval_dir / "metrics.json"


def value(metrics: dict, mode: str | None, key: str) -> float:
    if mode.startswith("physics:"):
        per = metrics.get("style_physics", {}).get(mode.split(":")[1], {})
        vals = [v for k, v in per.items() if k.startswith(key + "/") and v is not None and math.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan
    if ":" in mode:
        mode, pair = mode.split(":")
        src, trg = pair.split("->")
        rows = [r for r in metrics["pairs"] if (r["mode"], r["source"], r["target"]) == (mode, src, trg)]
        return float(rows[0].get(key, math.nan)) if rows else math.nan
    return float(metrics["summary"].get(mode, {}).get(key, math.nan))


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| variant | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for variant, runs in results.items():
        cells = []
        for _label, mode, key in COLUMNS:
            v = np.array([value(m, mode, key) for m in runs])
            v = v[np.isfinite(v)]
            cells.append("n/a" if not len(v) else f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else ""))
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--config", default="demo")
    p.add_argument("--iters", type=int, default=800)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one CPU thread each)")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--n-styles", type=int, default=5)
    p.add_argument("--table-only", action="store_true", help="tabulate finished runs, start nothing")
    a = p.parse_args()
    variants = chosen_variants(p, a.variants, VARIANTS)
    seeds = [int(s) for s in a.seeds.split(",")]
    for sub in ("runs", "eval", "logs", "configs"):
        (a.out / sub).mkdir(parents=True, exist_ok=True)

    base = yaml.safe_load(resolve_config(a.config).read_text())
    size = base["model"]["img_size"]
    for v in [] if a.table_only else variants:
        cfg = json.loads(json.dumps(base))
        set_dotted(cfg, "train.iters", a.iters)
        set_dotted(cfg, "loss.ds_decay_iters", a.iters)
        set_dotted(cfg, "train.sample_every", a.iters)
        for k, val in {**BASELINE, **VARIANTS[v][1]}.items():
            set_dotted(cfg, k, val)
        (a.out / "configs" / f"{v}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    from xraystyle.phantom.default import default_phantom_manifest

    manifest = default_phantom_manifest(size, cache_dir())
    judge = a.out / "judge.pt"
    if not judge.exists():
        run([sys.executable, "-m", "xraystyle", "classifier", "train", "--cohort", str(manifest), "--findings",
             "effusion", "--size", str(size), "--epochs", "4", "--out", str(judge), "--no-progress"],
            a.out / "logs" / "judge.log")

    jobs = [] if a.table_only else [(v, s) for s in seeds for v in variants]
    run_all(jobs, lambda v, s: one(v, s, a, manifest, judge), a.jobs)

    results: dict[str, list[dict]] = {}
    for v in variants:
        found = [a.out / "eval" / f"{v}-s{s}" / "metrics.json" for s in seeds]
        results[v] = [json.loads(m.read_text()) for m in found if m.exists()]
    md = table({v: r for v, r in results.items() if r})
    meta = (f"config {a.config} with train.iters={a.iters} (loss.ds_decay_iters={a.iters}), {size} px, "
            f"seeds {a.seeds}; eval: test split, {a.limit} sources per domain, {a.n_styles} styles, judge "
            "trained on real phantom images (4 epochs).")
    (a.out / "ablation.md").write_text(meta + "\n\n" + md + "\n")
    (a.out / "ablation.json").write_text(json.dumps(
        {v: [{"summary": m["summary"], "style_physics": m.get("style_physics")} for m in r]
         for v, r in results.items()}, indent=1))
    print(meta + "\n\n" + md)


if __name__ == "__main__":
    main()
