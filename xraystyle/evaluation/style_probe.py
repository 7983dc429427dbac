"""Style probes of the truth benchmark: what does a model's style code know?

On a fresh factorial set of phantom renders (patients never in any cohort x effusion side x
volume, each render under its own physics draw, so attributes and acquisition are crossed
independently), a linear probe reads each translator's style codes for the renders:

- ``style_probe_r2_volume``: cross-validated R^2 of the effusion volume (higher is better);
- ``style_probe_r2_side``: mean R^2 of the side's one-hot columns (higher is better);
- ``style_probe_r2_physics``: the largest R^2 over the drawn physics parameters (exposure,
  contrast, gamma, noise, scatter, blur): what of the acquisition the style carries (lower).

Folds split by patient (a code must generalise to people it has not seen); the probe is
:func:`~xraystyle.evaluation.physics.cv_r2`'s ridge. Each has a permutation null
(``..._null95``: the 95th percentile of the same statistic with the renders' targets shuffled;
its ``ci95`` is the null's 2.5-97.5 % range): a value inside the null is "knows nothing".
Intervals: bootstrap over patients of the out-of-fold predictions.

Codes: the run's E(x_ref, y); ``constant-style`` its one mean style; ``identity`` the image
itself (8 x 8 average-pooled: a style that is the image); ``exposure-shift`` the image's mean
and sd (a style that is the exposure); ``noise`` random codes; ``ideal`` the true attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..streams import Stream

PROBE_SIDES = ("right", "left", "both")
PROBE_VOLUMES = (0.18, 0.28, 0.38, 0.48)
PROBE_PHYSICS = ("exposure", "contrast", "gamma", "noise", "scatter", "blur_mm")
PROBE_FOLDS = 3
PROBE_ALPHA = 0.1
N_PERMUTATIONS = 200
# Fresh patients: a cohort seed no generated cohort uses by default (cohorts take small seeds).
PROBE_COHORT_SEED = 1_515_000


@dataclass
class ProbeSet:
    """The factorial renders: ``images`` (N, S, S) in the model's space, ``patient`` (N,) group,
    ``volume`` (N,), ``side`` (N,) str, ``physics`` (N, P), ``attrs`` (N, 6): volume, side
    one-hot, meniscus, density (the ideal code)."""

    images: np.ndarray
    patient: np.ndarray
    volume: np.ndarray
    side: np.ndarray
    physics: np.ndarray
    attrs: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def targets(self) -> dict[str, np.ndarray]:
        onehot = (self.side[:, None] == np.array(PROBE_SIDES)[None]).astype(np.float64)
        return {"volume": self.volume[:, None], "side": onehot, "physics": self.physics}


def probe_set(size: int, preprocess, seed: int, n_patients: int = 9, n_physics: int = 5) -> ProbeSet:
    """``n_patients`` x 3 sides x 4 volumes x ``n_physics`` renders (540 by default)."""
    from ..phantom.ideal import case_row, ideal_counterfactual, physics_variant
    from .truth import prepare

    images, patient, volume, side, physics, attrs = [], [], [], [], [], []
    for p in range(n_patients):
        row = case_row(PROBE_COHORT_SEED + int(seed), p, size, physics="drawn")
        others = tuple(f for f, v in row.labels.items() if v and f != "effusion")
        for a, (sd, vol) in enumerate((s, v) for s in PROBE_SIDES for v in PROBE_VOLUMES):
            for j in range(n_physics):
                phys = physics_variant(row, a * n_physics + j)
                sample = ideal_counterfactual(row, add={"effusion": {"side": sd, "volume": vol}}, remove=others,
                                              physics=phys)
                eff = sample.finding_params["effusion"]
                images.append(prepare(sample, preprocess))
                patient.append(p)
                volume.append(vol)
                side.append(sd)
                physics.append([float(phys[k]) for k in PROBE_PHYSICS])
                attrs.append([vol, *(float(sd == s) for s in PROBE_SIDES), float(eff["meniscus"]),
                              float(eff["density"])])
    return ProbeSet(np.stack(images).astype(np.float32), np.array(patient), np.array(volume, np.float64),
                    np.array(side), np.array(physics, np.float64), np.array(attrs, np.float64))


def oof_predictions(codes: np.ndarray, targets: np.ndarray, groups: np.ndarray,
                    folds: int = PROBE_FOLDS, alpha: float = PROBE_ALPHA) -> np.ndarray:
    """Out-of-fold ridge predictions of ``targets`` (N, T) from ``codes`` (N, D), folds by group.
    Standardised features (train-fold statistics) and a fixed alpha, as ``physics.cv_r2``; a
    constant feature contributes nothing."""
    x = np.asarray(codes, np.float64).reshape(len(codes), -1)
    t = np.asarray(targets, np.float64)
    fold_of = {g: i % folds for i, g in enumerate(np.unique(groups))}
    fold = np.array([fold_of[g] for g in groups])
    pred = np.empty_like(t)
    for k in range(folds):
        test, train = fold == k, fold != k
        mu, sd = x[train].mean(0), x[train].std(0)
        sd = np.where(sd > 1e-8, sd, np.inf)  # constant columns -> 0 after scaling
        a, b = (x[train] - mu) / sd, (x[test] - mu) / sd
        ty = t[train].mean(0)
        w = np.linalg.solve(a.T @ a / train.sum() + alpha * np.eye(a.shape[1]), a.T @ (t[train] - ty) / train.sum())
        pred[test] = b @ w + ty
    return pred


def _r2(t: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column R^2 (columns without variance: nan)."""
    sst = ((t - t.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - ((t - pred) ** 2).sum(0) / sst, np.nan)


def _statistic(name: str, t: np.ndarray, pred: np.ndarray) -> float:
    r2 = _r2(t, pred)
    return float(np.nanmax(r2) if name == "physics" else np.nanmean(r2))


def probe_rows(codes: np.ndarray | None, probes: ProbeSet, *, model: str, task: str, seed: int,
               n_boot: int = 1000, n_perm: int = N_PERMUTATIONS) -> list[dict]:
    """Rows ``style_probe_r2_{volume,side,physics}`` and their ``_null95`` for one model's codes
    (None: the model has no style code; the rows say so with value None)."""
    rows = []
    for i, (name, t) in enumerate(probes.targets().items()):
        metric = f"style_probe_r2_{name}"
        base = {"model": model, "task": task, "mode": "reference"}
        if codes is None:
            rows += [{**base, "metric": metric, "value": None, "ci95": [None, None], "n": 0},
                     {**base, "metric": metric + "_null95", "value": None, "ci95": [None, None], "n": 0}]
            continue
        pred = oof_predictions(codes, t, probes.patient)
        value = _statistic(name, t, pred)
        rng = np.random.default_rng([seed, Stream.STYLE_PROBE, 0, i])
        patients = np.unique(probes.patient)
        boots = []
        for _ in range(n_boot):
            pick = np.concatenate([np.flatnonzero(probes.patient == p) for p in rng.choice(patients, len(patients))])
            boots.append(_statistic(name, t[pick], pred[pick]))
        null = [_statistic(name, tp, oof_predictions(codes, tp, probes.patient))
                for tp in (t[rng.permutation(len(t))] for _ in range(n_perm))]
        rows += [{**base, "metric": metric, "value": value, "ci95": _pct(boots, 2.5, 97.5), "n": len(t)},
                 {**base, "metric": metric + "_null95", "value": float(np.percentile(null, 95)),
                  "ci95": _pct(null, 2.5, 97.5), "n": n_perm}]
    return rows


def _pct(values: Sequence[float], lo: float, hi: float) -> list[float | None]:
    v = np.asarray([x for x in values if np.isfinite(x)])
    return [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v.size else [None, None]


# ----------------------------------------------------------------------------- codes of the baselines


def pooled_image_codes(images: np.ndarray, cells: int = 8) -> np.ndarray:
    """The image average-pooled to ``cells`` x ``cells`` (the identity's "style": the image)."""
    n, s, _ = images.shape
    k = s // cells
    return images[:, : k * cells, : k * cells].reshape(n, cells, k, cells, k).mean((2, 4)).reshape(n, -1)


def exposure_codes(images: np.ndarray) -> np.ndarray:
    """Mean and sd of each image (the exposure-shift's "style": the exposure)."""
    flat = images.reshape(len(images), -1)
    return np.stack([flat.mean(1), flat.std(1)], axis=1)


def noise_codes(n: int, seed: int, dim: int = 32) -> np.ndarray:
    return np.random.default_rng([seed, Stream.STYLE_PROBE, 1]).standard_normal((n, dim))
