import copy

import pytest
import torch

from xraystyle.training.accel import make_accel
from xraystyle.training.state import build_state
from xraystyle.training.step import train_step


def run(cfg, fetcher, steps, state=None):
    accel = make_accel("reference", torch.device("cpu"))
    state = state or build_state(cfg, accel, seed=cfg.train.seed)
    terms = []
    for _ in range(steps):
        terms.append(train_step(state, state.nets, fetcher(state.step), cfg, accel))
    return state, terms


def flat(module):
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_one_step_updates_every_network_and_ema(tiny_cfg, fetcher):
    accel = make_accel("reference", torch.device("cpu"))
    state = build_state(tiny_cfg, accel, seed=0)
    before = {k: flat(v).clone() for k, v in state.nets.items()}
    ema_before = flat(state.ema["G"]).clone()
    terms = train_step(state, state.nets, fetcher(0), tiny_cfg, accel)
    assert state.step == 1
    for k in "GFED":
        assert not torch.equal(before[k], flat(state.nets[k])), k
    ema_after = flat(state.ema["G"])
    # EMA moved by (1 - beta) of the way towards the new weights.
    beta = tiny_cfg.optim.ema_beta
    expected = beta * ema_before + (1 - beta) * flat(state.nets["G"])
    assert torch.allclose(ema_after, expected, atol=1e-6)
    expected_keys = {f"D/{p}_{t}" for p in ("latent", "ref") for t in ("real", "fake", "r1")}
    expected_keys |= {f"G/{p}_{t}" for p in ("latent", "ref") for t in ("adv", "sty", "ds", "cyc")}
    assert set(terms) == expected_keys
    assert all(torch.isfinite(v) for v in terms.values())


def test_reference_phase_updates_only_generator(tiny_cfg, fetcher, monkeypatch):
    # Make the latent-guided G phase a no-op for F/E by zero learning rates, then check that F and
    # E still do not move: the reference phase must not step them.
    tiny_cfg.optim.f_lr = 1e-30
    accel = make_accel("reference", torch.device("cpu"))
    state = build_state(tiny_cfg, accel, seed=0)
    for opt in (state.optims["E"], state.optims["F"]):
        for g in opt.param_groups:
            g["lr"] = 0.0
            g["weight_decay"] = 0.0
    e_before = flat(state.nets["E"]).clone()
    train_step(state, state.nets, fetcher(0), tiny_cfg, accel)
    assert torch.equal(e_before, flat(state.nets["E"]))


def test_steps_are_deterministic(tiny_cfg, fetcher):
    s1, t1 = run(tiny_cfg, fetcher, 2)
    s2, t2 = run(tiny_cfg, fetcher, 2)
    for k in "GFED":
        assert torch.equal(flat(s1.nets[k]), flat(s2.nets[k]))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(t1, t2) for k in a)


def test_state_dict_roundtrip_continues_bitwise(tiny_cfg, fetcher):
    full, _ = run(tiny_cfg, fetcher, 3)
    part, _ = run(tiny_cfg, fetcher, 2)
    sd = copy.deepcopy(part.state_dict())
    accel = make_accel("reference", torch.device("cpu"))
    fresh = build_state(tiny_cfg, accel, seed=123)  # different init, overwritten by the state
    fresh.load_state_dict(sd)
    resumed, _ = run(tiny_cfg, fetcher, 1, state=fresh)
    for k in "GFED":
        assert torch.equal(flat(full.nets[k]), flat(resumed.nets[k])), k
    for k in "GFE":
        assert torch.equal(flat(full.ema[k]), flat(resumed.ema[k])), k


def test_lazy_r1_interval(tiny_cfg, fetcher):
    tiny_cfg.loss.r1_interval = 2
    _, terms = run(tiny_cfg, fetcher, 2)
    assert terms[0]["D/latent_r1"] > 0
    assert terms[1]["D/latent_r1"] == 0


@pytest.mark.parametrize("overrides", [{}, {"physics.d_augment": True, "physics.e_augment": True,
                                            "physics.lambda_inv": 1.0, "physics.lambda_eq": 1.0,
                                            "model.normal_style": "fixed", "loss.r1_interval": 2,
                                            "loss.e_ref": True}])
