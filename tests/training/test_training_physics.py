"""Physics remedies inside a training step (training/physics.py, losses.py) and the
deterministic normal style (models/style.py)."""

import pytest
import torch
from torch import nn

from xraystyle.data.fetcher import step_generator
from xraystyle.errors import ConfigError
from xraystyle.models.style import style_code
from xraystyle.paths import resolve_config
from xraystyle.training.accel import make_accel
from xraystyle.training.config import load_config
from xraystyle.training.losses import d_loss, g_loss
from xraystyle.training.physics import PhysicsAug, PhysicsConfig, StepAugmentConfig
from xraystyle.training.state import build_state
from xraystyle.training.step import train_step

ALL_ON = {"physics.d_augment": True, "physics.e_augment": True, "physics.lambda_inv": 1.0,
          "physics.lambda_eq": 1.0, "physics.sty_augment": True}


def _x(b=4, s=16, seed=0):
    return torch.rand(b, 1, s, s, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


def _aug(seed=0, **flags):
    return PhysicsAug(PhysicsConfig(**flags), step_generator(seed, 0, 2))


class _Shift(nn.Module):
    """G stand-in: x + offset (offset 0 = identity)."""

    def __init__(self, offset=0.0):
        super().__init__()
        self.offset = offset
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, s):
        return x + self.offset + self.w


class _Mean(nn.Module):
    """E / D stand-in reading global intensity: what the remedies must take away."""

    def __init__(self, dim=4):
        super().__init__()
        self.dim = dim
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, y):
        return (self.w * x.mean(dim=(1, 2, 3)))[:, None].repeat(1, self.dim)


class _Const(nn.Module):
    """E stand-in that ignores the image: invariant by construction."""

    def __init__(self, dim=4):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(dim))

    def forward(self, x, y):
        return self.w.expand(len(x), -1) + 0 * x.sum()


class _F(nn.Module):
    latent_dim = 3

    def forward(self, z, y):
        return torch.cat([z, y.float()[:, None]], dim=1)


def _nets(G=None, E=None, D=None):
    return nn.ModuleDict({"G": G or _Shift(), "E": E or _Mean(), "D": D or _Mean(1), "F": _F()})


def test_config_rejects_noise_and_negative_weights():
    with pytest.raises(ConfigError, match="physics.augment"):
        load_config(resolve_config("tiny"), {"physics.augment.noise_prob": 0.5})
    with pytest.raises(ConfigError, match="physics.lambda_inv"):
        load_config(resolve_config("tiny"), {"physics.lambda_inv": -1})
    assert not PhysicsConfig().active and PhysicsConfig(sty_augment=True).active


