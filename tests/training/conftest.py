import pytest
import torch

from xraystyle.data.fetcher import BatchFetcher
from xraystyle.data.sampling import BalancedStepSampler
from xraystyle.paths import resolve_config
from xraystyle.training.config import load_config


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg():
    return load_config(resolve_config("tiny"))


def loss_trajectory(cfg, accel, steps):
    """Loss terms of ``steps`` training steps from seed 0 on a fake cache (the fast path's
    numerics tests), and the final state. Batches go to ``accel.device``."""
    from xraystyle.training.accel import forward_nets
    from xraystyle.training.agreement import stack_terms
    from xraystyle.training.state import build_state
    from xraystyle.training.step import train_step

    images, labels = fake_cache(n=32)
    fetch = BatchFetcher(images, BalancedStepSampler(labels, 2, cfg.train.batch_size, 0), cfg.model.latent_dim, 0)
    accel.configure_backends()  # as the trainer does (on CUDA: fp32 without TF32)
    state = build_state(cfg, accel, seed=0)
    fwd = forward_nets(state.nets, accel)
    terms = [train_step(state, fwd, fetch(i).to(accel.device), cfg, accel) for i in range(steps)]
    return stack_terms(terms), state


def fake_cache(n=24, size=32, domains=2, seed=0):
    """Synthetic 'cache': domain 1 images carry a bright blob at the bottom (an 'effusion')."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g) * 0.4 - 0.6
    labels = torch.arange(n) % domains
    images[labels == 1, :, size * 3 // 4:, :] += 0.8
    return images.half().numpy(), labels.numpy()


@pytest.fixture
def fetcher(tiny_cfg):
    images, labels = fake_cache()
    sampler = BalancedStepSampler(labels, 2, tiny_cfg.train.batch_size, seed=0)
    return BatchFetcher(images, sampler, tiny_cfg.model.latent_dim, seed=0, augment=None)


def write_png_cohort(root, n=24, size=(40, 36), seed=0):
    """A tiny real-file cohort: 16-bit PNGs, odd rows 'effusion' (bright lower third)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from xraystyle.cohorts.manifest import write_manifest

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        a = rng.uniform(5000, 20000, size).astype(np.float64)
        a[:, size[1] // 2 - 3: size[1] // 2 + 3] += 25000  # a 'spine'
        eff = i % 2
        if eff:
            a[size[0] * 2 // 3:, :] += 30000
        Image.fromarray(a.clip(0, 65535).astype(np.uint16)).save(root / "img" / f"im{i:03d}.png")
        rows.append({"path": f"img/im{i:03d}.png", "patient_id": f"p{i}", "study_id": f"s{i}",
                     "view": "PA", "split": "train" if i < n - 4 else "test", "effusion": eff})
    return write_manifest(pd.DataFrame(rows), root / "manifest.csv")


@pytest.fixture
def png_cohort(tmp_path):
    return write_png_cohort(tmp_path / "cohort")
