"""Sample grids written during training: sources x target domains, latent- and reference-guided."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..models.translate import translate_latent, translate_reference


def _tile(rows: list[list[torch.Tensor | None]], pad: int = 2) -> np.ndarray:
    """Tile [C?, H, W] images in [-1, 1] (None = blank) into one uint8 greyscale array."""
    h, w = next(t for r in rows for t in r if t is not None).shape[-2:]
    out = np.full((len(rows) * (h + pad) + pad, len(rows[0]) * (w + pad) + pad), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            if t is None:
                continue
            img = ((t.float().mean(0) if t.dim() == 3 else t.float()).clamp(-1, 1) + 1) * 127.5
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img.round().byte().cpu().numpy()
    return out


@torch.no_grad()
def sample_grids(nets: Mapping[str, nn.Module], x_src: torch.Tensor, targets: list[torch.Tensor],
                 refs: list[torch.Tensor | None], z: torch.Tensor,
                 fixed_rows: Callable[[torch.Tensor], torch.Tensor | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Latent grid: each row a source, then one output per target (one z per column).
    Reference grid: first row the references (one per target, blank when the cohort has no
    image with exactly that label), then per source its reference-guided outputs.
    ``fixed_rows`` (RunConfig.fixed_style_rows) marks targets with the deterministic style."""
    n = x_src.shape[0]
    ys = [y.expand(n, *y.shape[1:]) for y in targets]
    fixed = [fixed_rows(y) if fixed_rows is not None else None for y in ys]
    latent_rows, ref_rows = [], [[None] + [None if r is None else r[0] for r in refs]]
    lat = [translate_latent(nets, x_src, y, z[j:j + 1].expand(n, -1), f) for j, (y, f) in enumerate(zip(ys, fixed))]
    ref = [None if r is None else translate_reference(nets, x_src, r.expand(n, -1, -1, -1), y, f)
           for y, f, r in zip(ys, fixed, refs)]
    for i in range(n):
        latent_rows.append([x_src[i]] + [out[i] for out in lat])
        ref_rows.append([x_src[i]] + [None if out is None else out[i] for out in ref])
    return _tile(latent_rows), _tile(ref_rows)


def write_grids(out_dir: Path, step: int, latent: np.ndarray, reference: np.ndarray) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(latent).save(out_dir / f"latent_{step:07d}.png")
    Image.fromarray(reference).save(out_dir / f"reference_{step:07d}.png")
