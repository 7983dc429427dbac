"""Diversity among the K outputs of one source: LPIPS (when its weights are cached) and
weights-free measures (pixel L1, classifier-feature distance).

LPIPS(AlexNet) needs two weight files: the linear calibration layers, shipped inside the
``lpips`` package, and torchvision's ImageNet AlexNet, which ``lpips.LPIPS(net='alex')``
downloads when it is not in the torch hub cache. We build LPIPS with a random trunk (no
download, no file read) and load both files ourselves, ``weights_only=True``, only after
checking that the AlexNet file is in ``$TORCH_HOME/hub/checkpoints``.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError
from .features import find_hub_weights, load_hub_state

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
# lpips' AlexNet slices: features[0:2], [2:5], [5:8], [8:10], [10:12].
_ALEX_SLICES = ((1, range(0, 2)), (2, range(2, 5)), (3, range(5, 8)), (4, range(8, 10)), (5, range(10, 12)))


def _pairs(k: int) -> tuple[list[int], list[int]]:
    pairs = list(itertools.combinations(range(k), 2))
    return [a for a, _ in pairs], [b for _, b in pairs]


def pairwise_l1(images: torch.Tensor) -> float:
    """Mean absolute pixel difference over all pairs of K images (K, 1, S, S), [-1, 1] units."""
    if len(images) < 2:
        return float("nan")
    a, b = _pairs(len(images))
    return float((images[a] - images[b]).abs().mean())


def pairwise_feature_distance(feats: torch.Tensor) -> float:
    """Mean Euclidean distance over all pairs of K feature vectors (K, F)."""
    if len(feats) < 2:
        return float("nan")
    return float(torch.pdist(feats.double()).mean())


class LpipsAlex(torch.nn.Module):
    """LPIPS v0.1 with AlexNet, built from cached files only."""

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__()
        import lpips

        alex_path = find_hub_weights(ALEXNET_FILE, "AlexNet (for LPIPS)")
        lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated pretrained=
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
        alex = load_hub_state(alex_path)
        trunk = {}
        for slice_no, layers in _ALEX_SLICES:
            for i in layers:
                for p in ("weight", "bias"):
                    key = f"features.{i}.{p}"
                    if key in alex:
                        trunk[f"slice{slice_no}.{i}.{p}"] = alex[key]
        try:
            model.net.load_state_dict(trunk)
            lins = torch.load(lin_path, map_location="cpu", weights_only=True)
            loaded = model.load_state_dict(lins, strict=False)  # the trunk is loaded above
            # "lins.N..." are aliases of "linN..." (a ModuleList of the same layers).
            if loaded.unexpected_keys or any(k[:3] == "lin" and k[3:4].isdigit() for k in loaded.missing_keys):
                raise RuntimeError(f"LPIPS layers do not match {lin_path.name}")
        except (RuntimeError, OSError) as exc:
            raise CheckpointError(alex_path, f"cannot build LPIPS from it ({str(exc).splitlines()[0][:150]})") from None
        self.model = model.eval().requires_grad_(False).to(device)

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        a = a.to(dev, torch.float32).repeat(1, 3, 1, 1)
        b = b.to(dev, torch.float32).repeat(1, 3, 1, 1)
        return self.model(a, b).flatten()

    def diversity(self, images: torch.Tensor) -> float:
        """Mean LPIPS over all pairs of K images (the StarGAN v2 protocol's LPIPS)."""
        if len(images) < 2:
            return float("nan")
        a, b = _pairs(len(images))
        return float(self(images[a], images[b]).mean())


def load_lpips(device: str | torch.device = "cpu") -> LpipsAlex:
    return LpipsAlex(device)
