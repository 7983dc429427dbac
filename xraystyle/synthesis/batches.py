"""Batched latent- or reference-guided translation of loaded sources: the library behind
``xraystyle synth``, the reports and evaluation.

:func:`synthesize` takes loaded :class:`~xraystyle.synthesis.sources.SourceImage` objects and
yields one :class:`SynthResult` per output, named by the source's pixel hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import XrayStyleError
from ..models.translate import translate_latent, translate_reference
from .sources import ReferenceImage, SourceImage


@dataclass
class SynthResult:
    """One synthetic image: ``image`` (1, S, S) in [-1, 1] on the CPU."""

    source: SourceImage
    target: str
    mode: str  # "latent" | "reference"
    style_index: int  # k of the k-th latent style; the reference's position for reference mode
    image: torch.Tensor
    seed: int | None  # latent mode only
    reference_sha256: str | None = None

    @property
    def name(self) -> str:
        """File stem free of identifiers: source pixel hash, target, style."""
        style = f"z{self.style_index}" if self.mode == "latent" else f"ref-{self.reference_sha256[:8]}"
        return f"src-{self.source.short_hash}_to-{self.target}_{style}"


def style_latents(seed: int, n_styles: int, latent_dim: int) -> torch.Tensor:
    """(n_styles, latent_dim) normal latents; row k depends only on (seed, k), so the k-th
    style is the same whatever ``n_styles`` and whichever source it is applied to."""
    if n_styles < 1:
        raise XrayStyleError(f"--n-styles must be at least 1, got {n_styles}")
    rows = [np.random.default_rng([int(seed), k]).standard_normal(latent_dim) for k in range(n_styles)]
    return torch.as_tensor(np.stack(rows), dtype=torch.float32)


def _labels(label: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """``label`` (a batch of one: domain index [1] or finding set [1, K]) repeated ``n`` times."""
    return label.to(device).expand(n, *label.shape[1:])


def _batches(items: Iterable[SourceImage], size: int) -> Iterator[list[SourceImage]]:
    batch: list[SourceImage] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def synthesize(model, sources: Iterable[SourceImage], *, target: str | None = None,
               reference: ReferenceImage | None = None, n_styles: int = 1, seed: int = 0,
               batch_size: int = 8) -> Iterator[SynthResult]:
    """Translate every source to ``target`` with ``n_styles`` latent styles, or with the style
    of ``reference`` (whose domain is the target; ``target``, if given, must agree).

    Yields results source by source (styles in order). Deterministic for a fixed ``seed``:
    latents come from :func:`style_latents` (the same k-th style for every source) and the
    networks are in eval mode with per-image normalisation, so an image's output does not depend
    on the other sources; a different ``batch_size`` changes only float rounding in the
    convolutions (a few 16-bit grey levels at most).
    """
    if batch_size < 1:
        raise XrayStyleError(f"--batch-size must be at least 1, got {batch_size}")
    if reference is not None:
        if target is not None and target != reference.domain:
            raise XrayStyleError(f"target {target!r} differs from the reference's domain {reference.domain!r}")
        target = reference.domain
    if target is None:
        raise XrayStyleError("give a target domain or a reference image")
    label = model.labels.parse(target)  # domain name, or a finding set "a+b" for multi-label models
    device = model.device
    z = None if reference is not None else style_latents(seed, n_styles, model.latent_dim).to(device)
    for batch in _batches(sources, batch_size):
        x = torch.stack([s.image for s in batch]).to(device)
        y = _labels(label, len(batch), device)
        fixed = model.fixed(y)
        if reference is not None:
            x_ref = reference.image[None].to(device).expand(len(batch), -1, -1, -1)
            outs = [translate_reference(model.nets, x, x_ref, y, fixed).float().cpu()]
        else:
            outs = [translate_latent(model.nets, x, y, z[k:k + 1].expand(len(batch), -1), fixed).float().cpu()
                    for k in range(n_styles)]
        for i, src in enumerate(batch):
            for k, out in enumerate(outs):
                if reference is not None:
                    yield SynthResult(src, target, "reference", 0, out[i], None, reference.sha256)
                else:
                    yield SynthResult(src, target, "latent", k, out[i], seed)
