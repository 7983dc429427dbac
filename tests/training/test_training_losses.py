import pytest
import torch
from torch import nn

from xraystyle.models.networks import build_networks
from xraystyle.training.losses import LossConfig, adv_loss, d_loss, g_loss, lambda_ds_at, per_image, r1_penalty


def test_lambda_ds_decays_linearly_without_mutation():
    cfg = LossConfig(lambda_ds=2.0, ds_decay_iters=100)
    assert lambda_ds_at(cfg, 0) == 2.0
    assert lambda_ds_at(cfg, 50) == pytest.approx(1.0)
    assert lambda_ds_at(cfg, 100) == 0.0
    assert lambda_ds_at(cfg, 500) == 0.0
    assert cfg.lambda_ds == 2.0


def test_adv_loss_is_non_saturating_bce():
    logits = torch.tensor([0.0, 2.0])
    assert adv_loss(logits, 1.0).item() == pytest.approx(
        (torch.nn.functional.softplus(-logits)).mean().item())
    assert adv_loss(logits, 0.0).item() == pytest.approx(torch.nn.functional.softplus(logits).mean().item())


def test_adv_loss_weighs_the_image_logit_and_the_mean_cell_half_each():
    """A patch D's output [B, 1 + cells]: per image, half the image logit's BCE and half the
    mean of the cells' (model.d_patch)."""
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0], [-3.0, 1.0, 1.0, 1.0]])
    sp = torch.nn.functional.softplus
    want = (0.5 * (sp(-logits[:, 0]) + sp(-logits[:, 1:]).mean(1))).mean()
    assert adv_loss(logits, 1.0).item() == pytest.approx(want.item(), rel=1e-6)
    assert torch.equal(per_image(logits[:, 0]), logits[:, 0])
    assert torch.allclose(per_image(logits), torch.tensor([0.5 * (0.5 + 1 / 3), 0.5 * (-3.0 + 1.0)]))


def test_d_loss_with_a_patch_head_scores_every_cell_and_regularises_the_per_image_logit(tiny_cfg):
    import copy
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.d_patch = 8
    torch.manual_seed(0)
    nets = build_networks(cfg.model, 2)
    x = torch.randn(4, 1, 32, 32)
    y_org, y_trg = torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 0])
    z = torch.randn(4, cfg.model.latent_dim)
    loss, t = d_loss(nets, x, y_org, y_trg, z_trg=z, r1_weight=1.0, lambda_mismatch=1.0)
    x_in = x.clone().requires_grad_(True)
    out = nets["D"](x_in, y_org)
    assert out.shape == (4, 65)
    assert t["real"].item() == pytest.approx(adv_loss(out, 1.0).item(), rel=1e-5)
    assert t["r1"].item() == pytest.approx(r1_penalty(per_image(out), x_in).item(), rel=1e-4)
    with torch.no_grad():
        wrong = nets["D"](x[[0, 3]], y_trg[[0, 3]])
    assert t["mismatch"].item() == pytest.approx(adv_loss(wrong, 0.0).item(), rel=1e-5)
    loss.backward()
    assert nets["D"].patch.head.layers[0].weight.grad.abs().sum() > 0
    _, tg = g_loss(nets, x, y_org, y_trg, z_trgs=(z, torch.randn(4, cfg.model.latent_dim)))
    assert torch.isfinite(tg["adv"])


def test_r1_matches_analytic_gradient():
    # D(x) = sum(w * x) per sample: grad wrt x is w, so R1 = 0.5 * ||w||^2.
    w = torch.randn(1, 1, 4, 4)
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    out = (x * w).flatten(1).sum(1)
    assert r1_penalty(out, x).item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-5)


def test_r1_is_differentiable_wrt_discriminator():
    lin = nn.Linear(16, 1)
    x = torch.randn(2, 16, requires_grad=True)
    r1_penalty(lin(x).squeeze(1), x).backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def _nets(tiny_cfg):
    torch.manual_seed(0)
    return build_networks(tiny_cfg.model, 2)


def _four_rows(tiny_cfg, y_org, y_trg):
    """Networks, four images in [-1, 1], their labels and two latent codes per row."""
    nets = _nets(tiny_cfg)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    z = torch.randn(4, tiny_cfg.model.latent_dim), torch.randn(4, tiny_cfg.model.latent_dim)
    return nets, x, torch.tensor(y_org), torch.tensor(y_trg), z


def test_d_loss_terms_and_gradient_only_to_d(tiny_cfg):
    nets = _nets(tiny_cfg)
    x = torch.randn(2, 1, 32, 32)
    y = torch.tensor([0, 1])
    z = torch.randn(2, tiny_cfg.model.latent_dim)
    loss, terms = d_loss(nets, x, y, 1 - y, z_trg=z, r1_weight=1.0)
    assert set(terms) == {"real", "fake", "r1"}
    loss.backward()
    assert all(p.grad is not None for p in nets["D"].parameters())
    assert all(p.grad is None for k in "GFE" for p in nets[k].parameters())
    assert not x.requires_grad  # the caller's tensor is not modified


def test_g_loss_combines_terms_with_weights(tiny_cfg):
    nets = _nets(tiny_cfg)
    x = torch.randn(2, 1, 32, 32)
    y = torch.tensor([0, 1])
    z = (torch.randn(2, tiny_cfg.model.latent_dim), torch.randn(2, tiny_cfg.model.latent_dim))
    torch.manual_seed(1)
    loss, t = g_loss(nets, x, y, 1 - y, z_trgs=z, lambda_sty=2.0, lambda_ds=0.5, lambda_cyc=3.0)
    expected = t["adv"] + 2.0 * t["sty"] - 0.5 * t["ds"] + 3.0 * t["cyc"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in nets["F"].parameters())


def test_g_loss_reference_guided(tiny_cfg):
    nets = _nets(tiny_cfg)
    x = torch.randn(2, 1, 32, 32)
    y = torch.tensor([0, 1])
    loss, t = g_loss(nets, x, y, 1 - y, x_refs=(torch.randn_like(x), torch.randn_like(x)))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError):
        g_loss(nets, x, y, y)


def test_r1_stays_fp32_under_bf16_autocast(tiny_cfg):
    """The real pass that R1 differentiates twice runs outside autocast: R1 and the real term are
    the fp32 values, while the fake term (a generator pass under autocast) is bf16."""
    nets = _nets(tiny_cfg)
    x = torch.randn(2, 1, 32, 32)
    y = torch.tensor([0, 1])
    z = torch.randn(2, tiny_cfg.model.latent_dim)
    _, fp32 = d_loss(nets, x, y, 1 - y, z_trg=z, r1_weight=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, mixed = d_loss(nets, x, y, 1 - y, z_trg=z, r1_weight=1.0)
    assert torch.equal(mixed["r1"], fp32["r1"]) and torch.equal(mixed["real"], fp32["real"])
    assert not torch.equal(mixed["fake"], fp32["fake"])


def test_d_loss_runs_the_real_pass_on_d_r1_only_when_r1_applies(tiny_cfg):
    nets = dict(_nets(tiny_cfg).items())
    calls = []

    class Spy(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x, y):
            calls.append((self.name, x.requires_grad))
            return nets["D"](x, y)

    spies = {**nets, "D": Spy("D"), "D_r1": Spy("D_r1")}
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([0, 1])
    z = torch.randn(2, tiny_cfg.model.latent_dim)
    d_loss(spies, x, y, 1 - y, z_trg=z, r1_weight=1.0)
    assert calls == [("D_r1", True), ("D", False)]
    calls.clear()
    d_loss(spies, x, y, 1 - y, z_trg=z, r1_weight=0.0)  # lazy R1, a step without it
    assert calls == [("D", False), ("D", False)]


def test_cls_loss_domain_indices_is_cross_entropy_and_sets_skip_unknown():
    from xraystyle.training.losses import cls_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    y = torch.tensor([0, 1])
    assert cls_loss(logits, y).item() == pytest.approx(nn.functional.cross_entropy(logits, y).item())
    # finding sets: per-finding BCE over the known entries only (NaN = unknown, never "absent")
    y_set = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    known = nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, 0.5, 0.5]), torch.tensor([1.0, 0.0, 1.0]))
    assert cls_loss(logits, y_set).item() == pytest.approx(known.item(), rel=1e-6)
    # a confident wrong class costs more than a confident right one
    assert cls_loss(torch.tensor([[5.0, -5.0]]), torch.tensor([1])) > cls_loss(torch.tensor([[5.0, -5.0]]), torch.tensor([0]))


