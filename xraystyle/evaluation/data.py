"""Evaluation inputs: which rows are sources, references and real target images; their
pre-processed tensors; finding masks and priors; cached real-image features.

Images come from the training tensor cache (``xraystyle.data.cache``): the deterministic
pipeline (read -> robust window -> resize-pad) run once per (rows, preprocessing) and kept as
a float16 memory map, so evaluating every N training steps re-reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..cohorts.manifest import Manifest
from ..errors import XrayStyleError
from ..streams import Stream

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1


@dataclass
class ImageSet:
    """Rows of one domain with their pre-processed images (N, 1, S, S) float16 in [-1, 1]."""

    manifest: Manifest  # the selected rows only
    images: np.ndarray
    key: str  # tensor cache key: identifies rows + preprocessing

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.images[np.asarray(idx)], dtype=np.float32))


def select_rows(manifest: Manifest, domains: list[str], domain: str, split: str | None, limit: int | None,
                seed: int) -> Manifest:
    """Rows of ``split`` labelled ``domain`` (at most ``limit``, a seeded choice, file order kept)."""
    sub = manifest.subset(split)
    labels = sub.domain_labels(domains)
    idx = np.flatnonzero(labels == domains.index(domain))
    if limit is not None and len(idx) > limit:
        rng = np.random.default_rng([seed, domains.index(domain), Stream.EVAL_ROWS])
        idx = np.sort(rng.choice(idx, size=limit, replace=False))
    return Manifest(sub.path, sub.root, sub.df.iloc[idx].copy())


def load_set(rows: Manifest, preprocess, cache_dir: Path, progress: bool) -> ImageSet:
    """Pre-processed images of ``rows``; unreadable rows are dropped (with a warning)."""
    from ..data.cache import build_tensor_cache

    if len(rows) == 0:
        return ImageSet(rows, np.zeros((0, 1, preprocess.size, preprocess.size), np.float16), "empty")
    cache = build_tensor_cache(rows, preprocess, cache_dir, progress=progress, max_bad_fraction=0.5)
    ok = np.asarray(cache.ok)
    if not ok.all():
        log.warning("%d of %d evaluation images could not be read and are skipped", int((~ok).sum()), len(ok))
        rows = Manifest(rows.path, rows.root, rows.df.iloc[np.flatnonzero(ok)].copy())
        return ImageSet(rows, np.asarray(cache.images)[ok], cache.key)
    return ImageSet(rows, cache.images, cache.key)


def read_mask(path: Path, size: int) -> torch.Tensor | None:
    """A finding mask file (8-bit or 16-bit PNG, non-zero = inside) resized like its image."""
    from PIL import Image

    from ..transforms.geometry import resize_pad

    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except (OSError, ValueError) as exc:
        log.warning("cannot read mask %s (%s): treated as absent", path.name, exc)
        return None
    if a.ndim == 3:
        a = a[..., 0]
    m, _ = resize_pad(torch.from_numpy(a > 0), size, mask=True)
    return m


def source_masks(rows: Manifest, finding: str | None, size: int) -> torch.Tensor | None:
    """(N, S, S) bool masks of ``finding`` for the rows (empty where a row has none), or None
    when the manifest has no ``mask_<finding>`` column."""
    col = f"mask_{finding}"
    if finding is None or col not in rows.df.columns:
        return None
    out = torch.zeros(len(rows), size, size, dtype=torch.bool)
    for i, rel in enumerate(rows.df[col].astype(str).tolist()):
        if rel and rel != "nan":
            m = read_mask(rows.resolve(rel), size)
            if m is not None:
                out[i] = m
    return out


def manifest_prior(manifest: Manifest, finding: str, size: int, max_rows: int = 200, seed: int = 0) -> np.ndarray | None:
    """Share of the finding's masks covering each pixel, over up to ``max_rows`` rows of the
    manifest that have a ``mask_<finding>``; None without masks."""
    col = f"mask_{finding}"
    if col not in manifest.df.columns:
        return None
    rels = [r for r in manifest.df[col].astype(str).tolist() if r and r != "nan"]
    if not rels:
        return None
    if len(rels) > max_rows:
        rng = np.random.default_rng(seed)
        rels = [rels[i] for i in sorted(rng.choice(len(rels), size=max_rows, replace=False))]
    masks = [m for m in (read_mask(manifest.resolve(r), size) for r in rels) if m is not None]
    if not masks:
        return None
    return torch.stack(masks).float().mean(dim=0).numpy()


def cached_arrays(cache_dir: Path, parts: dict, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` once per hash of ``parts`` (rows, pipeline, feature extractor identity)."""
    key = hashlib.sha256(json.dumps({"v": FEATURE_CACHE_VERSION, **parts}, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"features-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            log.warning("feature cache %s unreadable (%s): recomputing", path.name, exc)
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def check_domains(manifest: Manifest, domains: list[str], classifier) -> None:
    """Every finding domain must be a manifest column and a classifier output."""
    from ..cohorts.vocabulary import NORMAL

    manifest.domain_labels(domains)  # ManifestError naming an unknown domain column
    missing = [d for d in domains if d != NORMAL and d not in classifier.findings]
    if missing:
        raise XrayStyleError(f"classifier {classifier.name} does not predict {', '.join(map(repr, missing))} "
                             f"(it predicts: {', '.join(classifier.findings)})")