def test_freezing_unupdated_networks_is_exact(fetcher, monkeypatch, overrides):
    """G phases freeze what they do not update (D; F and E in the reference phase) to skip
    discarded weight gradients: the weights must be bitwise those of computing and discarding."""
    import contextlib

    from xraystyle.paths import resolve_config
    from xraystyle.training import step as step_module
    from xraystyle.training.config import load_config

    cfg = load_config(resolve_config("tiny"), overrides)
    frozen_state, _ = run(cfg, fetcher, 3)
    monkeypatch.setattr(step_module, "frozen", lambda nets: contextlib.nullcontext())
    plain_state, _ = run(cfg, fetcher, 3)
    for k in "GFED":
        assert torch.equal(flat(frozen_state.nets[k]), flat(plain_state.nets[k])), k
    for k in "GFE":
        assert torch.equal(flat(frozen_state.ema[k]), flat(plain_state.ema[k])), k


def test_frozen_restores_each_parameters_own_flag():
    from xraystyle.training.freeze import frozen

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[0].weight.requires_grad_(False)  # frozen by design
    with frozen([net]):
        assert not any(p.requires_grad for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True]


def test_d_lr_sets_only_the_discriminators_learning_rate(tiny_cfg):
    accel = make_accel("reference", torch.device("cpu"))
    cfg = copy.deepcopy(tiny_cfg)
    cfg.optim.d_lr = 5 * cfg.optim.lr
    lrs = {k: o.param_groups[0]["lr"] for k, o in build_state(cfg, accel, seed=0).optims.items()}
    assert lrs == {"G": cfg.optim.lr, "F": cfg.optim.f_lr, "E": cfg.optim.lr, "D": 5 * cfg.optim.lr}
    default = {k: o.param_groups[0]["lr"] for k, o in build_state(tiny_cfg, accel, seed=0).optims.items()}
    assert default["D"] == tiny_cfg.optim.lr


def test_d_lr_must_be_positive():
    from xraystyle.errors import ConfigError
    from xraystyle.training.config import OptimConfig

    with pytest.raises(ConfigError, match="optim.d_lr"):
        OptimConfig(d_lr=0.0)


def test_lambda_extent_is_logged_in_both_generator_phases(tiny_cfg, fetcher):
    from tests.training.conftest import fake_cache
    from xraystyle.data.fetcher import BatchFetcher
    from xraystyle.data.sampling import BalancedStepSampler

    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_extent = 1.0
    cfg.train.batch_size = 8  # sources are drawn at random: a batch of 4 may hold one normal
    images, labels = fake_cache()
    # cross targets: every normal source of a batch gets a finding added
    crossing = BatchFetcher(images, BalancedStepSampler(labels, 2, cfg.train.batch_size, seed=0, cross=True),
                            cfg.model.latent_dim, seed=0, augment=None)
    _, terms = run(cfg, crossing, 2)
    for t in terms:
        assert {"G/latent_extent", "G/ref_extent"} <= set(t)
        assert torch.isfinite(t["G/latent_extent"]) and t["G/latent_extent"] >= 0
    # the batches add a finding to normal sources, so the term is measured, not a constant 0
    assert any(t["G/latent_extent"] > 0 for t in terms)
    _, plain = run(tiny_cfg, fetcher, 1)
    assert "G/latent_extent" not in plain[0]


def test_lambda_style_match_builds_a_style_aware_d_and_logs_its_term(tiny_cfg, fetcher):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_style_match = 1.0
    state, terms = run(cfg, fetcher, 2)
    assert state.nets["D"].style_proj is not None
    for t in terms:
        # reference phases only: a latent code F(z) is no image's code
        assert "D/ref_style_match" in t and "D/latent_style_match" not in t
        assert all(torch.isfinite(v) for v in t.values())
    assert build_state(tiny_cfg, make_accel("reference", torch.device("cpu")), seed=0).nets["D"].style_proj is None
    cfg.loss.style_match_latent = True
    _, terms = run(cfg, fetcher, 1)
    assert {"D/latent_style_match", "D/ref_style_match"} <= set(terms[0])


@pytest.mark.parametrize("key,term", [("lambda_code_match", "code_match"), ("lambda_id", "id")])
def test_latent_phase_only_terms(tiny_cfg, fetcher, key, term):
    cfg = copy.deepcopy(tiny_cfg)
    setattr(cfg.loss, key, 1.0)
    _, terms = run(cfg, fetcher, 2)
    for t in terms:
        assert f"G/latent_{term}" in t and f"G/ref_{term}" not in t
        assert torch.isfinite(t[f"G/latent_{term}"])
        if term == "id":  # an untrained G already edits its source
            assert t["G/latent_id"] > 0
    assert f"G/latent_{term}" not in run(tiny_cfg, fetcher, 1)[1][0]


