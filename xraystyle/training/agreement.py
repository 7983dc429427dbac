"""Does the fast path train the same model as the reference path? Loss curves from one seed.

bf16 autocast and compiled kernels cannot reproduce fp32 eager arithmetic bit for bit, and a
GAN's trajectory drifts apart pointwise within tens of steps (each update feeds the next), so
the stated tolerance has two parts, per loss term:

- ``early`` (the criterion): over the first ``EARLY`` steps, before the drift, the mean absolute
  difference per step is at most 5 % of the reference's mean magnitude + 0.0025;
- ``curve`` (a sanity bound): over all steps, in windows of ``WINDOW`` steps, the window means
  differ by at most 25 % of the reference's window mean + 0.05. It catches a run that goes
  elsewhere (collapse, a term that stops moving, NaN), not rounding: on the tiny CPU config,
  rounding choices alone (bf16 with or without channels_last) move 50-step window means by up
  to ~10 % (0.1 absolute on the larger terms) after 100 steps, so a tighter curve bound would
  judge the drift, not the arithmetic.

Used by the CPU test (tiny config, 200 steps) and by ``benchmarks/train_step.py --agree``
(paper config on the GPU).
"""

from __future__ import annotations

import numpy as np
import torch

EARLY, WINDOW = 20, 50
EARLY_RTOL, EARLY_ATOL = 0.05, 0.0025
CURVE_RTOL, CURVE_ATOL = 0.25, 0.05


def stack_terms(steps: list[dict]) -> dict[str, np.ndarray]:
    """[{term: scalar tensor}] per step -> {term: float64 array over steps} (one host copy)."""
    keys = list(steps[0])
    values = torch.stack([torch.stack([s[k].float() for k in keys]) for s in steps]).cpu().double().numpy()
    return {k: values[:, i] for i, k in enumerate(keys)}


def compare_trajectories(ref: dict[str, np.ndarray], fast: dict[str, np.ndarray]) -> list[dict]:
    """One row per loss term: the early and curve statistics, their bounds and ``ok``."""
    rows = []
    for key, a in ref.items():
        b = fast[key]
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        e = slice(0, min(EARLY, n))
        early = float(np.abs(a[e] - b[e]).mean())
        early_bound = EARLY_RTOL * float(np.abs(a[e]).mean()) + EARLY_ATOL
        w = max(n // WINDOW, 1)
        wa = a[: w * WINDOW].reshape(w, -1).mean(1) if n >= WINDOW else a.mean(keepdims=True)
        wb = b[: w * WINDOW].reshape(w, -1).mean(1) if n >= WINDOW else b.mean(keepdims=True)
        excess = np.abs(wa - wb) - (CURVE_RTOL * np.abs(wa) + CURVE_ATOL)
        finite = bool(np.isfinite(b).all())
        rows.append({
            "term": key, "early_mad": round(early, 5), "early_bound": round(early_bound, 5),
            "curve_ref": [round(float(v), 4) for v in wa], "curve_fast": [round(float(v), 4) for v in wb],
            "curve_worst_excess": round(float(excess.max()), 5),
            "ok": finite and early <= early_bound and bool((excess <= 0).all()),
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'term':<16}{'early MAD':>11}{'bound':>9}  {'window means ref / fast':<44}ok"]
    for r in rows:
        curve = " ".join(f"{x:.3f}/{y:.3f}" for x, y in zip(r["curve_ref"], r["curve_fast"]))
        lines.append(f"{r['term']:<16}{r['early_mad']:>11.4f}{r['early_bound']:>9.4f}  {curve:<44}"
                     f"{'yes' if r['ok'] else 'NO'}")
    return "\n".join(lines)