def test_lambda_cls_classifier_trained_on_real_by_d_and_on_fakes_by_g(tiny_cfg):
    torch.manual_seed(0)
    nets = build_networks(tiny_cfg.model, 2, d_classify=True)
    x = torch.randn(2, 1, 32, 32)
    y = torch.tensor([0, 1])
    z = torch.randn(2, tiny_cfg.model.latent_dim)
    loss, terms = d_loss(nets, x, y, 1 - y, z_trg=z, r1_weight=1.0, lambda_cls=0.5)
    assert set(terms) == {"real", "fake", "r1", "cls"}
    assert loss.item() == pytest.approx((terms["real"] + terms["fake"] + terms["r1"] + 0.5 * terms["cls"]).item(), rel=1e-5)
    loss.backward()
    assert nets["D"].cls.weight.grad.abs().sum() > 0
    nets.zero_grad(set_to_none=True)
    zs = (z, torch.randn(2, tiny_cfg.model.latent_dim))
    loss, t = g_loss(nets, x, y, 1 - y, z_trgs=zs, lambda_cls=2.0)
    expected = t["adv"] + t["sty"] - t["ds"] + t["cyc"] + 2.0 * t["cls"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in nets["G"].parameters())
    # the published objective has no classifier: D without one refuses to classify
    plain = build_networks(tiny_cfg.model, 2)
    assert plain["D"].cls is None
    with pytest.raises(RuntimeError, match="without a domain classifier"):
        d_loss(plain, x, y, 1 - y, z_trg=z, r1_weight=0.0, lambda_cls=1.0)


def test_lambda_cls_must_be_non_negative():
    from xraystyle.errors import ConfigError

    with pytest.raises(ConfigError, match="lambda_cls"):
        LossConfig(lambda_cls=-1.0)


def test_mismatched_labels_domains_and_sets():
    from xraystyle.training.losses import mismatched

    y_wrong, rows = mismatched(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0]))
    assert rows.tolist() == [True, False, True] and y_wrong.tolist() == [1, 1, 0]
    nan = float("nan")
    y_org = torch.tensor([[1.0, nan], [0.0, 1.0], [nan, 0.0]])
    y_trg = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    y_wrong, rows = mismatched(y_org, y_trg)
    # row 0: effusion flipped, the unknown second finding stays unknown; row 1: same set; row 2:
    # only an unknown differs, so no wrong label is known
    assert rows.tolist() == [True, False, False]
    assert y_wrong[0, 0] == 0.0 and torch.isnan(y_wrong[0, 1])


def test_lambda_mismatch_real_images_are_fake_for_other_domains_heads(tiny_cfg):
    torch.manual_seed(0)
    nets = build_networks(tiny_cfg.model, 2)
    x = torch.randn(4, 1, 32, 32)
    y_org, y_trg = torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 0])
    z = torch.randn(4, tiny_cfg.model.latent_dim)
    torch.manual_seed(1)
    base, t0 = d_loss(nets, x, y_org, y_trg, z_trg=z, r1_weight=0.0)
    torch.manual_seed(1)
    loss, t = d_loss(nets, x, y_org, y_trg, z_trg=z, r1_weight=0.0, lambda_mismatch=2.0)
    assert "mismatch" not in t0
    # the term is D's "fake" loss of the real images 0 and 3 under the other domain's head
    with torch.no_grad():
        out = nets["D"](x[[0, 3]], y_trg[[0, 3]])
    assert t["mismatch"].item() == pytest.approx(adv_loss(out, 0.0).item(), rel=1e-5)
    assert loss.item() == pytest.approx((base + 2.0 * t["mismatch"]).item(), rel=1e-5)
    # no row with a wrong label: the term is 0, not NaN
    _, t_same = d_loss(nets, x, y_org, y_org, z_trg=z, r1_weight=0.0, lambda_mismatch=1.0)
    assert t_same["mismatch"].item() == 0.0


def test_partner_rows_pairs_selected_rows_cyclically():
    from xraystyle.training.losses import partner_rows

    partner, paired = partner_rows(torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool))
    assert partner.tolist() == [2, 1, 3, 6, 4, 5, 0, 7]
    assert paired.tolist() == [True, False, True, True, False, False, True, False]
    # a lone selected row has nobody to compare with
    partner, paired = partner_rows(torch.tensor([0, 1, 0], dtype=torch.bool))
    assert partner.tolist() == [0, 1, 2] and not paired.any()


def test_extent_ignores_exposure_and_grows_with_the_edit():
    from xraystyle.training.losses import extent

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=g) * 1.2 - 0.6
    small, large = x.clone(), x.clone()
    small[..., 28:, :] += 0.5
    large[..., 20:, :] += 0.5
    assert extent(small, x) < extent(large, x)
    # the same finding on a darker, flatter exposure of the same image (a monotone map) counts the same
    def expose(t):
        return 0.5 * t - 0.3
    assert extent(expose(small), expose(x)).item() == pytest.approx(extent(small, x).item(), abs=0.01)


def test_lambda_extent_compares_one_style_on_two_normal_sources(tiny_cfg):
    """The term is the mean gap between the extent of G(x_i, s_i) - x_i and G(x_j, s_i) - x_j
    over rows that add a finding; it reaches G's weights, and without adding rows it is 0."""
    from xraystyle.training.losses import extent

    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 0], [1, 1, 0, 1])
    adding = torch.tensor([True, True, False, True])
    torch.manual_seed(1)
    base, t0 = g_loss(nets, x, y_org, y_trg, z_trgs=z)
    torch.manual_seed(1)
    loss, t = g_loss(nets, x, y_org, y_trg, z_trgs=z, lambda_extent=3.0, add_rows=adding)
    assert "extent" not in t0
    with torch.no_grad():
        s = nets["F"](z[0], y_trg)
        own = extent(nets["G"](x, s), x)
        other = x[[1, 3, 2, 0]]  # rows 0 -> 1 -> 3 -> 0 swap sources; row 2 does not add
        gap = (own - extent(nets["G"](other, s), other)).abs()
    assert t["extent"].item() == pytest.approx(gap[[0, 1, 3]].mean().item(), rel=1e-4)
    assert loss.item() == pytest.approx((base + 3.0 * t["extent"]).item(), rel=1e-4)
    for p in nets.parameters():
        p.grad = None
    loss.backward()
    assert nets["G"].conv_out[-1].weight.grad.abs().sum() > 0
    _, t_none = g_loss(nets, x, y_org, y_trg, z_trgs=z, lambda_extent=3.0,
                       add_rows=torch.tensor([False, False, True, False]))
    assert t_none["extent"].item() == 0.0