def spy_rows(monkeypatch, loss_name, key):
    """Record ``(y_org, y_trg, the keyword argument key)`` of every call the step makes to the loss
    ``loss_name`` (d_loss or g_loss)."""
    import xraystyle.training.step as step_mod

    seen = []
    real = getattr(step_mod, loss_name)

    def spy(*args, **kw):
        seen.append((args[2], args[3], kw.get(key)))
        return real(*args, **kw)

    monkeypatch.setattr(step_mod, loss_name, spy)
    return seen


def test_cyc_normal_weight_weighs_the_cycle_of_removals(tiny_cfg, fetcher, monkeypatch):
    """0 gives the rows translated to normal cycle weight 0 and the others 1; 1 (the published
    cycle) passes no per-row weights."""
    seen = spy_rows(monkeypatch, "g_loss", "cyc_rows")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.cyc_normal_weight = 0.0
    _, terms = run(cfg, fetcher, 1)
    assert torch.isfinite(terms[0]["G/latent_cyc"]) and len(seen) == 2
    normal = cfg.domains.index("normal")
    for _, y_trg, w in seen:
        assert torch.equal(w, (y_trg != normal).float())
    seen.clear()
    run(tiny_cfg, fetcher, 1)
    assert len(seen) == 2 and all(w is None for *_, w in seen)


def test_d_patch_head_is_trained_by_the_step(tiny_cfg, fetcher):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.d_patch = 8
    accel = make_accel("reference", torch.device("cpu"))
    state = build_state(cfg, accel, seed=0)
    before = flat(state.nets["D"].patch).clone()
    _, terms = run(cfg, fetcher, 2, state)
    assert not torch.equal(before, flat(state.nets["D"].patch))
    assert all(torch.isfinite(v) for t in terms for v in t.values())


def test_cyc_noise_is_drawn_per_step_from_the_runs_seed(tiny_cfg, fetcher, monkeypatch):
    """loss.cyc_noise: each G phase gets noise of that sd, the same for the same (seed, step), a
    new draw at the next step; 0 passes none."""
    calls = spy_rows(monkeypatch, "g_loss", "cyc_noise")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.cyc_noise = 0.1
    _, terms = run(cfg, fetcher, 2)
    seen = [n for *_, n in calls]
    assert len(seen) == 4 and all(torch.isfinite(t["G/latent_cyc"]) for t in terms)
    run(cfg, fetcher, 1)  # a fresh run: step 0 again
    seen = [n for *_, n in calls]
    assert torch.equal(seen[0], seen[4])  # same seed and step: the same draw
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])
    assert seen[0].std().item() == pytest.approx(0.1, rel=0.1)
    calls.clear()
    run(tiny_cfg, fetcher, 1)
    assert [n for *_, n in calls] == [None, None]


def test_e_ref_updates_e_in_the_reference_phase_with_a_fixed_style_target(tiny_cfg, fetcher, monkeypatch):
    """loss.e_ref: the reference G phase steps G and E and fixes the style term's target; off,
    it steps G alone (as published) and the target is not fixed."""
    import xraystyle.training.step as step_mod

    stepped = []
    real_update = step_mod._update
    monkeypatch.setattr(step_mod, "_update", lambda state, loss, names, sync: (
        stepped.append(names), real_update(state, loss, names, sync)))
    seen = spy_rows(monkeypatch, "g_loss", "sty_target_fixed")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.e_ref = True
    on, _ = run(cfg, fetcher, 1)
    assert stepped == [("D",), ("D",), ("G", "F", "E"), ("G", "E")]
    assert [fixed for *_, fixed in seen] == [False, True]
    stepped.clear()
    seen.clear()
    off, _ = run(tiny_cfg, fetcher, 1)
    assert stepped[-1] == ("G",) and [fixed for *_, fixed in seen] == [False, False]
    assert not torch.equal(flat(on.nets["E"]), flat(off.nets["E"]))
    assert torch.equal(flat(on.nets["F"]), flat(off.nets["F"]))


def test_e_ref_code_reaches_the_reference_phase_only(tiny_cfg, fetcher, monkeypatch):
    """loss.e_ref_code asks g_loss to hold E's other passes fixed in the reference phase alone;
    E still steps there, and it moves differently from loss.e_ref's."""
    seen = spy_rows(monkeypatch, "g_loss", "e_code_only")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.e_ref = True
    every, _ = run(cfg, fetcher, 2)
    seen.clear()
    cfg.loss.e_ref_code = True
    code, _ = run(cfg, fetcher, 2)
    assert [only for *_, only in seen] == [False, True, False, True]
    assert not torch.equal(flat(code.nets["E"]), flat(every.nets["E"]))


