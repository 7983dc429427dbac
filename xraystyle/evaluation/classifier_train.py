"""Train the judge: a multi-label classifier on the REAL training-split images of a manifest.

Protocol (docs/evaluation.md):

- images: the manifest's ``train`` rows, preprocessed like the generator's inputs (robust
  window to [-1, 1], square resize-pad to ``size``); a manifest marked synthetic
  (``meta_synthetic`` truthy on any row) is refused: a judge must never learn from
  counterfactuals;
- labels: one column per finding, 1 / 0, blank = unknown and masked out of the loss;
- loss: binary cross-entropy per finding with ``pos_weight = negatives / positives`` (capped at
  20), so rare findings are not ignored;
- augmentation: the toolkit's physics augmentation (exposure, contrast, gamma, noise, blur;
  never geometric, never a flip), which also keeps the judge from reading exposure as a
  finding;
- validation: the ``val`` rows; AUC per finding, and operating points chosen there for
  Youden's J (0.5 when the validation split lacks a class);
- output: one ``.pt`` of plain types and tensors, written atomically, loadable with
  ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ConfigError, ManifestError
from ..transforms.config import AugmentConfig, PreprocessConfig
from .classifier import CLASSIFIER_FORMAT, CLASSIFIER_VERSION
from .nets import ARCHS, build_classifier_net
from .roc import auc, youden_threshold

log = logging.getLogger(__name__)

_TRUTHY = {"1", "true", "yes", "y", "synthetic"}
POS_WEIGHT_CAP = 20.0


def refuse_synthetic(manifest) -> None:
    """ManifestError when any row is marked synthetic (``meta_synthetic``)."""
    col = "meta_synthetic"
    if col in manifest.df.columns:
        marked = manifest.df[col].astype(str).str.strip().str.lower().isin(_TRUTHY).to_numpy()
        if marked.any():
            i = int(np.flatnonzero(marked)[0])
            raise ManifestError(manifest.path, f"row {i + 1}: marked synthetic ({col}); classifiers are "
                                               "trained on real images only")


def _load(manifest, size: int, cache_dir: Path, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from ..data.cache import build_tensor_cache

    cache = build_tensor_cache(manifest, PreprocessConfig(size=size), cache_dir, progress=progress,
                               max_bad_fraction=0.05)
    return cache.images, cache.ok


def _default_lr(arch: str) -> float:
    return 1e-3 if arch == "small" else 1e-4


@torch.no_grad()
def _predict(net, images: np.ndarray, device, batch_size: int) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i:i + batch_size], dtype=np.float32)).to(device)
        out.append(torch.sigmoid(net(x)[0]).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def train_classifier(manifest, findings: list[str], out: str | Path, *, arch: str = "small", epochs: int = 10,
                     size: int = 64, batch_size: int = 32, device: str | torch.device = "cpu", seed: int = 0,
                     lr: float | None = None, augment: bool = True, cache_dir: str | Path | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Train, validate and save a classifier; returns the saved payload's summary (no weights)."""
    from ..paths import cache_dir as default_cache
    from ..transforms.physics import apply_physics, sample_physics

    if arch not in ARCHS:
        raise ConfigError(f"unknown classifier arch {arch!r}: expected one of {', '.join(ARCHS)}")
    findings = [f.strip() for f in findings if f.strip()]
    if not findings:
        raise ConfigError("--findings: name at least one finding, e.g. effusion")
    if len(set(findings)) != len(findings):
        raise ConfigError(f"--findings: listed twice: {', '.join(findings)}")
    if epochs < 1 or batch_size < 1 or not 16 <= size <= 2048:
        raise ConfigError("epochs and batch size must be >= 1 and size in 16..2048")
    refuse_synthetic(manifest)
    manifest.finding_matrix(findings)  # unknown finding -> ManifestError naming what exists
    train = manifest.subset("train")
    val = manifest.subset("val")
    if len(train) == 0:
        raise ManifestError(manifest.path, "no rows in the train split to train a classifier on")
    cache = Path(cache_dir) if cache_dir is not None else default_cache() / "tensors"
    device = torch.device(device)
    torch.manual_seed(seed)

    x_tr, ok_tr = _load(train, size, cache, progress)
    y_tr = train.finding_matrix(findings)
    use = ok_tr & np.isfinite(y_tr).any(axis=1)
    idx = np.flatnonzero(use)
    if len(idx) == 0:
        raise ManifestError(manifest.path, "no readable train rows with a known label for "
                                           f"{', '.join(findings)}")
    y_t = torch.tensor(y_tr, dtype=torch.float32)  # a copy: the manifest array may be read-only
    known = torch.isfinite(y_t)
    pos = ((y_t == 1) & known)[idx].sum(0).float()
    neg = ((y_t == 0) & known)[idx].sum(0).float()
    for f, p, n in zip(findings, pos.tolist(), neg.tolist()):
        if p == 0 or n == 0:
            raise ManifestError(manifest.path, f"train split has {int(p)} positive and {int(n)} negative "
                                               f"{f} rows: need both to train a classifier")
    pos_weight = (neg / pos).clamp(max=POS_WEIGHT_CAP).to(device)

    net = build_classifier_net(arch, len(findings)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr or _default_lr(arch), weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
    aug_cfg = AugmentConfig(enabled=augment)
    steps = epochs * int(np.ceil(len(idx) / batch_size))
    bar = tqdm(total=steps, desc="classifier", unit="step", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = idx[torch.randperm(len(idx), generator=gen).numpy()]
        for i in range(0, len(order), batch_size):
            rows = np.sort(order[i:i + batch_size])
            x = torch.from_numpy(np.asarray(x_tr[rows], dtype=np.float32)).to(device)
            if augment:
                x = apply_physics(x, sample_physics(x, aug_cfg, aug_gen))
            y = y_t[rows].to(device)
            m = known[rows].to(device)
            logits = net(x)[0]
            loss = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(y), pos_weight=pos_weight,
                                                      reduction="none")
            loss = (loss * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
    bar.close()

    val_auc: dict[str, float | None] = {f: None for f in findings}
    thresholds = [0.5] * len(findings)
    rule = "0.5 (no validation split with both classes)"
    n_val = 0
    if len(val):
        x_va, ok_va = _load(val, size, cache, progress)
        y_va = val.finding_matrix(findings)[ok_va]
        n_val = int(ok_va.sum())
        if n_val:
            p_va = _predict(net, np.asarray(x_va)[ok_va], device, batch_size)
            for j, f in enumerate(findings):
                val_auc[f] = auc(p_va[:, j], y_va[:, j])
                thresholds[j] = youden_threshold(p_va[:, j], y_va[:, j], default=0.5)
            rule = "Youden's J on the validation split (0.5 where it lacks a class)"
    payload = {
        "format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, "arch": arch, "findings": findings,
        "input_size": int(size), "thresholds": [float(t) for t in thresholds], "threshold_rule": rule,
        "val_auc": val_auc,
        "preprocess": {k: v for k, v in asdict(PreprocessConfig(size=size)).items() if k != "augment"},
        "input_range": [-1.0, 1.0],
        "train": {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr or _default_lr(arch)),
                  "seed": int(seed), "augment": bool(augment), "n_train": int(len(idx)), "n_val": n_val,
                  "positives": {f: int(p) for f, p in zip(findings, pos.tolist())},
                  "manifest_hash": manifest.content_hash(), "seconds": round(time.perf_counter() - t0, 2)},
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    _atomic_save(payload, Path(out))
    return {k: v for k, v in payload.items() if k != "state_dict"}


def _atomic_save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