@pytest.mark.parametrize("key, value, invalid", [("lambda_extent", 1.0, -1.0), ("lambda_partial", 1.0, -1.0),
                                               ("cyc_detach", "adds", "removals"), ("lambda_geometry", 1.0, -1.0),
                                               ("lambda_laterality", 1.0, -1.0)])
def test_keys_that_need_a_normal_domain(key, value, invalid):
    """Refused without a 'normal' domain and for an invalid value, naming the key; accepted with one."""
    from xraystyle.config import from_dict
    from xraystyle.errors import ConfigError
    from xraystyle.training.config import RunConfig

    with pytest.raises(ConfigError, match=f"loss.{key}"):
        from_dict(RunConfig, {"domains": ["effusion", "nodule"], "loss": {key: value}})
    with pytest.raises(ConfigError, match=f"loss.{key}"):
        LossConfig(**{key: invalid})
    assert getattr(from_dict(RunConfig, {"domains": ["normal", "nodule"], "loss": {key: value}}).loss, key) == value


def test_same_label_partner_rows():
    from xraystyle.training.losses import same_label_partner

    y = torch.tensor([1, 1, 0, 0, 1])
    # each row is compared with the one before it (row 0 with the last)
    assert same_label_partner(y, None).tolist() == [True, True, False, True, False]
    usable = torch.tensor([True, True, False, True, True])
    assert same_label_partner(y, usable).tolist() == [True, True, False, False, False]
    nan = float("nan")
    sets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, nan], [1.0, nan]])
    assert same_label_partner(sets, None).tolist() == [False, True, False, False]


def test_lambda_style_match_judges_images_with_their_styles(tiny_cfg):
    """A style-aware D scores (real, E(real)) as real, (fake, s_trg) as fake and (real, a same-label
    neighbour's style) as fake; only D learns from it, and G's adversarial term pairs the fake
    with its style."""
    from xraystyle.training.losses import same_label_partner

    torch.manual_seed(0)
    nets = build_networks(tiny_cfg.model, 2, d_style=True)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    y_org, y_trg = torch.tensor([1, 1, 0, 1]), torch.tensor([0, 0, 1, 0])
    z = torch.randn(4, tiny_cfg.model.latent_dim)
    loss, t = d_loss(nets, x, y_org, y_trg, z_trg=z, r1_weight=0.0, lambda_style_match=2.0)
    with torch.no_grad():
        s_real = nets["E"](x, y_org)
        rows = same_label_partner(y_org, None)  # rows 1 and 3 (row 0's neighbour is row 3: also 1)
        out_swap = nets["D"](x, y_org, s=s_real.roll(1, 0))
        out_real = nets["D"](x, y_org, s=s_real)
    assert rows.tolist() == [True, True, False, False]
    assert t["style_match"].item() == pytest.approx(adv_loss(out_swap[rows], 0.0).item(), rel=1e-4)
    assert t["real"].item() == pytest.approx(adv_loss(out_real, 1.0).item(), rel=1e-4)
    for p in nets.parameters():
        p.grad = None
    loss.backward()
    assert nets["D"].style_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in nets["E"].parameters())
    # G's adversarial term depends on the style the fake is paired with
    g1, tg = g_loss(nets, x, y_org, y_trg, z_trgs=(z, z), d_style=True)
    with torch.no_grad():
        nets["D"].style_proj.weight.mul_(10)
    g2, tg2 = g_loss(nets, x, y_org, y_trg, z_trgs=(z, z), d_style=True)
    _, plain = g_loss(nets, x, y_org, y_trg, z_trgs=(z, z))
    assert tg["adv"].item() != pytest.approx(tg2["adv"].item())
    assert plain["adv"].item() != pytest.approx(tg2["adv"].item())


def test_code_mmd_is_the_unbiased_statistic_within_labels():
    from xraystyle.training.losses import code_mmd

    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(6, 4) + 0.5
    ya, yb = torch.zeros(5, dtype=torch.long), torch.zeros(6, dtype=torch.long)
    ones = lambda n: torch.ones(n, dtype=torch.bool)  # noqa: E731
    got = code_mmd(a, ya, ones(5), b, yb, ones(6))
    s = torch.cat([a, b])
    d2 = torch.cdist(s, s) ** 2
    scale = d2[~torch.eye(11, dtype=torch.bool)].median()
    k = lambda u, v: sum(torch.exp(-torch.cdist(u, v) ** 2 / (2 * f * f * scale)) for f in (0.5, 1, 2))  # noqa: E731
    kaa, kbb = k(a, a), k(b, b)
    want = (kaa.sum() - kaa.trace()) / 20 + (kbb.sum() - kbb.trace()) / 30 - 2 * k(a, b).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-4)
    # unbiased: two draws of one distribution score ~0 on average; a shifted one scores > 0
    y8, u8 = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]), ones(8)
    same = torch.stack([code_mmd(torch.randn(8, 8), y8, u8, torch.randn(8, 8), y8, u8) for _ in range(300)])
    assert abs(same.mean().item()) < 0.02
    assert code_mmd(torch.randn(8, 8), y8, u8, torch.randn(8, 8) + 1, y8, u8).item() > 0.2
    # codes of different labels are never compared; a label with < 2 usable rows on a side is left out
    assert code_mmd(a, ya, ones(5), b, yb + 1, ones(6)).item() == 0.0
    lone = torch.tensor([True, False, False, False, False])
    assert code_mmd(a, ya, lone, b, yb, ones(6)).item() == 0.0
    # rows of a label the other set lacks change nothing, not even the bandwidth
    mixed_b, mixed_yb = torch.cat([b, torch.randn(3, 4) + 9]), torch.cat([yb, torch.ones(3, dtype=torch.long)])
    assert code_mmd(a, ya, ones(5), mixed_b, mixed_yb, ones(9)).item() == pytest.approx(got.item(), rel=1e-5)
    # finding sets: an unknown never matches; identical codes give a finite gradient
    nan = float("nan")
    sets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, nan], [1.0, nan]])
    c = torch.randn(4, 4, requires_grad=True)
    v = code_mmd(c, sets, ones(4), c.detach().clone(), sets, ones(4))
    v.backward()
    assert v.item() < 0 and torch.isfinite(c.grad).all()  # unbiased: below 0 for one set twice
    assert c.grad[2:].abs().sum() == 0