def test_laterality_scale_and_pool_reach_both_phases_of_the_step(tiny_cfg, monkeypatch):
    """loss.laterality_scale logit and loss.laterality_pool topk are passed to g_loss in both G
    phases (the latent one has no side term) and change the reference phase's side term."""
    from tests.training.conftest import fake_cache
    from xraystyle.data.fetcher import BatchFetcher
    from xraystyle.data.sampling import BalancedStepSampler

    images, labels = fake_cache()  # every target the other domain: half the rows add
    fetcher = BatchFetcher(images, BalancedStepSampler(labels, 2, tiny_cfg.train.batch_size, seed=0, cross=True),
                           tiny_cfg.model.latent_dim, seed=0, augment=None)
    seen = spy_rows(monkeypatch, "g_loss", "laterality_logit")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_laterality, cfg.loss.e_ref = 1.0, True
    _, share = run(cfg, fetcher, 2)
    assert [flag for *_, flag in seen] == [False] * 4
    seen.clear()
    cfg.loss.laterality_scale = "logit"
    _, logit = run(cfg, fetcher, 2)
    assert [flag for *_, flag in seen] == [True] * 4
    assert [t["G/ref_laterality"].item() for t in logit] != [t["G/ref_laterality"].item() for t in share]
    seen = spy_rows(monkeypatch, "g_loss", "laterality_pool")
    cfg.loss.laterality_scale, cfg.loss.laterality_pool = "share", "topk"
    _, topk = run(cfg, fetcher, 2)
    assert [flag for *_, flag in seen] == ["topk"] * 4
    assert [t["G/ref_laterality"].item() for t in topk] != [t["G/ref_laterality"].item() for t in share]


def test_lambda_partial_mixes_the_removals_with_boxes_drawn_per_step(tiny_cfg, fetcher, monkeypatch):
    """loss.lambda_partial: both D phases get the same box masks and the rows that remove; the
    same (seed, step) draws the same boxes, the next step others; 0 passes none."""
    calls = spy_rows(monkeypatch, "d_loss", "partial")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_partial = 1.0
    _, terms = run(cfg, fetcher, 2)
    assert len(calls) == 4 and all(torch.isfinite(t["D/latent_partial"]) for t in terms)
    normal = cfg.domains.index("normal")
    for y_org, y_trg, (mask, rows) in calls:
        assert torch.equal(rows, ((y_trg == normal) & (y_org != normal)).float())
        assert mask.shape == (len(y_org), 1, cfg.model.img_size, cfg.model.img_size)
    assert torch.equal(calls[0][2][0], calls[1][2][0]) and not torch.equal(calls[0][2][0], calls[2][2][0])
    run(cfg, fetcher, 1)  # a fresh run: step 0 again
    assert torch.equal(calls[0][2][0], calls[4][2][0])
    calls.clear()
    run(tiny_cfg, fetcher, 1)
    assert [p for _, _, p in calls] == [None, None]


@pytest.mark.parametrize("rows", ["adds", "all"])
def test_cyc_detach_holds_the_first_pass_of_the_chosen_rows(tiny_cfg, fetcher, monkeypatch, rows):
    """loss.cyc_detach: ``adds`` holds the rows whose source is normal, ``all`` every row, in both
    G phases; ``none`` passes no rows."""
    calls = spy_rows(monkeypatch, "g_loss", "cyc_fixed_rows")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.cyc_detach = rows
    _, terms = run(cfg, fetcher, 1)
    assert len(calls) == 2 and torch.isfinite(terms[0]["G/ref_cyc"])
    normal = cfg.domains.index("normal")
    for y_org, _, fixed in calls:
        assert torch.equal(fixed, y_org == normal if rows == "adds" else torch.ones_like(fixed))
    calls.clear()
    run(tiny_cfg, fetcher, 1)
    assert [f for *_, f in calls] == [None, None]


def test_lambda_ds_extent_reaches_both_generator_phases(tiny_cfg, fetcher, monkeypatch):
    seen = spy_rows(monkeypatch, "g_loss", "lambda_ds_extent")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_ds_extent = 0.5
    _, terms = run(cfg, fetcher, 1)
    assert [w for *_, w in seen] == [0.5, 0.5]
    assert torch.isfinite(terms[0]["G/latent_ds_extent"]) and torch.isfinite(terms[0]["G/ref_ds_extent"])


