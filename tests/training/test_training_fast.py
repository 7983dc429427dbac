"""The fast path trains the same model as the reference path (tolerance: training/agreement.py).

On CPU the arithmetic of the GPU's fast mode (bf16 autocast, channels_last, R1's real pass in
fp32) is compared over 200 steps; torch.compile's capture is checked with the "aot_eager"
backend (the same graphs, no code generation: inductor takes minutes of CPU compilation).
The GPU comparison of the full fast mode is ``benchmarks/train_step.py --agree 200``.
"""

import numpy as np
import pytest
import torch

from xraystyle.paths import resolve_config
from xraystyle.training.accel import Accel, forward_nets, make_accel
from xraystyle.training.agreement import compare_trajectories
from xraystyle.training.config import load_config
from xraystyle.training.state import build_state

from .conftest import loss_trajectory

CPU = torch.device("cpu")


@pytest.mark.slow
def test_bf16_channels_last_loss_curves_track_reference_over_200_steps(tiny_cfg):
    ref, _ = loss_trajectory(tiny_cfg, make_accel("reference", CPU), 200)
    fast, _ = loss_trajectory(tiny_cfg, Accel(CPU, amp_dtype=torch.bfloat16, channels_last=True), 200)
    rows = compare_trajectories(ref, fast)
    assert [r["term"] for r in rows if not r["ok"]] == []
    assert len(rows[0]["curve_ref"]) == 4  # four 50-step windows compared
    assert any(not np.array_equal(ref[k], fast[k]) for k in ref)  # autocast really ran in bf16


def test_compiled_networks_match_eager_with_lazy_r1():
    """Compiled G/F/E/D (D's R1 pass eager) give the eager losses and weights, on R1 steps and
    between them (lazy R1 changes which D runs the real pass)."""
    cfg = load_config(resolve_config("tiny"), {"loss.r1_interval": 2})
    ref, s_ref = loss_trajectory(cfg, make_accel("reference", CPU), 3)
    fast, s_fast = loss_trajectory(cfg, Accel(CPU, compile=True, compile_backend="aot_eager"), 3)
    for k in ref:
        np.testing.assert_allclose(fast[k], ref[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert ref["D/latent_r1"][1] == 0 and ref["D/latent_r1"][0] > 0
    for name, net in s_ref.nets.items():
        for (pname, a), b in zip(net.named_parameters(), s_fast.nets[name].parameters()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"{name}.{pname}")


def test_forward_nets_keeps_an_eager_discriminator_for_r1():
    nets = build_state(load_config(resolve_config("tiny")), make_accel("reference", CPU)).nets
    fwd = forward_nets(nets, Accel(CPU, compile=True, compile_backend="aot_eager"))
    assert fwd["D_r1"] is nets["D"] and fwd["D"] is not nets["D"]
    assert {k for k in fwd} == {"G", "F", "E", "D", "D_r1"}
    assert forward_nets(nets, make_accel("reference", CPU))["G"] is nets["G"]


def test_agreement_flags_a_different_curve_and_nan():
    rng = np.random.default_rng(0)
    ref = {"G/latent_adv": 2 + rng.normal(0, 0.2, 200), "D/latent_r1": 0.1 + rng.normal(0, 0.01, 200)}
    same = {k: v + rng.normal(0, 0.002, 200) for k, v in ref.items()}
    assert all(r["ok"] for r in compare_trajectories(ref, same))
    drift = dict(same, **{"G/latent_adv": ref["G/latent_adv"] * np.linspace(1, 1.6, 200)})  # a late 60 % drift
    assert [r["term"] for r in compare_trajectories(ref, drift) if not r["ok"]] == ["G/latent_adv"]
    early = dict(same, **{"D/latent_r1": ref["D/latent_r1"] * 1.2})  # R1 20 % off from the start
    assert [r["term"] for r in compare_trajectories(ref, early) if not r["ok"]] == ["D/latent_r1"]
    nan = dict(same, **{"D/latent_r1": np.where(np.arange(200) == 150, np.nan, same["D/latent_r1"])})
    assert [r["term"] for r in compare_trajectories(ref, nan) if not r["ok"]] == ["D/latent_r1"]