def test_lambda_code_match_pulls_f_and_e_codes_together(tiny_cfg):
    """Latent phase only: the term compares F's codes with E's codes of the real references, is
    added with its weight and trains F and E (not G); deterministic-style rows are left out."""
    from xraystyle.training.losses import code_mmd

    torch.manual_seed(0)
    nets = _nets(tiny_cfg)
    x, x_ref = torch.rand(6, 1, 32, 32) * 2 - 1, torch.rand(6, 1, 32, 32) * 2 - 1
    y_org, y_trg = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([1, 1, 1, 0, 0, 0])
    z = torch.randn(6, tiny_cfg.model.latent_dim), torch.randn(6, tiny_cfg.model.latent_dim)
    torch.manual_seed(1)
    base, t0 = g_loss(nets, x, y_org, y_trg, z_trgs=z)
    torch.manual_seed(1)
    loss, t = g_loss(nets, x, y_org, y_trg, z_trgs=z, lambda_code_match=2.0, code_ref=(x_ref, y_trg, None))
    assert "code_match" not in t0
    with torch.no_grad():
        want = code_mmd(nets["F"](z[0], y_trg), y_trg, torch.ones(6, dtype=torch.bool),
                        nets["E"](x_ref, y_trg), y_trg, torch.ones(6, dtype=torch.bool))
    assert t["code_match"].item() == pytest.approx(want.item(), rel=1e-4)
    assert loss.item() == pytest.approx((base + 2.0 * t["code_match"]).item(), rel=1e-4)
    grads = {}
    for name, value in (("without", base), ("with", loss)):
        nets.zero_grad(set_to_none=True)
        value.backward()
        grads[name] = {n: [p.grad.clone() for p in nets[n].parameters() if p.grad is not None] for n in "GFE"}
    for n, changed in (("G", False), ("F", True), ("E", True)):
        same = all(torch.allclose(u, v, atol=1e-7) for u, v in zip(grads["without"][n], grads["with"][n]))
        assert same != changed, n
    # reference-guided: no latent code, no term; deterministic-style rows weigh 0
    _, t_ref = g_loss(nets, x, y_org, y_trg, x_refs=(x_ref, x_ref), lambda_code_match=2.0,
                      code_ref=(x_ref, y_trg, None))
    assert "code_match" not in t_ref
    fixed = torch.ones(6, dtype=torch.bool)
    _, t_fixed = g_loss(nets, x, y_org, y_trg, z_trgs=z, lambda_code_match=2.0, code_ref=(x_ref, y_trg, fixed),
                        fixed_trg=fixed)
    assert t_fixed["code_match"].item() == 0.0
    with pytest.raises(Exception, match="loss.lambda_code_match"):
        LossConfig(lambda_code_match=-1.0)


def test_style_projection_only_when_built():
    from xraystyle.paths import resolve_config
    from xraystyle.training.config import load_config

    cfg = load_config(resolve_config("tiny"))
    plain = build_networks(cfg.model, 2)
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([0, 1])
    with pytest.raises(RuntimeError, match="style projection"):
        plain["D"](x, y, s=torch.randn(2, cfg.model.style_dim))
    assert plain["D"].style_proj is None
    with pytest.raises(Exception, match="loss.lambda_style_match"):
        LossConfig(lambda_style_match=-1.0)


def test_lambda_id_asks_g_to_leave_an_image_with_its_own_style_unchanged(tiny_cfg):
    """The term is |G(x, s_org) - x| with s_org E's code of x, or the deterministic normal style on
    its rows; it is added with its weight, changes G's and E's gradients and is absent at 0."""
    from xraystyle.models.style import style_code

    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    fixed_org = torch.tensor([True, True, False, False])
    torch.manual_seed(1)
    base, t0 = g_loss(nets, x, y_org, y_trg, z_trgs=z, fixed_org=fixed_org)
    torch.manual_seed(1)
    loss, t = g_loss(nets, x, y_org, y_trg, z_trgs=z, fixed_org=fixed_org, lambda_id=2.0)
    assert "id" not in t0
    with torch.no_grad():
        s_own = style_code(nets, y_org, x_ref=x, fixed=fixed_org)
        want = (nets["G"](x, s_own) - x).abs().mean()
        # the normal rows use F(0, normal), not E's code: a different style gives another value
        other = (nets["G"](x, nets["E"](x, y_org)) - x).abs().mean()
    assert t["id"].item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(other.item() - want.item()) > 1e-6
    assert loss.item() == pytest.approx((base + 2.0 * t["id"]).item(), rel=1e-5)
    grads = {}
    for name, value in (("without", base), ("with", loss)):
        nets.zero_grad(set_to_none=True)
        value.backward()
        grads[name] = {n: [p.grad.clone() for p in nets[n].parameters() if p.grad is not None] for n in "GE"}
    for n in "GE":
        assert not all(torch.allclose(u, v, atol=1e-7) for u, v in zip(grads["without"][n], grads["with"][n])), n
    # a generator that returns its input scores 0
    class Same(nn.Module):
        def forward(self, x, s):
            return x

    _, t_same = g_loss({**nets, "G": Same()}, x, y_org, y_trg, z_trgs=z, lambda_id=1.0)
    assert t_same["id"].item() == 0.0
    with pytest.raises(Exception, match="loss.lambda_id"):
        LossConfig(lambda_id=-0.5)


def test_cyc_rows_weigh_the_cycle_per_row(tiny_cfg):
    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    cyc = {}
    for name, rows in (("plain", None), ("ones", torch.ones(4)), ("adds", torch.tensor([1.0, 1, 0, 0])),
                       ("removals", torch.tensor([0.0, 0, 1, 1]))):
        torch.manual_seed(1)
        cyc[name] = g_loss(nets, x, y_org, y_trg, z_trgs=z, cyc_rows=rows)[1]["cyc"].item()
    assert cyc["ones"] == pytest.approx(cyc["plain"], rel=1e-5)
    assert cyc["adds"] + cyc["removals"] == pytest.approx(cyc["plain"], rel=1e-5)
    assert min(cyc["adds"], cyc["removals"]) > 0
    with pytest.raises(Exception, match="loss.cyc_normal_weight"):
        LossConfig(cyc_normal_weight=-1.0)
    from xraystyle.config import from_dict
    from xraystyle.errors import ConfigError
    from xraystyle.training.config import RunConfig

    with pytest.raises(ConfigError, match="loss.cyc_normal_weight"):
        from_dict(RunConfig, {"domains": ["effusion", "nodule"], "loss": {"cyc_normal_weight": 0.0}})
    assert from_dict(RunConfig, {"domains": ["effusion", "nodule"]}).loss.cyc_normal_weight == 1.0


def test_cyc_noise_is_added_to_the_fake_before_the_cycles_second_pass(tiny_cfg):
    """The cycle term with noise n is |G(x_fake + n, s_org) - x_real|; zero noise is the plain
    cycle; the fake's own path (the adversarial term) does not see the noise."""
    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    noise = 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    out = {}
    for name, n in (("plain", None), ("zero", torch.zeros_like(x)), ("noisy", noise)):
        torch.manual_seed(1)
        out[name] = g_loss(nets, x, y_org, y_trg, z_trgs=z, cyc_noise=n)[1]
    assert out["zero"]["cyc"].item() == out["plain"]["cyc"].item()
    assert out["noisy"]["adv"].item() == out["plain"]["adv"].item()
    torch.manual_seed(1)
    s_trg = nets["F"](z[0], y_trg)
    with torch.no_grad():
        x_fake = nets["G"](x, s_trg)
        s_org = nets["E"](x, y_org)
        want = (nets["G"](x_fake + noise, s_org) - x).abs().mean()
    assert out["noisy"]["cyc"].item() == pytest.approx(want.item(), rel=1e-5)
    assert out["noisy"]["cyc"].item() != pytest.approx(out["plain"]["cyc"].item(), rel=1e-3)
    with pytest.raises(Exception, match="loss.cyc_noise"):
        LossConfig(cyc_noise=-0.1)