def test_lambda_laterality_reaches_the_reference_phase_only(tiny_cfg, fetcher, monkeypatch):
    """Weighted in the reference phase on its adding rows (normal source, finding reference); the
    latent phase, which has no reference, gets weight 0."""
    weights = spy_rows(monkeypatch, "g_loss", "lambda_laterality")
    seen = spy_rows(monkeypatch, "g_loss", "laterality_rows")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_laterality = 2.0
    _, terms = run(cfg, fetcher, 4)
    assert [w for *_, w in weights] == [0.0, 2.0] * 4
    normal = cfg.domains.index("normal")
    for y_org, y_ref, rows in seen[1::2]:
        assert torch.equal(rows, (y_org == normal) & (y_ref != normal))
    assert any(rows.any() for *_, rows in seen[1::2])
    assert all(torch.isfinite(t["G/ref_laterality"]) for t in terms) and "G/latent_laterality" not in terms[0]


def test_lambda_ref_extent_reaches_the_reference_phase_only_and_needs_a_normal_domain(tiny_cfg, fetcher, monkeypatch):
    """Weighted in the reference phase (its adding rows are the side term's); the latent phase gets
    0; a run without a normal domain is refused in one line."""
    from xraystyle.errors import ConfigError
    from xraystyle.paths import resolve_config
    from xraystyle.training.config import load_config

    weights = spy_rows(monkeypatch, "g_loss", "lambda_ref_extent")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_ref_extent = 2.0
    _, terms = run(cfg, fetcher, 2)
    assert [w for *_, w in weights] == [0.0, 2.0] * 2
    assert all(torch.isfinite(t["G/ref_ref_extent"]) for t in terms) and "G/latent_ref_extent" not in terms[0]
    with pytest.raises(ConfigError, match="loss.lambda_ref_extent.*normal"):
        load_config(resolve_config("tiny"), {"domains": ["effusion", "nodule"], "loss.lambda_ref_extent": 1.0})


def test_laterality_e_updates_e_alone_after_the_reference_phase(tiny_cfg, fetcher, monkeypatch):
    """With loss.laterality_e each step ends with one update of E on the reference's side (the
    reference phase's adding rows), weighted by lambda_laterality; D, F and G get no update from it."""
    import xraystyle.training.step as step_mod

    calls = []
    real = step_mod.e_laterality_loss

    def spy(nets, x_real, y_org, y_ref, x_ref, rows, **kw):
        calls.append((y_org, y_ref, rows))
        before.update({k: flat(state.nets[k]).clone() for k in "DFGE"})
        return real(nets, x_real, y_org, y_ref, x_ref, rows, **kw)

    monkeypatch.setattr(step_mod, "e_laterality_loss", spy)
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_laterality, cfg.loss.laterality_e = 2.0, True
    accel = make_accel("reference", torch.device("cpu"))
    state, before = build_state(cfg, accel, seed=cfg.train.seed), {}
    normal, e_moved = cfg.domains.index("normal"), []
    for step in range(4):
        terms = train_step(state, state.nets, fetcher(step), cfg, accel)
        assert len(calls) == step + 1 and torch.isfinite(terms["E/ref_laterality"])
        y_org, y_ref, rows = calls[-1]
        assert torch.equal(rows, (y_org == normal) & (y_ref != normal))
        for k in "DFG":  # (the EMA copies move after it; the networks do not)
            assert torch.equal(flat(state.nets[k]), before[k])
        e_moved.append(bool(rows.any()) and not torch.equal(flat(state.nets["E"]), before["E"]))
    assert any(e_moved)


def test_lambda_geometry_reaches_both_generator_phases_and_e_only_where_e_learns(tiny_cfg, fetcher, monkeypatch):
    """Adding rows (normal source, finding target) in both G phases; removing rows (finding source,
    normal target) in the latent phase, where E is updated, and not in the reference phase."""
    seen = spy_rows(monkeypatch, "g_loss", "geometry_rows")
    cfg = copy.deepcopy(tiny_cfg)
    cfg.loss.lambda_geometry = 1.0
    _, terms = run(cfg, fetcher, 4)
    normal = cfg.domains.index("normal")
    lat, ref = seen[0::2], seen[1::2]
    for (y_org, y_lat, (adds_lat, rem_lat)), (_, y_ref, (adds_ref, rem_ref)) in zip(lat, ref):
        assert torch.equal(adds_lat, (y_org == normal) & (y_lat != normal))
        assert torch.equal(rem_lat, (y_org != normal) & (y_lat == normal))
        assert torch.equal(adds_ref, (y_org == normal) & (y_ref != normal)) and rem_ref is None
    assert any(rows[0].any() for *_, rows in lat) and any(rows[1].any() for *_, rows in lat)
    for k in ("G/latent_geometry_g", "G/latent_geometry_e", "G/ref_geometry_g"):
        assert torch.isfinite(terms[0][k])
    assert "G/ref_geometry_e" not in terms[0]
    seen.clear()
    run(tiny_cfg, fetcher, 1)
    assert [rows for *_, rows in seen] == [None, None]
