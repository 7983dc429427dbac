"""Fréchet distances between feature sets, and the Inception-v3 feature extractor.

FID = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).

Hand-written rather than ``monai.metrics.FIDMetric``: our sets are small next to the
feature width (tens to hundreds of images, 128-2048 features), so the covariances are
rank-deficient, where ``scipy.linalg.sqrtm`` of the non-symmetric product returns complex
noise that FIDMetric prints about and may refuse. We use tr((S_a S_b)^(1/2)) =
sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2))), a symmetric PSD eigenproblem (``scipy.linalg.eigh``)
that is real and stable at any rank. The test suite checks it against FIDMetric on
well-conditioned data.

FID from n samples is biased upwards, by roughly tr(S)/n per side: at the tens to thousands of
images an evaluation has, two draws of the *same* real distribution are far from 0 apart.
:func:`real_floor` measures that floor at the evaluation's n; an FID is read against it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from ..errors import CheckpointError, MissingWeightsError

log = logging.getLogger(__name__)

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision Inception_V3_Weights.IMAGENET1K_V1


@dataclass
class FeatureStats:
    mu: np.ndarray  # (F,)
    sigma: np.ndarray  # (F, F)
    n: int

    @classmethod
    def of(cls, feats) -> "FeatureStats":
        a = np.asarray(feats.detach().cpu() if torch.is_tensor(feats) else feats, dtype=np.float64)
        if a.ndim != 2 or len(a) < 2:
            raise ValueError(f"need at least two feature vectors (N, F), got shape {a.shape}")
        return cls(a.mean(axis=0), np.cov(a, rowvar=False), len(a))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between two Gaussians fitted to feature sets."""
    root = _psd_sqrt(a.sigma)
    mid = root @ b.sigma @ root
    tr_covmean = np.sqrt(np.clip(linalg.eigvalsh((mid + mid.T) / 2), 0, None)).sum()
    diff = a.mu - b.mu
    return float(max(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_covmean, 0.0))


def fid(feats_a, feats_b) -> float:
    """FID between two feature sets (N, F) and (M, F)."""
    return frechet_distance(FeatureStats.of(feats_a), FeatureStats.of(feats_b))


def real_floor(real, n: int, rng: np.random.Generator) -> tuple[float, int]:
    """(FID, draw size) between two disjoint seeded draws of ``n`` rows of ``real`` (M, F): the
    FID a perfect generator would score at this n. With fewer than 2n rows, the two halves of
    a seeded split (draw size M // 2); NaN when a draw would have fewer than two rows."""
    a = np.asarray(real, dtype=np.float64)
    m = min(n, len(a) // 2)
    if m < 2:
        return float("nan"), m
    order = rng.permutation(len(a))
    return fid(a[order[:m]], a[order[m:2 * m]]), m


# ----------------------------------------------------------------------------- Inception-v3


def torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_hub_weights(filename: str, what: str) -> Path:
    """A torchvision weights file in the torch hub cache, or MissingWeightsError (never downloads)."""
    folder = torch_hub_checkpoints()
    path = folder / filename
    if not path.is_file():
        raise MissingWeightsError(f"{what} weights {filename} not found (searched: {folder}); "
                                  "xraystyle never downloads: put the file there ($TORCH_HOME/hub/checkpoints)")
    return path


def load_hub_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated or foreign file
        raise CheckpointError(path, f"not a readable weights file ({str(exc).strip().splitlines()[0][:150]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, "expected a state_dict")
    return state


class InceptionFeatures(torch.nn.Module):
    """torchvision Inception-v3 pool features (2048) of grey [-1, 1] images.

    The Google weights expect RGB scaled to [-1, 1] (torchvision's ``transform_input`` maps
    ImageNet-normalised input to that), so our images go in unchanged, repeated to three
    channels and resized to 299 px. Values are comparable across runs of this toolkit, not to
    TF-Inception FIDs published elsewhere.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__()
        import torchvision

        path = find_hub_weights(INCEPTION_FILE, "Inception-v3")
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                              transform_input=False)
        try:
            net.load_state_dict(load_hub_state(path))
        except RuntimeError as exc:
            raise CheckpointError(path, f"does not match torchvision Inception-v3 ({str(exc).splitlines()[0][:150]})") from None
        net.fc = torch.nn.Identity()
        net.aux_logits, net.AuxLogits = False, None
        self.net = net.eval().requires_grad_(False).to(device)
        self.identity = f"inception:{INCEPTION_FILE}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(next(self.net.parameters()).device, torch.float32)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > 299)
        return self.net(x.repeat(1, 3, 1, 1))


def load_inception(device: str | torch.device = "cpu") -> InceptionFeatures:
    return InceptionFeatures(device)