def test_sty_target_fixed_stops_only_the_style_terms_gradient_into_the_target(tiny_cfg):
    """loss.e_ref: with E updated in the reference phase, the style reconstruction reaches E
    through the fake alone: the gradient E gets without the fixed target exceeds the fixed one's
    by exactly that of |sg(E(x_fake)) - E(x_ref)|; the value is the same."""
    nets, x, y_org, y_trg, _ = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    x_refs = (torch.rand_like(x) * 2 - 1, torch.rand_like(x) * 2 - 1)
    E = nets["E"]

    def e_grad(loss):
        E.zero_grad(set_to_none=True)
        loss.backward()
        return torch.cat([p.grad.reshape(-1) for p in E.parameters()])

    free, t_free = g_loss(nets, x, y_org, y_trg, x_refs=x_refs)
    g_free = e_grad(free)
    fixed, t_fixed = g_loss(nets, x, y_org, y_trg, x_refs=x_refs, sty_target_fixed=True)
    g_fixed = e_grad(fixed)
    assert fixed.item() == free.item() and t_fixed["sty"].item() == t_free["sty"].item()
    s_trg = E(x_refs[0], y_trg)
    with torch.no_grad():
        s_pred = E(nets["G"](x, s_trg), y_trg)
    target_path = e_grad((s_pred - s_trg).abs().mean())
    assert target_path.abs().sum() > 0
    assert torch.allclose(g_free - g_fixed, target_path, atol=1e-6)


def test_soft_boxes_are_boxes_of_the_drawn_centre_and_size():
    from xraystyle.training.losses import soft_boxes

    u = torch.tensor([[0.5, 0.5, 0.0, 1.0], [0.9, 0.1, 0.5, 0.5]])
    m = soft_boxes(u, 64)
    assert m.shape == (2, 1, 64, 64) and m.min() >= 0 and m.max() <= 1
    rows, cols = (m[0, 0] > 0.5).nonzero().unbind(1)
    # centre 0.5, half-height 10 % and half-width 25 % of 64 px: rows 26-37, columns 16-47
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (26, 37, 16, 47)
    rows, cols = (m[1, 0] > 0.5).nonzero().unbind(1)
    assert rows.max().item() == 63 and cols.min().item() == 0  # cut by the border
    assert 0.1 < m[0, 0, 32, 16].item() < 0.9  # the edge is ramped, not a step


def test_lambda_partial_judges_removals_mixed_with_their_source_as_fake(tiny_cfg):
    """The term is the BCE against 'fake' of mask * x_real + (1 - mask) * x_fake under the target's
    head, over the rows that remove (source not normal, target normal); other rows weigh 0."""
    from xraystyle.training.losses import soft_boxes

    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 1, 1, 0], [1, 0, 0, 1])  # rows 1, 2 remove
    mask = soft_boxes(torch.rand(4, 4, generator=torch.Generator().manual_seed(2)), 32)
    rows = torch.tensor([0.0, 1.0, 1.0, 0.0])
    torch.manual_seed(1)
    base, t0 = d_loss(nets, x, y_org, y_trg, z_trg=z[0], r1_weight=0.0)
    torch.manual_seed(1)
    loss, t = d_loss(nets, x, y_org, y_trg, z_trg=z[0], r1_weight=0.0, lambda_partial=2.0, partial=(mask, rows))
    assert "partial" not in t0
    with torch.no_grad():
        x_fake = nets["G"](x, nets["F"](z[0], y_trg))
        x_mix = mask * x + (1 - mask) * x_fake
        want = adv_loss(nets["D"](x_mix[1:3], y_trg[1:3]), 0.0)
    assert t["partial"].item() == pytest.approx(want.item(), rel=1e-5)
    assert loss.item() == pytest.approx((base + 2.0 * t["partial"]).item(), rel=1e-5)
    _, t_none = d_loss(nets, x, y_org, y_trg, z_trg=z[0], r1_weight=0.0, lambda_partial=1.0,
                       partial=(mask, torch.zeros(4)))
    assert t_none["partial"].item() == 0.0


def test_cyc_fixed_rows_hold_the_cycles_first_pass_on_those_rows_only(tiny_cfg):
    """loss.cyc_detach: the cycle's value is unchanged; on a held row the cycle sends no gradient
    through the first pass (into the fake), on the others it does."""
    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    fake_grads = {}
    real_g = nets["G"]

    class Spy(nn.Module):  # records the gradient reaching each first-pass fake
        def __init__(self):
            super().__init__()
            self.g, self.calls = real_g, 0

        def forward(self, x_in, s):
            out = self.g(x_in, s)
            if self.calls == 0 and out.requires_grad:
                out.register_hook(lambda g: fake_grads.setdefault("g", g))
            self.calls += 1
            return out

    terms = {}
    for name, rows in (("plain", None), ("held", torch.tensor([True, False, False, True]))):
        fake_grads.clear()
        spy = Spy()
        torch.manual_seed(1)
        loss, terms[name] = g_loss({**nets, "G": spy}, x, y_org, y_trg, z_trgs=z, lambda_sty=0.0, lambda_ds=0.0,
                                   cyc_fixed_rows=rows)
        loss.backward()
        terms[name]["grad"] = fake_grads["g"].flatten(1).abs().sum(1)
    assert terms["held"]["cyc"].item() == terms["plain"]["cyc"].item()
    # rows 1 and 2 keep the cycle's gradient through the fake; rows 0 and 3 lose it
    assert torch.allclose(terms["held"]["grad"][[1, 2]], terms["plain"]["grad"][[1, 2]])
    assert (terms["held"]["grad"][[0, 3]] < terms["plain"]["grad"][[0, 3]]).all()


def test_cyc_detach_all_needs_no_normal_domain():
    from xraystyle.config import from_dict
    from xraystyle.training.config import RunConfig

    assert from_dict(RunConfig, {"domains": ["effusion", "nodule"], "loss": {"cyc_detach": "all"}}).loss.cyc_detach == "all"


def test_lambda_ds_extent_rewards_two_styles_changing_the_source_by_different_amounts(tiny_cfg):
    """The term is the mean |extent(G(x, s1), x) - extent(G(x, s2), x)| and is subtracted (a
    diversity); with one style for both (a fixed target style) it is 0."""
    from xraystyle.training.losses import extent

    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 0], [1, 1, 0, 1])
    torch.manual_seed(1)
    base, t0 = g_loss(nets, x, y_org, y_trg, z_trgs=z)
    torch.manual_seed(1)
    loss, t = g_loss(nets, x, y_org, y_trg, z_trgs=z, lambda_ds_extent=2.0)
    assert "ds_extent" not in t0
    with torch.no_grad():
        sizes = [extent(nets["G"](x, nets["F"](zz, y_trg)), x) for zz in z]
    assert t["ds_extent"].item() == pytest.approx((sizes[0] - sizes[1]).abs().mean().item(), rel=1e-4)
    assert t["ds_extent"].item() > 0
    assert loss.item() == pytest.approx((base - 2.0 * t["ds_extent"]).item(), rel=1e-4)
    _, t_same = g_loss(nets, x, y_org, y_trg, z_trgs=(z[0], z[0]), lambda_ds_extent=2.0)
    assert t_same["ds_extent"].item() == 0.0


