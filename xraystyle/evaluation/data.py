"""Evaluation inputs: which rows are sources, references and real target images; their
pre-processed tensors (a :class:`Pool` labels each row with its finding set, so every task
picks its rows the same way); finding masks and priors; cached real-image features.

Images come from the training tensor cache (``xraystyle.data.cache``): the deterministic
pipeline (read -> robust window -> resize-pad) run once per (rows, preprocessing) and kept as
a float16 memory map, so evaluating every N training steps re-reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
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


@dataclass
class Pool:
    """Image sets read as one (one per domain, so their caches stay per domain) and the 0/1
    finding set (N, F) of every row."""

    parts: list[ImageSet]
    sets: np.ndarray
    offsets: np.ndarray = field(init=False)  # first row of each part
    _by_set: dict[bytes, np.ndarray] | None = field(init=False, default=None)

    def __post_init__(self):
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def batch(self, idx) -> torch.Tensor:
        idx = np.asarray(idx)
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        size = self.parts[0].images.shape[-1]
        out = torch.empty(len(idx), 1, size, size)
        for p in np.unique(part):
            sel = part == p
            out[torch.from_numpy(sel)] = self.parts[p].batch(idx[sel] - self.offsets[p])
        return out

    def rows_with(self, finding_set: np.ndarray) -> np.ndarray:
        """Rows whose set is exactly ``finding_set`` (F,)."""
        if self._by_set is None:
            groups: dict[bytes, list[int]] = {}
            for i, s in enumerate(self.sets):
                groups.setdefault(_set_key(s), []).append(i)
            self._by_set = {k: np.asarray(v) for k, v in groups.items()}
        return self._by_set.get(_set_key(finding_set), np.zeros(0, np.int64))

    def masks(self, finding: str, size: int) -> torch.Tensor | None:
        """(N, S, S) the rows' masks of ``finding``, None when the manifest has no mask column."""
        parts = [source_masks(p.manifest, finding, size) for p in self.parts]
        return None if any(m is None for m in parts) else torch.cat(parts)


def _set_key(finding_set: np.ndarray) -> bytes:
    return np.asarray(finding_set, np.int8).tobytes()


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
