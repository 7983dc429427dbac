"""numpy <-> torch plumbing shared by the transforms: each returns the type it was given."""

from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def as_tensor(x: Array, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A plain tensor view of ``x`` (zero-copy for contiguous numpy arrays)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a numpy array or torch tensor, got {type(x).__name__}")
    elif type(x) is not torch.Tensor:
        x = x.as_subclass(torch.Tensor)  # MONAI MetaTensor -> plain tensor: no metadata tracking cost
    return x if dtype is None else x.to(dtype)


def like(out: torch.Tensor, ref: Array) -> Array:
    """Return ``out`` as the same kind of array as ``ref`` (numpy stays numpy)."""
    if isinstance(ref, np.ndarray):
        return out.detach().cpu().numpy()
    return out


def as_mask(mask: Array | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """A bool tensor broadcastable to ``shape`` (None stays None)."""
    if mask is None:
        return None
    m = as_tensor(mask).to(device=device, dtype=torch.bool)
    while m.ndim < len(shape):
        m = m.unsqueeze(0)
    try:
        torch.broadcast_shapes(m.shape, shape)
    except RuntimeError:
        raise ValueError(f"valid mask of shape {tuple(m.shape)} does not match image {tuple(shape)}") from None
    return m