def test_change_geometry_says_where_an_edit_changed_the_image_not_how_much():
    """A distribution over the 8 x 2 grid (height bands x image halves): an edit confined to the
    lowest band of the image's left half puts (almost) all its mass in that cell, whatever its size."""
    from xraystyle.training.losses import GEOMETRY_CELLS, GEOMETRY_GRID, change_geometry

    before = torch.zeros(2, 1, 32, 32)
    after = before.clone()
    after[0, :, 28:, :16] = 0.5  # lowest band (rows 28-31), image left half
    after[1, :, 28:, :16] = 0.05
    g = change_geometry(after, before)
    assert g.shape == (2, GEOMETRY_CELLS) and torch.allclose(g.sum(1), torch.ones(2))
    cell = (GEOMETRY_GRID[0] - 1) * GEOMETRY_GRID[1] + 0  # row-major: last band, left half
    assert (g[:, cell] > 0.99).all()
    assert torch.allclose(g[0], g[1], atol=1e-3)  # ten times the change, the same geometry
    right = before.clone()
    right[:, :, :4, 16:] = 1.0  # top band, right half
    assert (change_geometry(right, before)[:, 1] > 0.99).all()


def test_lambda_geometry_adds_follow_the_style_and_e_predicts_removals(tiny_cfg):
    """geometry_g is KL(the style's geometry || the add's change geometry) over the adding rows,
    geometry_e KL(the removal's change geometry || E's code's geometry) over the removing rows;
    the style's reading reaches neither G's term's gradient (F gets none from it), E's term
    trains E only, and without removal rows there is no E term."""
    from xraystyle.models.style import style_code
    from xraystyle.training.losses import change_geometry, style_geometry

    nets, x, y_org, y_trg, z = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    adds, removals = torch.tensor([True, False, False, False]), torch.tensor([False, False, True, True])
    fixed = torch.tensor([False, False, True, True])  # the normal targets' deterministic style
    torch.manual_seed(1)
    base, t0 = g_loss(nets, x, y_org, y_trg, z_trgs=z, fixed_trg=fixed)
    torch.manual_seed(1)
    loss, t = g_loss(nets, x, y_org, y_trg, z_trgs=z, fixed_trg=fixed, lambda_geometry=2.0,
                     geometry_rows=(adds, removals))
    assert "geometry_g" not in t0 and "geometry_e" not in t0
    with torch.no_grad():
        s_trg = style_code(nets, y_trg, z=z[0], fixed=fixed)
        x_fake = nets["G"](x, s_trg)
        p = style_geometry(s_trg).exp()
        kl_g = (p * (p.log() - change_geometry(x_fake, x).log())).sum(1)
        q = change_geometry(x, x_fake)
        kl_e = (q * (q.log() - style_geometry(nets["E"](x, y_org)))).sum(1)
    assert t["geometry_g"].item() == pytest.approx(kl_g[0].item(), rel=1e-4)
    assert t["geometry_e"].item() == pytest.approx(kl_e[2:].mean().item(), rel=1e-4)
    assert loss.item() == pytest.approx((base + 2.0 * (t["geometry_g"] + t["geometry_e"])).item(), rel=1e-4)
    _, t_no_e = g_loss(nets, x, y_org, y_trg, z_trgs=z, fixed_trg=fixed, lambda_geometry=2.0,
                       geometry_rows=(torch.zeros(4, dtype=torch.bool), None))
    assert t_no_e["geometry_g"].item() == 0.0 and "geometry_e" not in t_no_e

    # The terms' gradients. G's term reaches G; the style's reading is a constant of it, so with a
    # G that ignores its style F gets nothing from the term. E's term reaches E alone (the
    # removal's geometry is a constant).
    real_g = nets["G"]

    class Styleless(nn.Module):
        def forward(self, x_in, s):
            return real_g(x_in, torch.zeros_like(s))

    def grads(g=real_g, **kw):
        for k in "GFE":
            nets[k].zero_grad(set_to_none=True)
        torch.manual_seed(1)
        g_loss({**nets, "G": g}, x, y_org, y_trg, z_trgs=z, fixed_trg=fixed, **kw)[0].backward()
        return {k: torch.cat([p.grad.flatten() for p in nets[k].parameters() if p.grad is not None])
                for k in "GFE"}

    plain = grads()
    with_g = grads(lambda_geometry=2.0, geometry_rows=(adds, None))
    assert not torch.allclose(with_g["G"], plain["G"])
    styleless = Styleless()
    assert torch.allclose(grads(styleless, lambda_geometry=2.0, geometry_rows=(adds, None))["F"],
                          grads(styleless)["F"], atol=1e-7)
    with_e = grads(lambda_geometry=2.0, geometry_rows=(torch.zeros(4, dtype=torch.bool), removals))
    assert torch.allclose(with_e["G"], plain["G"], atol=1e-7) and torch.allclose(with_e["F"], plain["F"], atol=1e-7)
    assert not torch.allclose(with_e["E"], plain["E"])


def test_laterality_says_which_half_of_the_image_changed_not_how_much():
    from xraystyle.training.losses import laterality

    before = torch.zeros(4, 1, 32, 33)  # odd width: the middle column counts for neither half
    after = before.clone()
    after[0, :, 20:, :10] = 0.5  # image left half only
    after[1, :, 20:, :10] = 0.05  # ten times less
    after[2, :, 20:, 23:] = 0.5  # image right half only
    after[3, :, 20:, :10] = after[3, :, 20:, 23:] = 0.3  # both halves alike
    after[:, :, :, 16] += 1.0  # the middle column
    lat = laterality(after, before)
    assert lat.shape == (4,)
    assert lat[:2].tolist() == pytest.approx([1.0, 1.0]) and lat[2].item() == pytest.approx(0.0)
    assert lat[3].item() == pytest.approx(0.5)
    assert laterality(before, after).tolist() == pytest.approx(lat.tolist())  # the change, either way
    # squared: a strong local change outweighs a faint one spread over the other half
    spread = before.clone()
    spread[0, :, 24:, :8] = 0.5
    spread[0, :, :, 17:] = 0.05
    assert laterality(spread[:1], before[:1]).item() > 0.9


def test_lambda_laterality_adds_change_the_side_where_the_references_removal_does(tiny_cfg):
    """The term is |laterality(add) - laterality(G's removal of the reference with the source's
    style)| over the adding rows; the removal is a constant of it, the add's gradient reaches G
    (and E through E(x_ref)), and it needs references."""
    from xraystyle.models.style import style_code
    from xraystyle.training.losses import laterality

    nets, x, y_org, y_trg, _ = _four_rows(tiny_cfg, [0, 0, 1, 0], [1, 1, 0, 0])
    x_refs = (torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1)
    fixed_org = torch.tensor([True, True, False, True])  # normal sources: the deterministic style
    rows = torch.tensor([True, True, False, False])
    kw = {"x_refs": x_refs, "fixed_org": fixed_org}
    base, t0 = g_loss(nets, x, y_org, y_trg, **kw)
    loss, t = g_loss(nets, x, y_org, y_trg, **kw, lambda_laterality=3.0, laterality_rows=rows)
    assert "laterality" not in t0
    with torch.no_grad():
        side_ref = laterality(x_refs[0], nets["G"](x_refs[0], style_code(nets, y_org, x_ref=x, fixed=fixed_org)))

    def add_side_gap():  # per row, with the add's graph
        return (laterality(nets["G"](x, style_code(nets, y_trg, x_ref=x_refs[0])), x) - side_ref).abs()

    with torch.no_grad():
        gap = add_side_gap()
    assert t["laterality"].item() == pytest.approx(gap[:2].mean().item(), rel=1e-4)
    assert loss.item() == pytest.approx((base + 3.0 * t["laterality"]).item(), rel=1e-4)
    _, t_none = g_loss(nets, x, y_org, y_trg, **kw, lambda_laterality=3.0, laterality_rows=torch.zeros(4, dtype=torch.bool))
    assert t_none["laterality"].item() == 0.0
    _, t_latent = g_loss(nets, x, y_org, y_trg, z_trgs=(torch.randn(4, tiny_cfg.model.latent_dim),) * 2,
                         lambda_laterality=3.0, laterality_rows=rows)
    assert "laterality" not in t_latent  # no reference, no side to take

    def grads(**extra):
        for k in "GFE":
            nets[k].zero_grad(set_to_none=True)
        g_loss(nets, x, y_org, y_trg, **kw, **extra)[0].backward()
        return {k: torch.cat([p.grad.flatten() for p in nets[k].parameters() if p.grad is not None]) for k in "GE"}

    plain, with_lat = grads(), grads(lambda_laterality=3.0, laterality_rows=rows)
    assert not torch.allclose(with_lat["G"], plain["G"]) and not torch.allclose(with_lat["E"], plain["E"])
    # What the term adds to G's gradient is the gradient of the add's side alone: the reference's
    # removal is a constant.
    for k in "GFE":
        nets[k].zero_grad(set_to_none=True)
    (3.0 * add_side_gap()[:2].mean()).backward()
    hand = torch.cat([p.grad.flatten() for p in nets["G"].parameters() if p.grad is not None])
    assert torch.allclose(with_lat["G"] - plain["G"], hand, atol=1e-6)


