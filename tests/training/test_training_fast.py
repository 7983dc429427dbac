"""The fast path (bf16 autocast, channels_last; R1's real pass in fp32) tracks the reference path.

torch.compile is left out here (minutes of CPU compilation); on CUDA the benchmark compares the
full fast mode. Tolerance: over the first 20 steps from the same seed, each loss term's mean
absolute difference stays within 5 % of its mean magnitude plus 0.0025.
"""

import numpy as np
import pytest
import torch

from xraystyle.data.fetcher import BatchFetcher
from xraystyle.data.sampling import BalancedStepSampler
from xraystyle.training.accel import Accel, make_accel
from xraystyle.training.state import build_state
from xraystyle.training.step import train_step

from .conftest import fake_cache


def _losses(cfg, accel, fetch, steps):
    state = build_state(cfg, accel, seed=0)
    return [{k: v.float().item() for k, v in train_step(state, state.nets, fetch(i), cfg, accel).items()}
            for i in range(steps)]


@pytest.mark.slow
def test_bf16_channels_last_losses_track_reference(tiny_cfg):
    images, labels = fake_cache(n=32)
    fetch = BatchFetcher(images, BalancedStepSampler(labels, 2, 4, 0), tiny_cfg.model.latent_dim, 0)
    ref = _losses(tiny_cfg, make_accel("reference", torch.device("cpu")), fetch, 20)
    fast = _losses(tiny_cfg, Accel(torch.device("cpu"), amp_dtype=torch.bfloat16, channels_last=True), fetch, 20)
    differs = False
    for key in ref[0]:
        a, b = np.array([r[key] for r in ref]), np.array([f[key] for f in fast])
        assert np.isfinite(b).all(), key
        assert np.abs(a - b).mean() <= 0.05 * np.abs(a).mean() + 0.0025, key
        differs |= not np.array_equal(a, b)
    assert differs  # autocast really ran in bf16