def test_draws_are_per_global_batch_so_ranks_see_what_one_process_sees():
    x = _x(8)
    whole = _aug(seed=5, d_augment=True)(x)
    parts = [PhysicsAug(PhysicsConfig(), step_generator(5, 0, 2), rank=r, world=2)(x[4 * r:4 * r + 4])
             for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_each_flag_only_changes_its_own_input():
    x = _x()
    aug = _aug(e_augment=True)
    assert torch.equal(aug.for_d(x), x) and torch.equal(aug.for_sty(x), x)
    assert not torch.allclose(aug.for_e(x), x)


def test_equivariance_is_zero_for_an_intensity_free_generator_and_not_otherwise():
    x, y = _x(), torch.tensor([0, 1, 0, 1])
    z = (torch.randn(4, 3), torch.randn(4, 3))
    _, t = g_loss(_nets(), x, y, 1 - y, z_trgs=z, phys=_aug(lambda_eq=1.0))
    assert float(t["eq"]) == 0.0  # G = identity commutes with every intensity map
    _, t = g_loss(_nets(G=_Shift(0.3)), x, y, 1 - y, z_trgs=z, phys=_aug(lambda_eq=1.0))
    assert float(t["eq"]) > 0.01  # an offset does not commute with contrast / gamma


def test_invariance_is_zero_for_an_image_blind_encoder_and_penalises_one_reading_exposure():
    x, y = _x(), torch.tensor([0, 1, 0, 1])
    z = (torch.randn(4, 3), torch.randn(4, 3))
    _, t = g_loss(_nets(E=_Const()), x, y, 1 - y, z_trgs=z, phys=_aug(lambda_inv=1.0))
    assert float(t["inv"]) == 0.0
    loss, t = g_loss(_nets(), x, y, 1 - y, z_trgs=z, phys=_aug(lambda_inv=1.0))
    assert float(t["inv"]) > 0.01
    nets = _nets()
    loss, _ = g_loss(nets, x, y, 1 - y, z_trgs=z, phys=_aug(lambda_inv=1.0))
    loss.backward()
    assert nets["E"].w.grad is not None and float(nets["E"].w.grad.abs()) > 0


def test_style_reconstruction_through_augmentation_scrambles_an_exposure_code():
    x, y = _x(), torch.tensor([0, 1, 0, 1])
    z = (torch.randn(4, 3), torch.randn(4, 3))
    _, plain = g_loss(_nets(), x, y, 1 - y, z_trgs=z)
    _, through = g_loss(_nets(), x, y, 1 - y, z_trgs=z, phys=_aug(sty_augment=True))
    assert float(through["sty"]) != pytest.approx(float(plain["sty"]))
    assert set(through) == set(plain)  # no extra terms: the same loss, a different input to E


def test_discriminator_augmentation_takes_r1_at_the_augmented_real():
    x, y = _x(), torch.tensor([0, 1, 0, 1])
    nets = _nets()
    _, plain = d_loss(nets, x, y, 1 - y, z_trg=torch.randn(4, 3))
    _, aug = d_loss(nets, x, y, 1 - y, z_trg=torch.randn(4, 3), phys=_aug(d_augment=True))
    assert float(aug["real"]) != pytest.approx(float(plain["real"]))
    assert torch.isfinite(aug["r1"]) and float(aug["r1"]) > 0


def test_fixed_rows_get_the_deterministic_style_whatever_the_code_or_reference():
    nets = _nets()
    y = torch.tensor([0, 1, 0, 1])
    fixed = y == 0
    s1 = style_code(nets, y, z=torch.randn(4, 3), fixed=fixed)
    s2 = style_code(nets, y, z=torch.randn(4, 3), fixed=fixed)
    s3 = style_code(nets, y, x_ref=_x(), fixed=fixed)
    assert torch.equal(s1[fixed], s2[fixed])
    assert torch.equal(s3[fixed], s1[fixed])  # reference-guided too
    assert not torch.equal(s1[~fixed], s2[~fixed])


def test_fixed_style_rows_single_and_multi_label():
    cfg = load_config(resolve_config("tiny"), {"model.normal_style": "fixed", "domains": ["effusion", "normal"]})
    assert cfg.fixed_style_rows(torch.tensor([0, 1, 1])).tolist() == [False, True, True]
    assert load_config(resolve_config("tiny")).fixed_style_rows(torch.tensor([0])) is None
    multi = load_config(resolve_config("tiny"), {"model.normal_style": "fixed", "model.conditioning": "set-additive",
                                                 "domains": ["effusion", "nodule"]})
    y = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, float("nan")]])
    assert multi.fixed_style_rows(y).tolist() == [True, False, False]  # unknown is not "absent"
    no_normal = load_config(resolve_config("tiny"), {"model.normal_style": "fixed", "domains": ["effusion", "nodule"]})
    assert no_normal.fixed_style_rows(torch.tensor([0, 1])) is None  # no normal domain: nothing fixed
    with pytest.raises(ConfigError, match="model.normal_style"):
        load_config(resolve_config("tiny"), {"model.normal_style": "sometimes"})


