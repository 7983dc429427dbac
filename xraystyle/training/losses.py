"""StarGAN v2 objectives as pure functions of the networks, the batch and the step.

Nothing here owns state: each function takes the networks (a mapping with "G", "F", "E",
"D"), tensors named as in the paper, and weights, and returns ``(loss, terms)`` where
``terms`` holds detached scalars for logging (read on the host only every N steps).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as nnf
from torch import nn

from ..config import check
from ..models.equalize import soft_equalize
from ..models.style import style_code
from .freeze import frozen
from .physics import PhysicsAug


@dataclass
class LossConfig:
    lambda_sty: float = 1.0
    lambda_ds: float = 1.0  # initial weight, decayed linearly to 0 over ds_decay_iters
    ds_decay_iters: int = 100_000
    lambda_cyc: float = 1.0
    # Domain classification (StarGAN v1): D classifies real images' domain, G's fakes must be
    # classified as the target. 0 = StarGAN v2 as published (no classifier).
    lambda_cls: float = 0.0
    # Matching-aware D (GAN-CLS, Reed et al. 2016): a real image shown to the head of a domain it
    # is not in counts as fake, so each head must tell its domain from the others on real images,
    # not only real from (blurrier) fake. 0 = as published.
    lambda_mismatch: float = 0.0
    # Extent consistency (issue #16): one style added to two normal images must change them by the
    # same amount (mean |change| of the soft-equalised image), so that how much of a finding
    # there is comes from the style, not from the patient. 0 = as published.
    lambda_extent: float = 0.0
    # Style-aware D (issue #16): D also projects its features onto the style code and scores the
    # pair (real image, E(image)) as real, (G(x, s), s) as fake and, with this weight, a real
    # image paired with another real image's style (same label) as fake, so it must check that
    # an image shows what its style says. 0 = as published (no projection).
    lambda_style_match: float = 0.0
    # ... in the latent phases too, latent fakes paired with F's codes: the style then decides
    # more of the finding, but the outputs lose identity (issue #16, fifth and sixth rounds in
    # reports/phantom-truth.md). False = reference phases only.
    style_match_latent: bool = False
    # Code matching (issue #16): in the latent phase, F's codes and E's codes of real references
    # of the same label must be alike as sets (kernel MMD), so that a latent code lies where an
    # image's code lies and a style-aware D cannot tell latent fakes by their code alone. It closes
    # that gap and leaves the latent pairing's distortion (sixth round). Gradients reach F and E.
    # 0 = as published.
    lambda_code_match: float = 0.0
    # Identity (issue #16; Taigman et al. 2017, CycleGAN's identity term): a real image given its
    # own style, G(x, s_org) with s_org = E(x) or the deterministic normal style, must come back
    # unchanged. Cross-domain targets never show G an image already in its target domain, and on
    # the phantom its 'normal' edit darkens the lung bases of fluid-free chests too; the term
    # shrinks that edit and G then removes less (seventh round). Latent phase, where E is also
    # updated. 0 = as published.
    lambda_id: float = 0.0
    # The cycle's weight on rows whose target is normal, relative to lambda_cyc (issue #16): to
    # come back from a removal G needs the fluid again, so the cycle may reward a removal that
    # leaves a trace; 0 drops it on removals only (adds keep it). On the phantom removals are no
    # more complete without it (seventh round). 1 = as published (no per-row weights).
    cyc_normal_weight: float = 1.0
    # Gaussian noise (sd, in the images' [-1, 1] units) added to the fake before the cycle's second
    # pass (issue #16): a cycle can be met by hiding the source in faint patterns of the fake
    # (Chu et al. 2017, "CycleGAN, a master of steganography"); under noise G must infer what it
    # restores from what is visible, e.g. the lung base an added effusion hid. On the phantom
    # removal is unchanged, with or without the cycle of removals (eighth round). 0 = as published.
    cyc_noise: float = 0.0
    # E in the reference phases too (issue #16's list of candidates): as published, E is updated
    # in the latent phase only, where the codes it learns to read come from F, never from a real
    # reference. Here the reference phase's adversarial, diversity and cycle terms also reach E
    # through E(x_ref) and E(x_real), and E learns to read the reference-guided fake; that term's
    # target E(x_ref) is held fixed, so it cannot be met by E forgetting the reference. On the
    # phantom G then stops rendering E's codes: the reference's side no longer reaches the output
    # (ninth round); beside ``lambda_laterality`` it carries the side further than before, and the
    # two are the packaged configs' default since the twelfth round. False = as published.
    e_ref: bool = False
    # With ``e_ref``, E learns in the reference phase through the reference's code E(x_ref) alone;
    # its other passes there (the fake's style, the source's own code) run with its weights fixed,
    # as the latent phase already teaches it those. About a third less of E's extra backward work.
    e_ref_code: bool = False
    # Partial removals as negatives for D (issue #16, ninth round; CutMix, Yun et al. 2019, as
    # Schonfeld et al. 2020 use it on D): in the D phases, each removal (a source with findings
    # translated to normal) is mixed with its source inside a random soft box, and D's normal
    # head must judge the mix fake. The data's findings hide the whole lung base, so a D trained
    # on it can take a visible base for "normal"; the mixes show it findings left in one place
    # beside a base G cleared. On the phantom D still takes the remnants for normal chests and
    # removal is unchanged (ninth round). 0 = as published.
    lambda_partial: float = 0.0
    # The cycle's first pass held fixed (issue #16, ninth round): ``adds`` on rows whose source is
    # normal, ``all`` on every row. Through the first pass the cycle rewards an add that leaves
    # the lung it covers readable for the way back; held fixed, the add is shaped by D alone, and
    # the way back (a removal of G's own effusion from a normal chest, whose hidden lung the
    # target shows) must infer what the fluid covers, which a removal of a real effusion has to.
    # On the phantom removal is unchanged and identity suffers (ninth round). "none" = as published.
    cyc_detach: str = "none"
    # Size diversity (issue #16, ninth round): two styles for the same target must change the
    # source by different amounts (the extent of each edit, mean |change| of the soft-equalised
    # images, so exposure does not count). The published diversity term is met by any difference
    # and on the phantom by the side alone: the style decides little of the size. Not decayed.
    # On the phantom the style decides no more of the size with it (ninth round). 0 = as published.
    lambda_ds_extent: float = 0.0
    # Finding geometry in the style (issue #16, tenth round): the style's first GEOMETRY_CELLS
    # dims, read as a distribution over a grid of height bands x image halves, say where the
    # finding sits. E must predict from an image with findings where its removal changes it
    # (latent phase, where E is updated), and an add must change its source where its style says
    # (both G phases, the style's reading a constant). Both sides are self-supervised from real
    # images and G's own edits: no finding masks. As published, nothing asks E(x_ref) to carry
    # how high the fluid stands (a probe reads volume off E's codes at R^2 about 0.1) nor G to
    # render it from the style. On the phantom both halves are met and the reference's volume
    # still does not follow, while its acquisition comes through (tenth round). 0 = as published.
    lambda_geometry: float = 0.0
    # The reference's side (issue #16, eleventh round): in the reference phase, an add must put its
    # change on the side of the image where G's removal of the reference's findings takes change
    # away (the share of each edit's squared change in the image's left half, ``laterality``; the
    # reference's a constant). Self-supervised from real references and G's own removal: no side
    # labels, no masks. As published the reference's side reaches the output only through E's code
    # and the style reconstruction, and on the phantom in little over half the cases while G's
    # removal of the same references tells their side in about nine of ten; at 1 with ``e_ref``
    # in about seven of ten (the packaged configs' default). 0 = as published.
    lambda_laterality: float = 0.0
    # E taught the reference's side by that term alone (issue #16, eleventh round): after the
    # reference G phase, one more update of E alone on the same term (G a constant), instead of
    # ``e_ref``, which lets every reference-phase term reach E. False = E as published.
    laterality_e: bool = False
    # How the side term compares the two shares (issue #16, twelfth round): ``share`` their
    # difference; ``logit`` their log-odds (``laterality_gap``), steepest near one-sided shares,
    # where many adds the oracle reads on both sides sit. On the phantom no gain (twelfth round).
    # "share" = the eleventh round's term.
    laterality_scale: str = "share"
    # How each half's change is pooled into its share (issue #16, thirteenth round): ``sum`` all of
    # its squared change; ``topk`` the mean of its largest ``LATERALITY_TOPK`` squared changes, so
    # that a small effusion on the wrong side weighs about as much as a large one on the right side
    # (the oracle counts a side with any fluid; under ``sum`` a large effusion drowns it). On the
    # phantom no gain, the latent sides further off the prior (thirteenth round). "sum" = the
    # eleventh round's term.
    laterality_pool: str = "sum"
    # Where the change lies, not only on which side (issue #16, thirteenth round): with (rows,
    # cols) other than (1, 2) the term compares the two edits' squared change pooled over a rows x
    # cols grid and normalised (the total-variation distance of the two distributions), so that
    # height bands could ask for how high the fluid stands. Untrained: on ideal renders the two
    # patients' anatomy decides most of an 8 x 2 distance (thirteenth round). (1, 2) is the
    # eleventh round's share gap exactly (the TV of two two-cell distributions).
    laterality_grid: tuple[int, int] = (1, 2)
    # The reference's size (issue #16, thirteenth round), the side term's sibling: in the reference
    # phase an add must change its source as much as G's removal of the reference changes the
    # reference (``extent``: mean change of the soft-equalised images, which follows the added
    # volume across patients at Spearman 0.8 on the phantom's ideal renders), as a log ratio. On
    # the phantom E's codes then carry the volume and the outputs still do not: G's removal is
    # twice the fluid's size and follows its volume weakly (thirteenth round). 0 = as published.
    lambda_ref_extent: float = 0.0
    r1_weight: float = 1.0
    r1_interval: int = 1  # lazy R1: every k D steps with weight * k (1 = every step, as published)

    def __post_init__(self):
        for key in ("lambda_sty", "lambda_ds", "lambda_cyc", "lambda_cls", "lambda_mismatch",
                    "lambda_extent", "lambda_style_match", "lambda_code_match", "lambda_id", "cyc_normal_weight",
                    "cyc_noise", "lambda_partial", "lambda_ds_extent", "lambda_geometry",
                    "lambda_laterality", "lambda_ref_extent", "r1_weight"):
            check(getattr(self, key) >= 0, f"loss.{key}", "must be >= 0")
        check(self.cyc_detach in ("none", "adds", "all"), "loss.cyc_detach",
              f"must be none, adds or all, got {self.cyc_detach!r}")
        check(not self.laterality_e or self.lambda_laterality > 0, "loss.laterality_e",
              "needs loss.lambda_laterality > 0: E is taught that term")
        check(not (self.laterality_e and self.e_ref), "loss.laterality_e",
              "and loss.e_ref both update E in the reference phase: choose one")
        check(not self.e_ref_code or self.e_ref, "loss.e_ref_code", "needs loss.e_ref: true")
        check(self.laterality_scale in ("share", "logit"), "loss.laterality_scale",
              f"must be share or logit, got {self.laterality_scale!r}")
        check(self.laterality_pool in ("sum", "topk"), "loss.laterality_pool",
              f"must be sum or topk, got {self.laterality_pool!r}")
        rows, cols = self.laterality_grid
        check(rows >= 1 and cols >= 2 and cols % 2 == 0, "loss.laterality_grid",
              f"must be [rows >= 1, an even cols >= 2] (the image's halves split the cells), got {list(self.laterality_grid)}")
        check(tuple(self.laterality_grid) == (1, 2) or (self.laterality_scale, self.laterality_pool) == ("share", "sum"),
              "loss.laterality_grid", "other than [1, 2] compares whole distributions: needs laterality_scale share "
              "and laterality_pool sum")
        check(self.ds_decay_iters >= 1, "loss.ds_decay_iters", "must be >= 1")
        check(self.r1_interval >= 1, "loss.r1_interval", "must be >= 1")


Nets = Mapping[str, nn.Module]


def lambda_ds_at(cfg: LossConfig, step: int) -> float:
    """Diversity-sensitivity weight at ``step``: linear decay to 0 (a schedule, not a mutation)."""
    return cfg.lambda_ds * max(0.0, 1.0 - step / cfg.ds_decay_iters)


def per_image(t: torch.Tensor) -> torch.Tensor:
    """One value per image from D's real/fake output (or a per-logit loss of it): ``[B]`` as is;
    ``[B, 1 + cells]`` (a patch head, ``model.d_patch``) half the image column, half the mean cell."""
    return t if t.dim() == 1 else 0.5 * (t[:, 0] + t[:, 1:].mean(1))


def adv_bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Per-image BCE of D's real/fake output against an all-``target`` label."""
    logits = logits.float()
    return per_image(nnf.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none"))


def adv_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Non-saturating adversarial loss: BCE of the logits against an all-``target`` label."""
    return adv_bce(logits, target).mean()


def cls_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Domain classification loss: cross-entropy over domains for domain indices (LongTensor
    ``[B]``), per-finding binary cross-entropy for finding sets (``[B, K]`` with NaN = unknown,
    which is left out, never read as absent)."""
    logits = logits.float()
    if not y.is_floating_point():
        return nnf.cross_entropy(logits, y.long())
    known = ~torch.isnan(y)
    bce = nnf.binary_cross_entropy_with_logits(logits, torch.nan_to_num(y.float()), reduction="none")
    return (bce * known).sum() / known.sum().clamp(min=1)


def _judge(D, x: torch.Tensor, y: torch.Tensor, lambda_cls: float,
           s: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's real/fake logit for ``x`` as domain ``y`` (paired with style ``s`` for a style-aware
    D) and, with the classifier in use, its classification loss against ``y`` (one trunk pass)."""
    style = {} if s is None else {"s": s}
    if lambda_cls <= 0:
        return D(x, y, **style), None
    out, logits = D(x, y, classify=True, **style)
    return out, cls_loss(logits, y)


def _label_eq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Broadcast label equality: domain indices compare as numbers, finding sets (last dim) must
    agree on every finding (an unknown, NaN, never agrees)."""
    return a == b if not a.is_floating_point() else (a == b).all(dim=-1)


def same_label_partner(y: torch.Tensor, usable: torch.Tensor | None) -> torch.Tensor:
    """Bool rows whose neighbour (``roll(1)``) has the same label: their styles can be swapped
    to make a mismatched pair. Sets must agree on every finding (an unknown never agrees);
    ``usable`` (if given) must hold for both rows."""
    same = _label_eq(y, y.roll(1, 0))
    if usable is not None:
        same = same & usable & usable.roll(1, 0)
    return same


def mismatched(y_org: torch.Tensor, y_trg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y_wrong, rows)``: a label each real image does *not* have, taken from ``y_trg``, and the
    bool rows where there is one. Domain indices: ``y_trg`` where it differs from ``y_org``. Finding
    sets: ``y_org`` with the findings that are known on both sides and differ set to ``y_trg``'s
    value (unknown findings stay unknown: an image is never claimed to lack what it may show)."""
    if not y_org.is_floating_point():
        return y_trg, y_trg != y_org
    differ = (y_org != y_trg) & ~torch.isnan(y_org) & ~torch.isnan(y_trg)
    return torch.where(differ, y_trg, y_org), differ.any(dim=1)


def same_label(y_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
    """(len(y_a), len(y_b)) bool: the two rows carry the same label."""
    return _label_eq(y_a[:, None], y_b[None, :])


def _varied(fixed: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    """Bool rows whose style is a code (not the one deterministic style)."""
    return torch.ones(len(y), dtype=torch.bool, device=y.device) if fixed is None else ~fixed


def code_mmd(s_a: torch.Tensor, y_a: torch.Tensor, usable_a: torch.Tensor,
             s_b: torch.Tensor, y_b: torch.Tensor, usable_b: torch.Tensor) -> torch.Tensor:
    """Squared MMD between two sets of labelled style codes, the unbiased U-statistic (no
    self-pairs: the biased one rewards codes for spreading apart), computed within each label
    that has >= 2 ``usable`` rows in both sets and averaged over those labels; 0 when there is
    none. No data-dependent shapes.

    Kernel: Gaussian on the code, summed over bandwidths 0.5 / 1 / 2 x the median distance of the
    pairs compared (detached). Hand-written: a few lines, and the libraries that have MMD (torchmetrics'
    KID) are evaluation metrics on fixed features, not training losses."""
    def counts(y, usable, y_other, usable_other):
        n = (same_label(y, y) & usable[None, :]).sum(dim=1)
        m = (same_label(y, y_other) & usable_other[None, :]).sum(dim=1)
        return usable & (n >= 2) & (m >= 2), n.float()

    ok_a, n_a = counts(y_a, usable_a, y_b, usable_b)
    ok_b, n_b = counts(y_b, usable_b, y_a, usable_a)
    s_a, s_b = s_a.float(), s_b.float()
    s, y, ok = torch.cat([s_a, s_b]), torch.cat([y_a, y_b]), torch.cat([ok_a, ok_b])
    with torch.no_grad():  # bandwidth: the median over the pairs the kernel is used on
        d2_all = (s[:, None, :] - s[None, :, :]).pow(2).sum(dim=2)
        used = same_label(y, y) & ok[:, None] & ok[None, :] & ~torch.eye(len(s), dtype=torch.bool, device=s.device)
        scale = torch.nanmedian(torch.where(used, d2_all, torch.nan))
        scale = torch.where(torch.isnan(scale), 1.0, scale).clamp(min=1e-8)

    def kernel(u, v):  # direct squares: cdist's gradient is NaN at distance 0
        d2 = (u[:, None, :] - v[None, :, :]).pow(2).sum(dim=2)
        return sum(torch.exp(-d2 / (2 * f * f * scale)) for f in (0.5, 1.0, 2.0))

    def pairs(ok_u, n_u, y_u, ok_v, n_v, y_v, within):
        w = same_label(y_u, y_v) & ok_u[:, None] & ok_v[None, :]
        if within:
            w = w & ~torch.eye(len(y_u), dtype=torch.bool, device=w.device)
            return w.float() / (n_u * (n_u - 1)).clamp(min=1)[:, None]
        return w.float() / (n_u[:, None] * n_v[None, :]).clamp(min=1)

    mmd = ((pairs(ok_a, n_a, y_a, ok_a, n_a, y_a, True) * kernel(s_a, s_a)).sum()
           + (pairs(ok_b, n_b, y_b, ok_b, n_b, y_b, True) * kernel(s_b, s_b)).sum()
           - 2 * (pairs(ok_a, n_a, y_a, ok_b, n_b, y_b, False) * kernel(s_a, s_b)).sum())
    labels = (ok_a.float() / n_a.clamp(min=1)).sum()  # each label's rows sum to 1
    return mmd / labels.clamp(min=1)


def partner_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(partner, paired)``: for each selected row of the bool mask ``rows`` the next selected
    row (cyclically), itself elsewhere; ``paired`` marks the rows that got another row (two or
    more selected). No host sync: ranks and counts stay on the device."""
    b = rows.shape[0]
    arange = torch.arange(b, device=rows.device)
    rank = rows.long().cumsum(0) - 1
    count = rows.long().sum().clamp(min=1)
    by_rank = torch.zeros(b + 1, dtype=torch.long, device=rows.device)
    by_rank = by_rank.scatter(0, torch.where(rows, rank, b), arange)  # slot b collects the rest
    partner = torch.where(rows, by_rank[(rank + 1) % count], arange)
    return partner, rows & (partner != arange)


def extent(x_after: torch.Tensor, x_before: torch.Tensor) -> torch.Tensor:
    """Per image, how much an edit changed it: mean |change| of the soft-equalised images (ranks,
    so that a darker or flatter exposure of the same finding counts the same)."""
    return (soft_equalize(x_after.float()) - soft_equalize(x_before.float())).abs().flatten(1).mean(1)


GEOMETRY_GRID = (8, 2)  # height bands x image halves: a finding's side and how high it stands
GEOMETRY_CELLS = GEOMETRY_GRID[0] * GEOMETRY_GRID[1]


def change_geometry(x_after: torch.Tensor, x_before: torch.Tensor) -> torch.Tensor:
    """Per image, where an edit changed it: |change| pooled over ``GEOMETRY_GRID`` and normalised
    to a distribution over its cells (how much it changed does not count, only where)."""
    d = (x_after.float() - x_before.float()).abs().mean(1, keepdim=True)
    cells = nnf.adaptive_avg_pool2d(d, GEOMETRY_GRID).flatten(1) + 1e-6
    return cells / cells.sum(1, keepdim=True)


LATERALITY_TOPK = 0.02  # ``topk`` pooling: the largest 2 % of a half's pixels (41 at 64 px)


def laterality(x_after: torch.Tensor, x_before: torch.Tensor, pool: str = "sum") -> torch.Tensor:
    """Per image (B,), the share of an edit's squared change in the image's left half (0.5 for a
    symmetric edit; which half, not how much). Squared, so the finding's strong local change
    outweighs the faint change an edit spreads over the whole image. ``pool``: each half's change
    is its sum (``sum``) or the mean of its largest ``LATERALITY_TOPK`` share (``topk``: whether a
    half changed strongly anywhere, not over how much of it)."""
    d = (x_after.float() - x_before.float()).pow(2).mean(1)
    half = d.shape[-1] // 2
    left, right = d[..., :half], d[..., d.shape[-1] - half:]
    if pool == "topk":
        k = max(1, round(LATERALITY_TOPK * left[0].numel()))
        left, right = (h.flatten(1).topk(k, dim=1).values.mean(1) for h in (left, right))
    else:
        left, right = left.sum((1, 2)), right.sum((1, 2))
    return left / (left + right).clamp(min=1e-12)


def change_cells(x_after: torch.Tensor, x_before: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Per image (B, rows * cols), an edit's squared change pooled over a ``grid`` and normalised
    to a distribution over its cells (where, not how much)."""
    d = (x_after.float() - x_before.float()).pow(2).mean(1, keepdim=True)
    cells = nnf.adaptive_avg_pool2d(d, tuple(grid)).flatten(1)
    return cells / cells.sum(1, keepdim=True).clamp(min=1e-12)


EXTENT_FLOOR = 1e-3  # ``lambda_ref_extent``'s log ratio: an edit's extent runs 0.02-0.08 on the phantom
LOGIT_FLOOR = 0.05  # ``logit`` gaps clamp shares to [0.05, 0.95]: a 95 / 5 split counts as one-sided


def laterality_gap(G: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor, x_ref: torch.Tensor,
                   s_org: torch.Tensor, rows: torch.Tensor, logit: bool = False, pool: str = "sum",
                   grid: tuple[int, int] = (1, 2), removed: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the bool ``rows`` of |lat(x_fake, x_real) - lat(x_ref, G(x_ref, s_org))|: an add
    must change its source on the side where G's removal of the reference (``s_org`` the source's
    normal style) changes the reference, which is a constant of the term. With ``logit`` the two
    shares are compared in log-odds (clamped at ``LOGIT_FLOOR``, the gap scaled to [0, 1]): the
    same for an even split, more for a faint change on the other side. ``pool``: ``laterality``'s.
    With a ``grid`` other than (1, 2), the total-variation distance between the two edits'
    ``change_cells`` instead (side and height). ``removed``: G(x_ref, s_org) when already made."""
    if removed is None:
        with torch.no_grad():
            removed = G(x_ref, s_org)
    if tuple(grid) != (1, 2):
        cells_ref = change_cells(x_ref, removed, grid)
        return row_mean(0.5 * (change_cells(x_fake, x_real, grid) - cells_ref).abs().sum(1), rows)
    with torch.no_grad():
        side_ref = laterality(x_ref, removed, pool)
    side_fake, scale = laterality(x_fake, x_real, pool), 1.0
    if logit:
        side_fake, side_ref = (torch.logit(p.clamp(LOGIT_FLOOR, 1 - LOGIT_FLOOR)) for p in (side_fake, side_ref))
        scale = 2 * math.log((1 - LOGIT_FLOOR) / LOGIT_FLOOR)
    return row_mean((side_fake - side_ref).abs(), rows) / scale


def e_laterality_loss(nets: Nets, x_real: torch.Tensor, y_org: torch.Tensor, y_ref: torch.Tensor,
                      x_ref: torch.Tensor, rows: torch.Tensor, *, phys: PhysicsAug | None = None,
                      fixed_ref: torch.Tensor | None = None,
                      fixed_org: torch.Tensor | None = None, logit: bool = False,
                      pool: str = "sum", grid: tuple[int, int] = (1, 2)) -> torch.Tensor:
    """``laterality_gap`` of the reference-guided add G(x_real, E(x_ref)) for E's own update
    (``loss.laterality_e``): its gradient reaches G's input style, so with G frozen E alone."""
    s_trg = style_target(nets, y_ref, None, _through(phys, "e", x_ref), fixed_ref)
    with torch.no_grad():
        s_org = style_code(nets, y_org, x_ref=_through(phys, "e", x_real), fixed=fixed_org)
    G = nets["G"]
    return laterality_gap(G, x_real, G(x_real, s_trg), x_ref, s_org, rows, logit, pool, grid)


def style_geometry(s: torch.Tensor) -> torch.Tensor:
    """Log-distribution over ``GEOMETRY_GRID`` read from the style's first ``GEOMETRY_CELLS`` dims."""
    return nnf.log_softmax(s[:, :GEOMETRY_CELLS].float(), dim=1)


def row_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of per-row ``values`` over ``rows`` (bool or 0 / 1): every row is computed and the
    others weigh 0, so shapes never depend on the data; 0 when no row is selected."""
    return (values * rows).sum() / rows.sum().clamp(min=1)


def _kl_rows(p: torch.Tensor, log_q: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean KL(p || q) over the bool ``rows``."""
    return row_mean((p * (p.clamp(min=1e-12).log() - log_q)).sum(1), rows)


def soft_boxes(u: torch.Tensor, size: int, edge_px: float = 1.0) -> torch.Tensor:
    """(B, 1, size, size) masks in [0, 1], one box per row from uniform draws ``u`` (B, 4): centre
    (y, x) anywhere, half-height and half-width 10-25 % of the side, edges ramped over about
    ``edge_px`` pixels (a hard edge would teach D a seam, not a finding)."""
    c = (torch.arange(size, device=u.device, dtype=u.dtype) + 0.5) / size
    half = 0.10 + 0.15 * u[:, 2:]
    ramp = edge_px / size
    inside_y = torch.sigmoid((half[:, 0:1] - (c[None] - u[:, 0:1]).abs()) / ramp)  # (B, size)
    inside_x = torch.sigmoid((half[:, 1:2] - (c[None] - u[:, 1:2]).abs()) / ramp)
    return (inside_y[:, :, None] * inside_x[:, None, :])[:, None]


def r1_penalty(d_out: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """R1 = 0.5 * E ||grad_x D(x_real)||^2, differentiable (double backward) for the D update."""
    (grad,) = torch.autograd.grad(d_out.float().sum(), x_real, create_graph=True)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


def style_target(nets: Nets, y_trg: torch.Tensor, z_trg: torch.Tensor | None,
                 x_ref: torch.Tensor | None, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """s_trg from a latent code (mapping network) or from a reference image (style encoder)."""
    return style_code(nets, y_trg, z=z_trg, x_ref=x_ref, fixed=fixed)


def _through(phys: PhysicsAug | None, which: str, x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` as the network ``which`` (d, e, sty) sees it under the physics remedies in use."""
    return x if phys is None or x is None else getattr(phys, f"for_{which}")(x)


def d_loss(nets: Nets, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor, *,
           z_trg: torch.Tensor | None = None, x_ref: torch.Tensor | None = None,
           r1_weight: float = 1.0, phys: PhysicsAug | None = None,
           fixed_trg: torch.Tensor | None = None, lambda_cls: float = 0.0,
           lambda_mismatch: float = 0.0, lambda_style_match: float = 0.0,
           fixed_org: torch.Tensor | None = None, lambda_partial: float = 0.0,
           partial: tuple[torch.Tensor, torch.Tensor] | None = None,
           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Discriminator loss: real vs. fake (latent- or reference-guided) plus R1 on real images,
    plus (``lambda_cls``) the classification of the real images' domain and (``lambda_mismatch``)
    real images judged as fake by the head of a domain ``y_trg`` they are not in, and
    (``lambda_style_match``) the style-aware terms: every image judged with its style (real: E's
    code of it; fake: s_trg), and real images with a same-label neighbour's style judged fake.
    With ``lambda_partial`` and ``partial = (mask, rows)`` the rows that remove findings are
    mixed, ``mask * x_real + (1 - mask) * x_fake``, and judged fake by their target's head.

    With ``phys.cfg.d_augment`` D sees augmented real and fake images (R1 at the augmented
    real, as in ADA); ``fixed_trg`` marks rows whose target has the deterministic style."""
    use_r1 = r1_weight > 0
    x_in = _through(phys, "d", x_real).detach().requires_grad_(use_r1)
    # R1 runs in fp32 even under autocast, its gradient too (the gradient's graph is built under
    # the autocast state of the grad call): the norm is small and squared, exactly where bf16
    # rounding hurts.
    fp32 = torch.autocast(x_real.device.type, enabled=False) if use_r1 else contextlib.nullcontext()
    # "D_r1" (when given) is the eager D: compiled graphs cannot be differentiated twice.
    D_real = nets["D_r1"] if use_r1 and "D_r1" in nets else nets["D"]
    s_real = None
    if lambda_style_match > 0:
        with torch.no_grad():  # D judges the pair; E is not trained by D's loss
            s_real = style_code(nets, y_org, x_ref=_through(phys, "e", x_real), fixed=fixed_org)
    with fp32:
        out_real, loss_cls = _judge(D_real, x_in, y_org, lambda_cls, s_real)
        loss_reg = r1_penalty(per_image(out_real), x_in) if use_r1 else out_real.new_zeros(())
    loss_real = adv_loss(out_real, 1.0)

    with torch.no_grad():
        s_trg = style_target(nets, y_trg, z_trg, _through(phys, "e", x_ref), fixed_trg)
        x_fake = nets["G"](x_real, s_trg)
    style = {} if s_real is None else {"s": s_trg}
    loss_fake = adv_loss(nets["D"](_through(phys, "d", x_fake), y_trg, **style), 0.0)

    loss = loss_real + loss_fake + r1_weight * loss_reg
    terms = {"real": loss_real, "fake": loss_fake, "r1": loss_reg}
    if loss_cls is not None:
        loss = loss + lambda_cls * loss_cls
        terms["cls"] = loss_cls
    if lambda_mismatch > 0:
        # Rows without a wrong label weigh 0.
        y_wrong, rows = mismatched(y_org, y_trg)
        per_row = adv_bce(nets["D"](x_in.detach(), y_wrong), 0.0)
        loss_mis = row_mean(per_row, rows)
        loss = loss + lambda_mismatch * loss_mis
        terms["mismatch"] = loss_mis
    if lambda_style_match > 0:
        # The pair (real image, another real image's style of the same label) is fake. Rows with
        # the one deterministic normal style have nothing to swap and weigh 0.
        rows = same_label_partner(y_org, None if fixed_org is None else ~fixed_org)
        per_row = adv_bce(nets["D"](x_in.detach(), y_org, s=s_real.roll(1, 0)), 0.0)
        loss_swap = row_mean(per_row, rows)
        loss = loss + lambda_style_match * loss_swap
        terms["style_match"] = loss_swap
    if lambda_partial > 0 and partial is not None:
        # Rows that do not remove weigh 0.
        mask, rows = partial
        x_mix = mask * x_real + (1 - mask) * x_fake
        per_row = adv_bce(nets["D"](_through(phys, "d", x_mix), y_trg), 0.0)
        loss_partial = row_mean(per_row, rows)
        loss = loss + lambda_partial * loss_partial
        terms["partial"] = loss_partial
    return loss, {k: v.detach() for k, v in terms.items()}


def g_loss(nets: Nets, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor, *,
           z_trgs: tuple[torch.Tensor, torch.Tensor] | None = None,
           x_refs: tuple[torch.Tensor, torch.Tensor] | None = None,
           lambda_sty: float = 1.0, lambda_ds: float = 1.0, lambda_cyc: float = 1.0,
           lambda_cls: float = 0.0, phys: PhysicsAug | None = None, fixed_trg: torch.Tensor | None = None,
           fixed_org: torch.Tensor | None = None, lambda_extent: float = 0.0,
           add_rows: torch.Tensor | None = None, d_style: bool = False, lambda_code_match: float = 0.0,
           code_ref: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
           lambda_id: float = 0.0, cyc_rows: torch.Tensor | None = None,
           cyc_noise: torch.Tensor | None = None, sty_target_fixed: bool = False,
           cyc_fixed_rows: torch.Tensor | None = None, lambda_ds_extent: float = 0.0,
           lambda_geometry: float = 0.0,
           geometry_rows: tuple[torch.Tensor, torch.Tensor | None] | None = None,
           lambda_laterality: float = 0.0, laterality_rows: torch.Tensor | None = None,
           e_code_only: bool = False, laterality_logit: bool = False, laterality_pool: str = "sum",
           laterality_grid: tuple[int, int] = (1, 2), lambda_ref_extent: float = 0.0,
           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator loss: adversarial + style reconstruction - diversity sensitivity + cycle,
    plus the physics terms of ``phys`` (style-encoder invariance, generator equivariance),
    (``lambda_cls``) D's classification of the fake as the target domain and (``lambda_extent``)
    extent consistency over ``add_rows``, the rows that add a finding to a normal source. With
    ``d_style`` the fake is judged together with its style (style-aware D). With
    ``lambda_code_match`` the latent codes must be distributed like E's codes of the real
    references ``code_ref = (x_ref, y_ref, fixed_ref)`` (latent phase). With ``lambda_id`` a real
    image translated with its own style must come back unchanged (identity). ``cyc_rows`` (B,)
    weighs the cycle per row (None: every row 1, the plain mean); ``cyc_noise`` (x_real's shape) is
    added to the fake before the cycle's second pass. With ``sty_target_fixed`` the style
    reconstruction's target is a constant (E updated in the reference phase, ``loss.e_ref``).
    ``cyc_fixed_rows`` (B,) bool: rows whose fake enters the cycle's second pass as a constant.
    With ``lambda_ds_extent`` the two styles' edits must also differ in size (``extent``). With
    ``lambda_geometry`` and ``geometry_rows = (adds, removals)`` (bool rows; removals None where E
    is not trained) an add must change its source where its style's geometry says, and E's code
    of a removal's source must predict where the removal changed it (``change_geometry``). With
    ``lambda_laterality`` (reference phase) each of the bool ``laterality_rows``, which add
    findings to a normal source, must change its source on the side where G's removal of the
    reference (G(x_ref, s_org): the source's normal style) changes the reference."""
    z_trg, z_trg2 = z_trgs if z_trgs is not None else (None, None)
    x_ref, x_ref2 = x_refs if x_refs is not None else (None, None)
    E, G = nets["E"], nets["G"]

    s_trg = style_target(nets, y_trg, z_trg, _through(phys, "e", x_ref), fixed_trg)
    x_fake = G(x_real, s_trg)
    out_fake, loss_cls = _judge(nets["D"], _through(phys, "d", x_fake), y_trg, lambda_cls,
                                s_trg if d_style else None)
    loss_adv = adv_loss(out_fake, 1.0)

    def e_fixed():  # E's passes other than the style target's, under ``e_code_only``
        return frozen([E]) if e_code_only else contextlib.nullcontext()

    with e_fixed():
        s_pred = E(_through(phys, "sty", x_fake), y_trg)
    loss_sty = (s_pred.float() - (s_trg.detach() if sty_target_fixed else s_trg).float()).abs().mean()

    # Diversity sensitivity: two styles for the same target should give different images. The
    # second image is a constant of the loss (no gradient), so it is made without autograd.
    with torch.no_grad():
        s_trg2 = style_target(nets, y_trg, z_trg2, _through(phys, "e", x_ref2), fixed_trg)
        x_fake2 = G(x_real, s_trg2)
    loss_ds = (x_fake.float() - x_fake2.float()).abs().mean()

    # Cycle consistency: back to the source domain with the source's own style.
    with e_fixed():
        s_org = style_code(nets, y_org, x_ref=_through(phys, "e", x_real), fixed=fixed_org)
    x_back = x_fake if cyc_fixed_rows is None else torch.where(cyc_fixed_rows[:, None, None, None], x_fake.detach(), x_fake)
    x_rec = G(x_back if cyc_noise is None else x_back + cyc_noise, s_org)
    if cyc_rows is None:
        loss_cyc = (x_rec.float() - x_real.float()).abs().mean()
    else:
        loss_cyc = ((x_rec.float() - x_real.float()).abs().flatten(1).mean(1) * cyc_rows).mean()

    loss = loss_adv + lambda_sty * loss_sty - lambda_ds * loss_ds + lambda_cyc * loss_cyc
    terms = {"adv": loss_adv, "sty": loss_sty, "ds": loss_ds, "cyc": loss_cyc}
    if lambda_ds_extent > 0:
        loss_dse = (extent(x_fake, x_real) - extent(x_fake2, x_real)).abs().mean()
        loss = loss - lambda_ds_extent * loss_dse
        terms["ds_extent"] = loss_dse
    if lambda_geometry > 0 and geometry_rows is not None:
        adds, removals = geometry_rows
        p_style = style_geometry(s_trg).exp().detach()  # the style says; G must follow
        changed = change_geometry(x_fake, x_real)  # on removal rows: what the removal shows
        loss_geo = _kl_rows(p_style, changed.log(), adds)
        terms["geometry_g"] = loss_geo
        if removals is not None:  # E must predict it (a constant of E's term)
            loss_geo_e = _kl_rows(changed.detach(), style_geometry(s_org), removals)
            loss_geo = loss_geo + loss_geo_e
            terms["geometry_e"] = loss_geo_e
        loss = loss + lambda_geometry * loss_geo
    removed = None  # G's removal of the reference (the source's normal style), for the side and size terms
    if (lambda_laterality > 0 or lambda_ref_extent > 0) and laterality_rows is not None and x_ref is not None:
        with torch.no_grad():
            removed = G(x_ref, s_org)
    if lambda_laterality > 0 and removed is not None:
        loss_lat = laterality_gap(G, x_real, x_fake, x_ref, s_org, laterality_rows, laterality_logit,
                                  laterality_pool, laterality_grid, removed)
        loss = loss + lambda_laterality * loss_lat
        terms["laterality"] = loss_lat
    if lambda_ref_extent > 0 and removed is not None:
        # log ratio: sizes from 0.02 to 0.08 weigh alike, and the gap is on the side term's scale
        ratio = (extent(x_fake, x_real) + EXTENT_FLOOR) / (extent(x_ref, removed) + EXTENT_FLOOR)
        loss_rext = row_mean(ratio.log().abs(), laterality_rows)
        loss = loss + lambda_ref_extent * loss_rext
        terms["ref_extent"] = loss_rext
    if lambda_id > 0:
        loss_id = (G(x_real, s_org).float() - x_real.float()).abs().mean()
        loss = loss + lambda_id * loss_id
        terms["id"] = loss_id
    if lambda_extent > 0 and add_rows is not None:
        # Each adding row's style also goes to another normal source of the batch; the two edits
        # must be the same size; other rows weigh 0.
        partner, paired = partner_rows(add_rows)
        x_other = x_real[partner]
        gap = (extent(x_fake, x_real) - extent(G(x_other, s_trg), x_other)).abs()
        loss_ext = row_mean(gap, paired)
        loss = loss + lambda_extent * loss_ext
        terms["extent"] = loss_ext
    if lambda_code_match > 0 and z_trg is not None and code_ref is not None:
        x_cr, y_cr, fixed_cr = code_ref
        s_cr = style_code(nets, y_cr, x_ref=_through(phys, "e", x_cr), fixed=fixed_cr)
        loss_cm = code_mmd(s_trg, y_trg, _varied(fixed_trg, y_trg), s_cr, y_cr, _varied(fixed_cr, y_cr))
        loss = loss + lambda_code_match * loss_cm
        terms["code_match"] = loss_cm
    if loss_cls is not None:
        loss = loss + lambda_cls * loss_cls
        terms["cls"] = loss_cls
    if phys is not None and phys.cfg.lambda_inv > 0:
        # The style of an image must not depend on its exposure: real and generated images. E of
        # the plain image is already at hand (cycle / style terms) unless a remedy changed its input.
        with e_fixed():
            plain_real = s_org if not phys.cfg.e_input_changed and fixed_org is None else E(x_real, y_org)
            plain_fake = s_pred if not phys.cfg.sty_input_changed else E(x_fake, y_trg)
            loss_inv = sum((E(phys(x), y).float() - plain.float()).abs().mean()
                           for x, y, plain in ((x_real, y_org, plain_real), (x_fake, y_trg, plain_fake)))
        loss = loss + phys.cfg.lambda_inv * loss_inv
        terms["inv"] = loss_inv
    if phys is not None and phys.cfg.lambda_eq > 0:
        # Same draw on both sides: translating a re-exposed image = re-exposing the translation.
        p = phys.params(x_real)
        loss_eq = (G(phys.apply(x_real, p, pointwise=True), s_trg).float()
                   - phys.apply(x_fake, p, pointwise=True).float()).abs().mean()
        loss = loss + phys.cfg.lambda_eq * loss_eq
        terms["eq"] = loss_eq
    return loss, {k: v.detach() for k, v in terms.items()}