def test_laterality_gap_in_log_odds_charges_a_faint_change_on_the_wrong_side():
    """loss.laterality_scale logit: the shares' log-odds, clamped at LOGIT_FLOOR, their gap scaled
    to [0, 1]; against a one-sided reference a 90 / 10 add pays more than in shares, an even split
    the same, and the add's gradient flows."""
    import math

    from xraystyle.training.losses import LOGIT_FLOOR, laterality, laterality_gap

    before = torch.zeros(3, 1, 8, 8)
    x_ref = torch.zeros(3, 1, 8, 8)
    x_ref[:, :, 4:, :4] = 1.0  # the reference's finding: image left half only

    class Remove(nn.Module):  # "G": takes the reference's finding away, whatever the style
        def forward(self, x, s):
            return torch.zeros_like(x)

    after = before.clone()
    after[0, :, 4:, :4] = 1.0  # the reference's side alone
    after[1, :, 4:, :4] = 1.0
    after[1, :, 4:, 4:] = 1 / 3  # a ninth of the squared change on the other side
    after[2, :, 4:, :] = 1.0  # both sides alike
    after.requires_grad_(True)
    rows = torch.tensor([True, True, True])
    share = laterality(after, before).detach()
    assert share.tolist() == pytest.approx([1.0, 0.9, 0.5])

    def gap(i, logit):
        pick = torch.zeros(3, dtype=torch.bool)
        pick[i] = True
        return laterality_gap(Remove(), before, after, x_ref, None, pick, logit=logit).item()

    top = math.log((1 - LOGIT_FLOOR) / LOGIT_FLOOR)
    assert gap(0, True) == pytest.approx(0.0, abs=1e-6)
    assert gap(1, True) == pytest.approx((top - math.log(0.9 / 0.1)) / (2 * top), rel=1e-4)
    assert gap(2, True) == pytest.approx(0.5, rel=1e-4) and gap(2, False) == pytest.approx(0.5, rel=1e-4)
    assert gap(1, True) > 1.2 * gap(1, False)  # 0.127 against 0.100: the faint spill costs more
    loss = laterality_gap(Remove(), before, after, x_ref, None, rows, logit=True)
    loss.backward()
    assert after.grad.abs().sum() > 0


def test_laterality_topk_pool_counts_a_small_change_on_the_wrong_side():
    """loss.laterality_pool topk: each half is the mean of its largest LATERALITY_TOPK squared
    changes, so a small strong change on the other side moves the share well off one-sided where
    the sum pool hardly moves it; a one-sided change stays one-sided; the gap passes it on."""
    from xraystyle.errors import ConfigError
    from xraystyle.training.losses import LATERALITY_TOPK, laterality, laterality_gap

    before = torch.zeros(2, 1, 32, 32)
    after = before.clone()
    after[:, :, 16:, :16] = 1.0  # a large change: the image's left half, 256 pixels
    after[1, :, 30:, 30:] = 1.0  # and a small one on the right, 4 pixels (the top-k's 2 % of 512 is 10)
    assert round(LATERALITY_TOPK * 512) == 10
    assert laterality(after, before).tolist() == pytest.approx([1.0, 256 / 260])
    assert laterality(after, before, "topk").tolist() == pytest.approx([1.0, 1 / (1 + 0.4)])

    class Remove(nn.Module):  # "G": takes the reference's finding (image left half) away
        def forward(self, x, s):
            return torch.zeros_like(x)

    rows = torch.tensor([False, True])
    after.requires_grad_(True)
    gap = laterality_gap(Remove(), before, after, after.detach()[:1].expand(2, -1, -1, -1), None, rows, pool="topk")
    assert gap.item() == pytest.approx(1 - 1 / 1.4, rel=1e-5)
    gap.backward()
    assert after.grad[1, :, 30:, 30:].abs().sum() > 0  # the wrong side's change is charged
    with pytest.raises(ConfigError, match="loss.laterality_pool"):
        LossConfig(laterality_pool="max")


def test_laterality_grid_compares_where_the_two_edits_change_and_is_the_share_gap_at_one_by_two():
    """loss.laterality_grid: the total-variation distance between the two edits' squared change
    pooled over the grid; at (1, 2) it equals the share gap; a finding drawn at the reference's
    side but another height costs under a grid of bands and nothing in shares."""
    from xraystyle.errors import ConfigError
    from xraystyle.training.losses import change_cells, laterality_gap

    class Remove(nn.Module):  # "G": takes the reference's finding away
        def forward(self, x, s):
            return torch.zeros_like(x)

    before = torch.zeros(3, 1, 32, 32)
    x_ref = before.clone()
    x_ref[:, :, 24:, :16] = 1.0  # low in the image's left half
    after = before.clone()
    after[0, :, 24:, :16] = 1.0  # the same place
    after[1, :, 8:16, :16] = 1.0  # the same side, higher
    after[2, :, 24:, 16:] = 1.0  # the other side
    pick = [torch.arange(3) == i for i in range(3)]

    def gap(i, grid):
        return laterality_gap(Remove(), before, after, x_ref, None, pick[i], grid=grid).item()

    assert [gap(i, (1, 2)) for i in range(3)] == pytest.approx([0.0, 0.0, 1.0])
    assert [gap(i, (4, 2)) for i in range(3)] == pytest.approx([0.0, 1.0, 1.0])
    tv = 0.5 * (change_cells(after, before, (1, 2)) - change_cells(x_ref, before, (1, 2))).abs().sum(1)
    assert tv.tolist() == pytest.approx([gap(i, (1, 2)) for i in range(3)])
    for bad in ((1, 3), (0, 2), (1, 1)):
        with pytest.raises(ConfigError, match="loss.laterality_grid"):
            LossConfig(laterality_grid=bad)
    with pytest.raises(ConfigError, match="loss.laterality_grid"):
        LossConfig(laterality_grid=(4, 2), laterality_scale="logit")