def test_equivariance_holds_for_an_edit_that_changes_the_mean_but_commutes():
    """A multiplicative edit of the lower half changes the image mean yet commutes with a contrast
    change about mid-grey: the loss must be zero (it would not be about each image's own mean)."""

    class _Scale(nn.Module):
        def forward(self, x, s):
            w = torch.ones_like(x)
            w[..., x.shape[-2] // 2:, :] = 1.2
            return x * w

    x, y = _x() * 0.6, torch.tensor([0, 1, 0, 1])
    contrast_only = StepAugmentConfig(exposure_prob=0.0, gamma_prob=0.0)
    phys = PhysicsAug(PhysicsConfig(lambda_eq=1.0, augment=contrast_only), step_generator(0, 0, 2))
    _, t = g_loss(_nets(G=_Scale()), x, y, 1 - y, z_trgs=(torch.randn(4, 3), torch.randn(4, 3)), phys=phys)
    assert float(t["eq"]) < 1e-6


def test_resumed_steps_draw_the_same_physics_whatever_the_global_rng(fetcher):
    cfg = load_config(resolve_config("tiny"), {**ALL_ON, "model.normal_style": "fixed"})
    accel = make_accel("reference", torch.device("cpu"))
    straight = build_state(cfg, accel, seed=0)
    t_straight = [train_step(straight, straight.nets, fetcher(straight.step), cfg, accel) for _ in range(2)]
    resumed = build_state(cfg, accel, seed=0)
    t_resumed = [train_step(resumed, resumed.nets, fetcher(0), cfg, accel)]
    torch.manual_seed(12345)  # as after a restart: the global RNG is somewhere else
    torch.rand(7)
    t_resumed.append(train_step(resumed, resumed.nets, fetcher(1), cfg, accel))
    assert {"G/latent_inv", "G/latent_eq", "G/ref_inv", "G/ref_eq"} <= set(t_straight[0])
    for a, b in zip(t_straight, t_resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a, b) for a, b in zip(straight.nets["G"].parameters(), resumed.nets["G"].parameters()))
    assert all(torch.isfinite(v) for v in t_straight[-1].values())
    x = _x()
    draws = [PhysicsAug(cfg.physics, step_generator(0, step, 2))(x) for step in (0, 1)]
    assert not torch.equal(draws[0], draws[1])  # each step draws afresh


def test_an_equalised_style_encoder_trains_and_gets_gradients(fetcher):
    """model.style_input: equalized (models/equalize.py): E's input is differentiable, so the style
    reconstruction loss still reaches G and E, and the losses stay finite."""
    cfg = load_config(resolve_config("tiny"), {"model.style_input": "equalized", "physics.d_augment": True})
    accel = make_accel("reference", torch.device("cpu"))
    state = build_state(cfg, accel, seed=0)
    before = {k: [p.detach().clone() for p in state.nets[k].parameters()] for k in ("G", "E")}
    stats = [train_step(state, state.nets, fetcher(state.step), cfg, accel) for _ in range(2)]
    assert state.nets["E"].equalize and all(torch.isfinite(v).all() for t in stats for v in t.values())
    for k, params in before.items():
        assert any(not torch.equal(a, b) for a, b in zip(params, state.nets[k].parameters())), k


def test_a_residual_generator_trains_away_from_the_identity(fetcher):
    """model.generator_output: residual: G starts as the identity and the first steps give it an
    edit (its zero last layer moves), with finite losses."""
    cfg = load_config(resolve_config("tiny"), {"model.generator_output": "residual"})
    accel = make_accel("reference", torch.device("cpu"))
    state = build_state(cfg, accel, seed=0)
    x, s = _x(s=cfg.model.img_size), torch.randn(4, cfg.model.style_dim)
    assert torch.equal(state.nets["G"](x, s), x)
    stats = [train_step(state, state.nets, fetcher(state.step), cfg, accel) for _ in range(2)]
    assert all(torch.isfinite(v).all() for t in stats for v in t.values())
    assert state.nets["G"].conv_out[-1].weight.abs().sum() > 0
    assert not torch.allclose(state.nets["G"](x, s), x)


def test_e_veil_changes_what_e_reads_only_and_trains(fetcher):
    """physics.e_veil: E's inputs (e and sty) get a veil of a fraction drawn per image below
    e_veil, D's input nothing; the config refuses fractions outside [0, 1); a step trains with
    it and differs from one without; the same (seed, step) draws the same veils."""
    x = _x()
    aug = _aug(e_veil=0.5)
    assert PhysicsConfig(e_veil=0.5).active and torch.equal(aug.for_d(x), x)
    assert not torch.allclose(aug.for_e(x), x) and not torch.allclose(aug.for_sty(x), x)
    assert torch.equal(_aug(e_veil=0.5).for_e(x), _aug(e_veil=0.5).for_e(x))
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="physics.e_veil"):
            PhysicsConfig(e_veil=bad)
    accel = make_accel("reference", torch.device("cpu"))
    losses = {}
    for veil in (0.0, 0.5):
        cfg = load_config(resolve_config("tiny"), {"model.style_input": "equalized", "physics.d_augment": True,
                                                   "physics.e_veil": veil})
        state = build_state(cfg, accel, seed=0)
        losses[veil] = train_step(state, state.nets, fetcher(0), cfg, accel)
        assert all(torch.isfinite(v).all() for v in losses[veil].values())
    assert losses[0.0]["G/latent_sty"] != losses[0.5]["G/latent_sty"]
