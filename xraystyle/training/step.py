"""One StarGAN v2 iteration: D (latent), D (reference), G (latent), G (reference), EMA."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from ..data.fetcher import Batch, step_generator
from ..streams import Stream
from .accel import Accel
from .config import RunConfig
from .ema import ema_update
from .freeze import frozen
from .losses import d_loss, e_laterality_loss, g_loss, lambda_ds_at, soft_boxes
from .physics import PhysicsAug
from .state import EMA_NETS, TrainState

GradSync = Callable[[Iterable[nn.Parameter]], None]


def _update(state: TrainState, loss: torch.Tensor, names: tuple[str, ...],
            grad_sync: GradSync | None) -> None:
    for opt in state.optims.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_sync is not None:
        grad_sync([p for n in names for p in state.nets[n].parameters()])
    for n in names:
        state.optims[n].step()


def train_step(state: TrainState, fwd: Mapping[str, nn.Module], batch: Batch, cfg: RunConfig,
               accel: Accel, grad_sync: GradSync | None = None, rank: int = 0,
               world: int = 1) -> dict[str, torch.Tensor]:
    """Run one iteration at ``state.step`` and return detached loss terms (no host sync).

    ``fwd`` holds the callables used in forward passes (compiled or not); ``state.nets`` holds
    the parameters; ``fwd["D_r1"]``, when present, is the eager D for the R1 real pass.
    """
    step = state.step
    lc = cfg.loss
    r1_weight = lc.r1_weight * lc.r1_interval if step % lc.r1_interval == 0 else 0.0
    lam = {"lambda_sty": lc.lambda_sty, "lambda_ds": lambda_ds_at(lc, step), "lambda_cyc": lc.lambda_cyc,
           "lambda_cls": lc.lambda_cls}
    x_real, x_ref, x_ref2 = (accel.prepare(x) for x in (batch.x_real, batch.x_ref, batch.x_ref2))
    y_org, y_trg = batch.y_org, batch.y_trg
    terms: dict[str, torch.Tensor] = {}
    # In-step physics draws are a pure function of (seed, step) too: resume stays exact.
    phys = None
    if cfg.physics.active:
        phys = PhysicsAug(cfg.physics, step_generator(cfg.train.seed, step, Stream.STEP_PHYSICS, accel.device), rank, world)
    fixed = {name: cfg.fixed_style_rows(y) for name, y in
             (("org", y_org), ("latent", y_trg), ("ref", batch.y_ref))}
    # Normal labels (None without one) and, from them, the rows that add a finding to a normal
    # source and the rows that remove every finding, per G / D phase's target.
    labels = cfg.labels
    normal = {name: labels.normal_rows(y) for name, y in (("org", y_org), ("latent", y_trg), ("ref", batch.y_ref))}
    adding, removing = {}, {}
    if normal["org"] is not None:
        for tag in ("latent", "ref"):
            adding[tag], removing[tag] = normal["org"] & ~normal[tag], ~normal["org"] & normal[tag]

    logit = lc.laterality_scale == "logit"  # the side term's gap in log-odds

    cyc_rows = {}  # the cycle's per-row weight, where removals weigh other than adds
    if lc.cyc_normal_weight != 1.0:
        cyc_rows = {tag: torch.where(normal[tag], lc.cyc_normal_weight, 1.0) for tag in ("latent", "ref")}

    def this_ranks_rows(stream: Stream, draw: Callable[[int, torch.Generator], torch.Tensor],
                        times: int = 1) -> list[torch.Tensor]:
        # ``times`` draws for the global batch from (seed, step, stream), one after the other, each
        # sliced to this rank's rows: the same images get the same draws whatever the world size.
        b, gen = x_real.shape[0], step_generator(cfg.train.seed, step, stream, accel.device)
        return [draw(world * b, gen)[rank * b:(rank + 1) * b] for _ in range(times)]

    cyc_noise = {}  # noise on the fake before the cycle's second pass, one draw per G phase
    if lc.cyc_noise > 0:
        noise = this_ranks_rows(Stream.STEP_CYCLE_NOISE, lambda n, gen: torch.randn(
            (n, *x_real.shape[1:]), generator=gen, device=accel.device), times=2)
        cyc_noise = {tag: lc.cyc_noise * n.to(x_real.dtype) for tag, n in zip(("latent", "ref"), noise)}

    cyc_fixed = None  # rows whose fake enters the cycle's second pass as a constant
    if lc.cyc_detach == "all":
        cyc_fixed = torch.ones(y_org.shape[0], dtype=torch.bool, device=y_org.device)
    elif lc.cyc_detach == "adds":
        cyc_fixed = normal["org"]

    partial = None  # removals mixed with their source inside a box, for D
    if lc.lambda_partial > 0:
        (u,) = this_ranks_rows(Stream.STEP_PARTIAL, lambda n, gen: torch.rand((n, 4), generator=gen, device=accel.device))
        mask = soft_boxes(u, x_real.shape[-1]).to(x_real.dtype)
        partial = {tag: (mask, rows.float()) for tag, rows in removing.items()}

    # Discriminator: once with a latent-guided fake, once with a reference-guided fake. The
    # style-aware terms (loss.lambda_style_match) pair images with E's codes, so by default they
    # run in the reference phases only: a latent code F(z) is no image's code, and pairing latent
    # fakes with it distorts the outputs on the phantom (loss.style_match_latent).
    style_weight = {tag: lc.lambda_style_match if tag == "ref" or lc.style_match_latent else 0.0
                    for tag in ("latent", "ref")}
    for tag, y, guide in (("latent", y_trg, {"z_trg": batch.z_trg}), ("ref", batch.y_ref, {"x_ref": x_ref})):
        with accel.autocast():
            loss, t = d_loss(fwd, x_real, y_org, y, r1_weight=r1_weight, phys=phys, fixed_trg=fixed[tag],
                            lambda_cls=lc.lambda_cls, lambda_mismatch=lc.lambda_mismatch,
                            lambda_style_match=style_weight[tag],
                            fixed_org=fixed["org"], lambda_partial=lc.lambda_partial,
                            partial=None if partial is None else partial[tag], **guide)
        _update(state, loss, ("D",), grad_sync)
        terms.update({f"D/{tag}_{k}": v for k, v in t.items()})

    # Generator: latent-guided updates G, F, E; reference-guided updates G only (and E with
    # loss.e_ref). Networks a phase does not update are frozen for it: their weight gradients
    # would be discarded unread (the published code computes them), and E's passes on x_ref /
    # x_real need no backward.
    for tag, y, guide, names in (
        ("latent", y_trg, {"z_trgs": (batch.z_trg, batch.z_trg2)}, ("G", "F", "E")),
        ("ref", batch.y_ref, {"x_refs": (x_ref, x_ref2)}, ("G", "E") if lc.e_ref else ("G",)),
    ):
        with frozen(state.nets[n] for n in ("D", "F", "E") if n not in names):
            with accel.autocast():
                loss, t = g_loss(fwd, x_real, y_org, y, **guide, **lam, phys=phys, fixed_trg=fixed[tag],
                                 fixed_org=fixed["org"], lambda_extent=lc.lambda_extent,
                                 add_rows=adding.get(tag), d_style=style_weight[tag] > 0,
                                 lambda_code_match=lc.lambda_code_match if tag == "latent" else 0.0,
                                 code_ref=(x_ref, batch.y_ref, fixed["ref"]),
                                 lambda_id=lc.lambda_id if tag == "latent" else 0.0,
                                 cyc_rows=cyc_rows.get(tag), cyc_noise=cyc_noise.get(tag),
                                 sty_target_fixed=lc.e_ref and tag == "ref", cyc_fixed_rows=cyc_fixed,
                                 lambda_ds_extent=lc.lambda_ds_extent, lambda_geometry=lc.lambda_geometry,
                                 geometry_rows=(adding[tag], removing[tag] if "E" in names else None)
                                 if lc.lambda_geometry > 0 else None,
                                 lambda_laterality=lc.lambda_laterality if tag == "ref" else 0.0,
                                 laterality_rows=adding.get(tag), e_code_only=lc.e_ref_code and tag == "ref",
                                 laterality_logit=logit, laterality_pool=lc.laterality_pool,
                                 laterality_grid=lc.laterality_grid,
                                 lambda_ref_extent=lc.lambda_ref_extent if tag == "ref" else 0.0)
            _update(state, loss, names, grad_sync)
        terms.update({f"G/{tag}_{k}": v for k, v in t.items()})

    if lc.laterality_e:  # E alone, on the reference's side (G a constant)
        with frozen(state.nets[n] for n in ("D", "F", "G")):
            with accel.autocast():
                loss_e = e_laterality_loss(fwd, x_real, y_org, batch.y_ref, x_ref, adding["ref"], phys=phys,
                                           fixed_ref=fixed["ref"], fixed_org=fixed["org"],
                                           logit=logit, pool=lc.laterality_pool, grid=lc.laterality_grid)
            _update(state, lc.lambda_laterality * loss_e, ("E",), grad_sync)
        terms["E/ref_laterality"] = loss_e.detach()

    for name in EMA_NETS:
        ema_update(state.ema[name], state.nets[name], cfg.optim.ema_beta)
    state.step = step + 1
    return terms