def test_lambda_ref_extent_asks_an_add_to_be_as_large_as_the_references_removal(tiny_cfg):
    """The term is |log((extent(add) + floor) / (extent(ref, G's removal) + floor))| over the adding
    rows, in the reference phase only; the removal is made once for both reference terms."""
    from xraystyle.errors import ConfigError
    from xraystyle.models.style import style_code
    from xraystyle.training.losses import EXTENT_FLOOR, extent

    nets, x, y_org, y_trg, _ = _four_rows(tiny_cfg, [0, 0, 1, 0], [1, 1, 0, 0])
    x_refs = (torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1)
    fixed_org = torch.tensor([True, True, False, True])
    rows = torch.tensor([True, True, False, False])
    kw = {"x_refs": x_refs, "fixed_org": fixed_org}
    base, _ = g_loss(nets, x, y_org, y_trg, **kw)
    loss, t = g_loss(nets, x, y_org, y_trg, **kw, lambda_ref_extent=2.0, laterality_rows=rows)
    with torch.no_grad():
        s_org = style_code(nets, y_org, x_ref=x, fixed=fixed_org)
        x_fake = nets["G"](x, style_code(nets, y_trg, x_ref=x_refs[0]))
        ratio = (extent(x_fake, x) + EXTENT_FLOOR) / (extent(x_refs[0], nets["G"](x_refs[0], s_org)) + EXTENT_FLOOR)
    assert t["ref_extent"].item() == pytest.approx(ratio.log().abs()[:2].mean().item(), rel=1e-4)
    assert loss.item() == pytest.approx((base + 2.0 * t["ref_extent"]).item(), rel=1e-4)
    _, t_latent = g_loss(nets, x, y_org, y_trg, z_trgs=(torch.randn(4, tiny_cfg.model.latent_dim),) * 2,
                         lambda_ref_extent=2.0, laterality_rows=rows)
    assert "ref_extent" not in t_latent
    with pytest.raises(ConfigError, match="loss.lambda_ref_extent"):
        LossConfig(lambda_ref_extent=-1.0)


def test_laterality_scale_must_be_share_or_logit():
    from xraystyle.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.laterality_scale"):
        LossConfig(laterality_scale="odds")
    assert LossConfig(laterality_scale="logit").laterality_scale == "logit"


def test_e_laterality_loss_is_the_terms_value_and_teaches_e_through_the_reference_alone(tiny_cfg):
    """E's own update (loss.laterality_e) reads the same gap as the G phase's term; with G frozen
    its gradient reaches E, through E(x_ref) only."""
    from xraystyle.training.freeze import frozen
    from xraystyle.training.losses import e_laterality_loss

    nets, x, y_org, y_trg, _ = _four_rows(tiny_cfg, [0, 0, 1, 0], [1, 1, 0, 0])
    x_refs = (torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1)
    fixed_org = torch.tensor([True, True, False, True])
    rows = torch.tensor([True, True, False, False])
    _, t = g_loss(nets, x, y_org, y_trg, x_refs=x_refs, fixed_org=fixed_org, lambda_laterality=1.0, laterality_rows=rows)
    with frozen([nets["G"], nets["F"], nets["D"]]):
        loss_e = e_laterality_loss(nets, x, y_org, y_trg, x_refs[0], rows, fixed_org=fixed_org)
        loss_e.backward()
    assert loss_e.item() == pytest.approx(t["laterality"].item(), rel=1e-5)
    assert all(p.grad is None for k in "GFD" for p in nets[k].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets["E"].parameters())
    # the source's normal style (E(x_real) where it is not the fixed one) is a constant
    nets["E"].zero_grad(set_to_none=True)
    x_other = torch.rand(4, 1, 32, 32) * 2 - 1
    with frozen([nets["G"], nets["F"], nets["D"]]):
        a = torch.autograd.grad(e_laterality_loss(nets, x, y_org, y_trg, x_refs[0], rows), list(nets["E"].parameters()),
                                allow_unused=True)
        b = torch.autograd.grad(e_laterality_loss(nets, x, y_org, y_trg, x_other, rows), list(nets["E"].parameters()),
                                allow_unused=True)
    assert any(ga is not None and gb is not None and not torch.allclose(ga, gb) for ga, gb in zip(a, b))


def test_e_code_only_teaches_e_through_the_style_targets_pass_alone(tiny_cfg):
    """loss.e_ref_code: E's weights get exactly the gradient that reaches its pass on the
    reference, E(x_ref); the loss and G's gradient are those of E learning from every pass."""
    nets, x, y_org, y_trg, _ = _four_rows(tiny_cfg, [0, 0, 1, 1], [1, 1, 0, 0])
    x_refs = (torch.rand_like(x) * 2 - 1, torch.rand_like(x) * 2 - 1)
    E, G = nets["E"], nets["G"]
    calls = []

    class Recording(nn.Module):  # E's passes in order, each output's gradient kept
        def __init__(self):
            super().__init__()
            self.e = E

        def forward(self, x_in, y):
            s = self.e(x_in, y)
            if s.requires_grad:
                s.retain_grad()
            calls.append((x_in, y, s))
            return s

    recorded = {**nets, "E": Recording()}
    kw = dict(x_refs=x_refs, fixed_org=torch.tensor([True, True, False, False]), sty_target_fixed=True,
              lambda_laterality=1.0, laterality_rows=torch.tensor([True, True, False, False]))

    def grads(loss):
        for net in (E, G):
            net.zero_grad(set_to_none=True)
        loss.backward()
        return [torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.grad is not None]) for net in (E, G)]

    every, _ = g_loss(recorded, x, y_org, y_trg, **kw)
    e_every, g_every = grads(every)
    calls.clear()
    code, _ = g_loss(recorded, x, y_org, y_trg, e_code_only=True, **kw)
    e_code, g_code = grads(code)
    x_ref, y_ref, s_ref = calls[0]  # the style target's pass comes first
    assert x_ref is x_refs[0]
    expected = torch.autograd.grad(E(x_ref, y_ref), list(E.parameters()), grad_outputs=s_ref.grad)
    assert torch.allclose(e_code, torch.cat([g.reshape(-1) for g in expected]), atol=1e-7)
    assert not torch.allclose(e_code, e_every, atol=1e-6)  # the fake's and the source's passes count there
    assert code.item() == every.item() and torch.equal(g_code, g_every)


def test_e_ref_code_needs_e_ref():
    from xraystyle.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.e_ref_code.*e_ref"):
        LossConfig(e_ref_code=True)
    assert LossConfig(e_ref=True, e_ref_code=True).e_ref_code


def test_laterality_e_needs_the_term_and_excludes_e_ref():
    from xraystyle.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.laterality_e.*lambda_laterality"):
        LossConfig(laterality_e=True)
    with pytest.raises(ConfigError, match="loss.laterality_e.*e_ref"):
        LossConfig(laterality_e=True, lambda_laterality=1.0, e_ref=True)
    assert LossConfig(laterality_e=True, lambda_laterality=1.0).laterality_e


def test_lambda_geometry_needs_a_style_that_holds_the_grid():
    from xraystyle.config import from_dict
    from xraystyle.errors import ConfigError
    from xraystyle.training.config import RunConfig
    from xraystyle.training.losses import GEOMETRY_CELLS

    with pytest.raises(ConfigError, match="model.style_dim >= 16"):
        from_dict(RunConfig, {"model": {"style_dim": GEOMETRY_CELLS - 1}, "loss": {"lambda_geometry": 1.0}})
    assert from_dict(RunConfig, {"model": {"style_dim": GEOMETRY_CELLS}, "loss": {"lambda_geometry": 1.0}})
