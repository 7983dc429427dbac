"""Truth benchmark of three physics variants x seeds on the phantom (reports/phantom-truth.md).

    python experiments/phantom_truth.py --out runs/phantom-truth --seeds 0,1,2 --jobs 2

Trains, at the demo config's size and budget, the remedy-free StarGAN v2 (``baseline``),
today's default (``default``: configs/demo.yaml as shipped) and ``d-e-augment`` (D and E see
intensity-augmented images, nothing else), one run per variant and seed, then scores every run
with ``xraystyle bench phantom`` and writes ``truth-table.md`` / ``truth-table.json`` (mean +- sd
over seeds, the fixed baselines, every seed's value with its bootstrap 95 % interval). Issue
#16's candidates are more variants (``--variants e-equalized``). Finished runs and benchmarks are
reused: rerun to resume. Figures: ``experiments/truth_figures.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.physics_ablation import BASELINE, VARIANTS, chosen_variants, run, run_all, set_dotted  # noqa: E402
from xraystyle.paths import resolve_config  # noqa: E402

# variant -> (description, overrides of the demo config); None: the demo config untouched.
# D sees augmented images, E reads the soft-equalised image, one deterministic normal style:
# the base of issue #16's candidates that add an objective.
EQ_FIXED = {"physics.d_augment": True, "model.style_input": "equalized", "model.normal_style": "fixed"}
# G edits the source (x + residual) and D is matching-aware: the base of the third round.
RESIDUAL_MISMATCH = {"model.generator_output": "residual", "loss.lambda_mismatch": 1.0}
# The third round's default: both of the above.
RMEF = {**EQ_FIXED, **RESIDUAL_MISMATCH}
# Fourth round, removal: every target another domain; D learning 4x as fast as G (demo lr 2e-4).
CROSS, DLR4 = {"train.target_policy": "toggle"}, {"optim.d_lr": 8.0e-4}
# The fourth round's default (configs/demo.yaml from the fourth round to the eleventh).
RMEF_CROSS_DLR4 = {**RMEF, **CROSS, **DLR4}
# Today's default (configs/demo.yaml since the twelfth round) adds the eleventh round's side term
# at weight 1 with E learning in the reference phase: variant ...-cross-dlr4-lat1-eref below.

TRUTH_VARIANTS: dict[str, tuple[str, dict | None]] = {
    "baseline": ("remedy-free StarGAN v2 (augmentation of all inputs only)", {}),
    "default": ("today's default: configs/demo.yaml as shipped (since issue #16's twelfth round the same "
                "config as residual+mismatch+e-equalized+fixed-cross-dlr4-lat1-eref)", None),
    # the default before issue #16's third round
    "d-e+inv+fixed": VARIANTS["d-e+inv+fixed"],
    "d-e-augment": (VARIANTS["d-e-augment"][0], VARIANTS["d-e-augment"][1]),
    # issue #16 candidate: E reads a soft-equalised image (models/equalize.py), no invariance loss
    "e-equalized": ("D sees augmented images; E reads the soft-equalised image",
                    {"physics.d_augment": True, "model.style_input": "equalized"}),
    "e-equalized+fixed": ("e-equalized with the fixed normal style", EQ_FIXED),
    # issue #16 candidate: D also classifies the domain of real images, G's fakes must be
    # classified as the target (StarGAN v1's auxiliary classifier)
    "cls": ("remedy-free + domain classification loss (lambda_cls 1)", {"loss.lambda_cls": 1.0}),
    # issue #16 candidate: matching-aware D, a real image is fake for another domain's head
    "mismatch": ("remedy-free + matching-aware D (lambda_mismatch 1)", {"loss.lambda_mismatch": 1.0}),
    "mismatch+e-equalized+fixed": ("e-equalized+fixed with the matching-aware D (lambda_mismatch 1)",
                                   {**EQ_FIXED, "loss.lambda_mismatch": 1.0}),
    # issue #16 item 3, removal: a weaker cycle (which rewards leaving the fluid in place)
    "cls-cyc0.25": ("cls with lambda_cyc 0.25", {"loss.lambda_cls": 1.0, "loss.lambda_cyc": 0.25}),
    "cls+e-equalized+fixed": ("e-equalized+fixed with the domain classification loss (lambda_cls 1)",
                              {**EQ_FIXED, "loss.lambda_cls": 1.0}),
    # issue #16, third round: G edits the source (x + residual) instead of re-rendering it
    "residual": ("remedy-free with the residual generator", {"model.generator_output": "residual"}),
    "residual+mismatch": ("residual generator with the matching-aware D (lambda_mismatch 1)",
                          RESIDUAL_MISMATCH),
    "residual+e-equalized+fixed": ("e-equalized+fixed with the residual generator",
                                   {**EQ_FIXED, "model.generator_output": "residual"}),
    "residual+mismatch+e-equalized+fixed": (
        "e-equalized+fixed with the residual generator and the matching-aware D",
        RMEF),
    # the residual skip keeps the source's anatomy by construction, so the cycle, which also
    # rewards leaving a trace of the fluid in a removal, can be weakened or dropped
    "residual+mismatch+e-equalized+fixed-cyc0": ("the above without the cycle loss (lambda_cyc 0)",
                                                 {**RMEF, "loss.lambda_cyc": 0.0}),
    # a diversity term that does not decay to zero (lambda_ds 1 throughout)
    "residual+mismatch+e-equalized+fixed-ds1": ("the above with lambda_ds held at 1",
                                                {**RMEF, "loss.ds_decay_iters": 10**9}),
    # removal: a stronger matching-aware term; twice the steps (diversity decayed over them)
    "residual+mismatch3+e-equalized+fixed": ("the above with lambda_mismatch 3",
                                             {**RMEF, "loss.lambda_mismatch": 3.0}),
    "residual+mismatch+e-equalized+fixed-i3000": ("the above trained 3000 steps", {
        **RMEF, "train.iters": 3000, "loss.ds_decay_iters": 3000}),
    # issue #16, fourth round: removal. D's normal head accepts G's partial removals, so make D
    # the stronger player: a weaker R1 penalty (a sharper D)
    "residual+mismatch+e-equalized+fixed-r1w0.1": ("the above with R1 weight 0.1",
                                                   {**RMEF, "loss.r1_weight": 0.1}),
    # ... D learning 4x as fast as G (two time-scale update rule, Heusel et al. 2017)
    "residual+mismatch+e-equalized+fixed-dlr4": ("the above with D's learning rate 4x G's",
                                                 {**RMEF, **DLR4}),
    # ... every target another domain: the whole batch adds or removes (the paper: half the
    # batch translates into its own domain, which with G's residual is near the identity), and
    # every fake D sees at the normal head is a removal
    "residual+mismatch+e-equalized+fixed-cross": ("the above with cross-domain targets only",
                                                  {**RMEF, **CROSS}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4": ("cross-domain targets and D's learning rate 4x "
                                                       "(the fourth round's default)", RMEF_CROSS_DLR4),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-i3000": (
        "the fourth round's default trained 3000 steps",
        {**RMEF_CROSS_DLR4, "train.iters": 3000, "loss.ds_decay_iters": 3000}),
    # Tenth round: four times the steps (about the hour of research budget on 2 cores),
    # beside the supervised bound at the same steps (experiments/supervised_bound.py).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-i6000": (
        "the fourth round's default trained 6000 steps",
        {**RMEF_CROSS_DLR4, "train.iters": 6000, "loss.ds_decay_iters": 6000}),
    # Fifth round. Reference volume: the added volume follows the source, not the style (style
    # explains under a tenth of its variance), so one style must add the same extent to any
    # normal image. Removal: a discriminator twice as wide, to see the fluid a removal leaves.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-ext10": (
        "the fourth round's default with extent consistency (lambda_extent 10)", {**RMEF_CROSS_DLR4, "loss.lambda_extent": 10.0}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-dw16": (
        "the fourth round's default with D twice as wide (d_base_width 16)", {**RMEF_CROSS_DLR4, "model.d_base_width": 16}),
    # Nothing in the published objective checks that an output shows what its style says except
    # E, which is trained on G's outputs only: a style-aware D learns the agreement from real
    # images (a real image with another's style is fake); reference phases only.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-sm1": (
        "the fourth round's default with the style-aware D (lambda_style_match 1)",
        {**RMEF_CROSS_DLR4, "loss.lambda_style_match": 1.0}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-sm1-latent": (
        "the style-aware D in the latent phases too (latent fakes paired with F's codes)",
        {**RMEF_CROSS_DLR4, "loss.lambda_style_match": 1.0, "loss.style_match_latent": True}),
    # ... with F learning as fast as G (f_lr = lr): can F's codes move to where D accepts them?
    "residual+mismatch+e-equalized+fixed-cross-dlr4-sm1-latent-flr": (
        "the style-aware D in the latent phases too, with F at G's learning rate",
        {**RMEF_CROSS_DLR4, "loss.lambda_style_match": 1.0, "loss.style_match_latent": True,
         "optim.f_lr": 2.0e-4}),
    # Sixth round. The latent pairing's lead without its flaw: F's codes must be distributed like
    # E's codes of real references (kernel MMD, gradients to F and E), so D cannot tell a latent
    # fake by where its code lies; at F's own and at G's learning rate.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-sm1-latent-cm1": (
        "the style-aware D in the latent phases, F's codes matched to E's (lambda_code_match 1)",
        {**RMEF_CROSS_DLR4, "loss.lambda_style_match": 1.0, "loss.style_match_latent": True,
         "loss.lambda_code_match": 1.0}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-sm1-latent-flr-cm1": (
        "the style-aware D in the latent phases, F's codes matched to E's, F at G's learning rate",
        {**RMEF_CROSS_DLR4, "loss.lambda_style_match": 1.0, "loss.style_match_latent": True,
         "loss.lambda_code_match": 1.0, "optim.f_lr": 2.0e-4}),
    # The swap term's weight (the pairing of images with their codes stays on): how much of the
    # latent pairing's identity loss is the swap negatives'?
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-sm{tag}-latent": (
        f"the style-aware D in the latent phases too, swap weight {w}",
        {**RMEF_CROSS_DLR4, "loss.lambda_style_match": w, "loss.style_match_latent": True})
       for tag, w in (("05", 0.5), ("03", 0.3), ("01", 0.1))},
    # Generator equivariance to intensity maps (the first physics ablation's g-equivariance) on
    # the fourth round's default: the edit must scale with the exposure, so the style, not the source's
    # contrast, would be left to set how much fluid there is.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-eq1": (
        "the fourth round's default with generator equivariance (physics.lambda_eq 1)",
        {**RMEF_CROSS_DLR4, "physics.lambda_eq": 1.0}),
    # Seventh round. Removal: with cross-domain targets G never sees a chest already in its
    # target domain, and its 'normal' edit is partly one template for every chest (it darkens the
    # lung bases of fluid-free chests too); the identity term asks G to leave a real image given
    # its own style unchanged.
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-id{tag}": (
        f"the fourth round's default with the identity term (lambda_id {w})", {**RMEF_CROSS_DLR4, "loss.lambda_id": w})
       for tag, w in (("1", 1.0), ("3", 3.0))},
    # ... the cycle on removals (it may reward a removal that leaves a trace of the fluid),
    # dropped, alone and beside the identity term.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cycn0": (
        "the fourth round's default without the cycle on removals (cyc_normal_weight 0)",
        {**RMEF_CROSS_DLR4, "loss.cyc_normal_weight": 0.0}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cycn0-id1": (
        "the fourth round's default without the cycle on removals, with the identity term (lambda_id 1)",
        {**RMEF_CROSS_DLR4, "loss.cyc_normal_weight": 0.0, "loss.lambda_id": 1.0}),
    # ... and whether G's (and E's) width limits removal: twice as wide, D as before.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-gw16": (
        "the fourth round's default with G and E twice as wide (base_width 16, d_base_width 8)",
        {**RMEF_CROSS_DLR4, "model.base_width": 16, "model.d_base_width": 8}),
    # Eighth round. D's normal head scores the model's removals like real normals although a
    # fifth of a large effusion is left: a patch head judges each cell of D's feature map too, so
    # a remnant in one corner is judged where it is (8 x 8 and 16 x 16 cells at 64 px).
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-patch{g}": (
        f"the fourth round's default with D's patch head ({g} x {g} cells)", {**RMEF_CROSS_DLR4, "model.d_patch": g})
       for g in (8, 16)},
    # ... the cycle from a normal source (add, then remove with the normal style: back to the
    # patient exactly) is the one signal that says how much of a patient's fluid to take away;
    # weighted 3x, on its own (removals' cycle at 1) and with every cycle at 3.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cyca3": (
        "the fourth round's default with the cycle of adds at 3, removals' at 1 (lambda_cyc 3, cyc_normal_weight 1/3)",
        {**RMEF_CROSS_DLR4, "loss.lambda_cyc": 3.0, "loss.cyc_normal_weight": 1 / 3}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cyc3": (
        "the fourth round's default with lambda_cyc 3", {**RMEF_CROSS_DLR4, "loss.lambda_cyc": 3.0}),
    # ... D's real/fake heads accept removals with fluid left; the domain classifier on D's trunk
    # (StarGAN v1) is trained on real images' labels alone: does it read the remnant, and G then
    # remove it?
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cls1": (
        "the fourth round's default with D's domain classifier (lambda_cls 1)", {**RMEF_CROSS_DLR4, "loss.lambda_cls": 1.0}),
    # ... and D without intensity augmentation: its brightness / contrast / gamma draws may hide
    # the faint density a removal leaves from D (E still reads the equalised image).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-daug0": (
        "the fourth round's default without D's intensity augmentation (physics.d_augment false)",
        {**RMEF_CROSS_DLR4, "physics.d_augment": False}),
    # ... what a failed removal leaves is the lung base G draws under the fluid, placed otherwise
    # than the patient's: the cycle of an add (normal -> effusion -> normal) is the one place G is told
    # where a hidden base is, unless it hides the answer in the fake; noise before the second pass
    # (sd 0.1) stops that. Alone, and without the cycle of removals (which noise would make ask
    # for a visible trace of the fluid).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cycnoise": (
        "the fourth round's default with noise (sd 0.1) on the fake before the cycle's second pass (loss.cyc_noise 0.1)",
        {**RMEF_CROSS_DLR4, "loss.cyc_noise": 0.1}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cycnoise-cycn0": (
        "the above without the cycle of removals (cyc_normal_weight 0)",
        {**RMEF_CROSS_DLR4, "loss.cyc_noise": 0.1, "loss.cyc_normal_weight": 0.0}),
    # Ninth round: the reference's volume. As published E is trained in the latent phase alone,
    # where it reads codes F made; E's codes of real references are a probe's 0 on volume. E also
    # updated in the reference phase (the issue's own candidate), and beside it a diversity term
    # that does not decay (its gradient is what asks E(x_ref) to tell two references apart).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-eref": (
        "the fourth round's default with E also updated in the reference phase (loss.e_ref)",
        {**RMEF_CROSS_DLR4, "loss.e_ref": True}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-eref-ds1": (
        "the above with lambda_ds held at 1",
        {**RMEF_CROSS_DLR4, "loss.e_ref": True, "loss.ds_decay_iters": 10**9}),
    # ... removal. Every effusion of the data hides the whole lung base, so D may read a visible
    # base as "normal" and accept the fluid a removal leaves at the costophrenic angle: partial
    # removals (a removal mixed with its source inside a random box) as negatives for D's normal
    # head, at the mismatch term's weight.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-partial1": (
        "the fourth round's default with partial removals as D's negatives (loss.lambda_partial 1)",
        {**RMEF_CROSS_DLR4, "loss.lambda_partial": 1.0}),
    # ... a removal must draw the lung the fluid hid, and the way back of an add (normal ->
    # effusion -> normal) is the one place training shows it; through the first pass the cycle
    # lets the add leave that lung readable. The first pass held fixed on adds, and on every row.
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-cycfix-{rows}": (
        f"the fourth round's default with the cycle's first pass held fixed on {rows} (loss.cyc_detach {rows})",
        {**RMEF_CROSS_DLR4, "loss.cyc_detach": rows}) for rows in ("adds", "all")},
    # ... held on adds, an honest way back may need more steps to learn the hidden outline than
    # a readable one: twice the steps (against the fourth round's default at twice the steps, `-i3000`).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-cycfix-adds-i3000": (
        "the fourth round's default with the cycle's first pass held on adds, trained 3000 steps",
        {**RMEF_CROSS_DLR4, "loss.cyc_detach": "adds", "train.iters": 3000, "loss.ds_decay_iters": 3000}),
    # ... the reference's volume: the style decides little of the added size because the
    # diversity term is met by the side; size diversity asks two styles for edits of different
    # sizes, alone and beside extent consistency (one style, the same size on two patients).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-dse1": (
        "the fourth round's default with size diversity (loss.lambda_ds_extent 1)",
        {**RMEF_CROSS_DLR4, "loss.lambda_ds_extent": 1.0}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-dse1-ext10": (
        "the above with extent consistency (loss.lambda_extent 10)",
        {**RMEF_CROSS_DLR4, "loss.lambda_ds_extent": 1.0, "loss.lambda_extent": 10.0}),
    # Tenth round: the reference's volume. E's codes of real references carry little of how high
    # the fluid stands (probe R^2 about 0.1), so no G can render it from them; and G renders little
    # of the size from any style. A part of the style that only the finding's geometry explains:
    # E predicts where a removal changes its source, an add changes its source where its style says.
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-geo{tag}": (
        f"the fourth round's default with the finding's geometry in the style (loss.lambda_geometry {w})",
        {**RMEF_CROSS_DLR4, "loss.lambda_geometry": w}) for tag, w in (("1", 1.0), ("3", 3.0))},
    # ... the side: shown the answer the same networks get it right in 0.85 of references after
    # 1500 steps, so the unpaired objective lacks the signal. The term that ties an output to its
    # style is the style reconstruction (E(G(x, s)) ~ s), never swept: three and ten times.
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-sty{w}": (
        f"the fourth round's default with the style reconstruction weighted {w} (loss.lambda_sty {w})",
        {**RMEF_CROSS_DLR4, "loss.lambda_sty": float(w)}) for w in (3, 10)},
    # Eleventh round: the side. G's removal of a real reference tells its side in about nine of
    # ten (the share of the removal's squared change in each half of the image), the reference-
    # guided add in little over half: an add must change its source on the reference's side
    # (reference phase; G alone, and with E also updated there, its code then asked for the side).
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-lat{w}": (
        f"the fourth round's default with the reference's side (loss.lambda_laterality {w})",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": float(w)}) for w in (1, 3, 10)},
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-lat{w}-eref": (
        f"the reference's side (loss.lambda_laterality {w}) with E also updated in the reference phase",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": float(w), "loss.e_ref": True}) for w in (1, 3, 10)},
    # ... with E in the reference phase the latent adds drift to both sides; if F's codes stay where
    # they were while E's codes of real references move, F's codes matched to E's should help.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat3-eref-cm1": (
        "the reference's side with E in the reference phase and F's codes matched to E's (lambda_code_match 1)",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 3.0, "loss.e_ref": True, "loss.lambda_code_match": 1.0}),
    # ... or F let to follow (F at G's learning rate), or the diversity term held at 1 (it decays to
    # 0 by the last step, and is the one term that asks F's codes for different sides).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat3-eref-flr": (
        "the reference's side with E in the reference phase, F at G's learning rate",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 3.0, "loss.e_ref": True, "optim.f_lr": 2.0e-4}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat3-eref-ds1": (
        "the reference's side with E in the reference phase, lambda_ds held at 1",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 3.0, "loss.e_ref": True, "loss.ds_decay_iters": 10**9}),
    # ... E taught by the side term alone (one more update of E after the reference phase) instead
    # of every reference-phase term reaching it (loss.e_ref).
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat3-elat": (
        "the reference's side, E updated on that term alone (loss.laterality_e)",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 3.0, "loss.laterality_e": True}),
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat3-eref-i3000": (
        "the reference's side with E in the reference phase, trained 3000 steps",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 3.0, "loss.e_ref": True, "train.iters": 3000,
         "loss.ds_decay_iters": 3000}),
    # Twelfth round: E learning in the reference phase through the reference's code alone (its
    # passes on the fake and on the source held fixed, loss.e_ref_code): cheaper; does the side hold?
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat1-erefc": (
        "the reference's side (weight 1) with E updated in the reference phase through the reference's code alone",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 1.0, "loss.e_ref": True, "loss.e_ref_code": True}),
    # ... the side term in log-odds (loss.laterality_scale: logit): many misses are adds the oracle
    # reads on both sides whose change lies mostly on one side, which the shares' gap charges little.
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-lat{w}-eref-logit": (
        f"today's default with the side term in log-odds (loss.laterality_scale logit, weight {w})",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": float(w), "loss.e_ref": True,
         "loss.laterality_scale": "logit"}) for w in (1, 3)},
    # Thirteenth round: each half's change pooled over its largest 2 % (loss.laterality_pool topk):
    # a small effusion on the wrong side, which the oracle counts, weighs about as much as a large
    # one on the right side.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat1-eref-topk": (
        "today's default with each half's change pooled over its largest 2 % (loss.laterality_pool topk)",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 1.0, "loss.e_ref": True, "loss.laterality_pool": "topk"}),
    # ... what reaches a reference-guided output of the reference's acquisition is its scatter
    # (physics_leak.py): E reads through a scatter veil of a random fraction up to 0.5.
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat1-eref-veil": (
        "today's default with E reading through a random scatter veil (physics.e_veil 0.5)",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 1.0, "loss.e_ref": True, "physics.e_veil": 0.5}),
    # ... the reference's size as the side term's sibling: an add changes its source as much as G's
    # removal of the reference changes the reference (loss.lambda_ref_extent, log ratio of extents).
    **{f"residual+mismatch+e-equalized+fixed-cross-dlr4-lat1-eref-rext{w}": (
        f"today's default with the reference's size as a term (loss.lambda_ref_extent {w})",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 1.0, "loss.e_ref": True, "loss.lambda_ref_extent": float(w)})
       for w in (1, 3)},
    # ... today's default trained four times as long (the research budget, about half an hour of
    # both cores): where do the side, removal and the reference's volume go with steps?
    "residual+mismatch+e-equalized+fixed-cross-dlr4-lat1-eref-i6000": (
        "today's default trained 6000 steps",
        {**RMEF_CROSS_DLR4, "loss.lambda_laterality": 1.0, "loss.e_ref": True, "train.iters": 6000,
         "loss.ds_decay_iters": 6000}),
}
# Issue #16 item 1, what limits quality: the remedy-free baseline over base width x steps (one
# seed; ``baseline`` is width 8, 1500 steps). The diversity weight decays over the whole run.
GRID = [(w, it) for it in (1500, 4000) for w in (8, 16, 32) if (w, it) != (8, 1500)]
for _w, _it in GRID:
    TRUTH_VARIANTS[f"baseline-w{_w}-i{_it}"] = (f"remedy-free, base width {_w}, {_it} steps", {
        "model.base_width": _w, "train.iters": _it, "loss.ds_decay_iters": _it})

# (task, mode, metric) shown in the table, in this order; truth.json holds every metric.
TABLE = [
    ("normal->effusion", "latent", "add_validity"),
    ("normal->effusion", "latent", "latent_volume_w1"),
    ("normal->effusion", "latent", "latent_side_tv"),
    ("normal->effusion", "latent", "cf_ssim_vs_ideal_outside"),
    ("normal->effusion", "latent", "cf_l1_vs_ideal"),
    ("normal->effusion", "reference", "add_validity"),
    ("normal->effusion", "reference", "ref_volume_spearman"),
    ("normal->effusion", "reference", "ref_side_accuracy"),
    ("normal->effusion", "reference", "phys_transfer_spearman"),
    ("normal->effusion", "reference", "phys_attr_ratio"),
    ("normal->effusion", "reference", "cf_ssim_vs_ideal_outside"),
    ("effusion->normal", "latent", "remove_validity"),
    ("effusion->normal", "latent", "cf_ssim_vs_ideal_outside"),
    ("effusion->normal", "reference", "remove_validity"),
    ("normal->effusion", "reference", "style_probe_r2_volume"),
    ("normal->effusion", "reference", "style_probe_r2_side"),
    ("normal->effusion", "reference", "style_probe_r2_physics"),
    ("normal->effusion", "reference", "style_probe_r2_volume_null95"),
    ("normal->effusion", "reference", "style_probe_r2_side_null95"),
    ("normal->effusion", "reference", "style_probe_r2_physics_null95"),
]


def variant_config(base: dict, variant: str) -> dict:
    cfg = json.loads(json.dumps(base))
    overrides = TRUTH_VARIANTS[variant][1]
    if overrides is not None:
        for k, val in {**BASELINE, **overrides}.items():
            set_dotted(cfg, k, val)
    return cfg


def one(variant: str, seed: int, a) -> Path:
    name = f"{variant}-s{seed}"
    run_dir, bench_dir = a.out / "runs" / name, a.out / "bench" / name
    log = a.out / "logs" / f"{name}.log"
    if not (run_dir / "checkpoints" / "index.json").exists() or not (run_dir / "done").exists():
        resume = ["--resume"] if (run_dir / "checkpoints").exists() else []
        run([sys.executable, "-m", "xraystyle", "train", "--config", str(a.out / "configs" / f"{variant}.yaml"),
             "--out", str(run_dir), "--seed", str(seed), "--no-progress", *resume], log)
        (run_dir / "done").write_text("trained\n")
    if a.train_only:
        return bench_dir / "truth.json"
    if not (bench_dir / "truth.json").exists():
        run([sys.executable, "-m", "xraystyle", "bench", "phantom", "--checkpoint", str(run_dir), "--out",
             str(bench_dir), "--n-sources", str(a.n_sources), "--n-styles", str(a.n_styles), "--seed", "0",
             "--no-progress"], log)
    return bench_dir / "truth.json"


def cell(values: list[float | None]) -> str:
    v = np.array([x for x in values if x is not None], float)
    if not len(v):
        return "n/a"
    return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else "")


def lookup(truth: dict, model: str, task: str, mode: str, metric: str) -> dict | None:
    for r in truth["rows"]:
        if (r["model"], r["task"], r["mode"], r["metric"]) == (model, task, mode, metric):
            return r
    return None


def _ci(r: dict | None) -> str:
    if r is None or r["value"] is None:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def table(results: dict[str, list[dict]], models: list[str]) -> tuple[str, dict]:
    """Three markdown tables over the TABLE rows: (1) each variant's run and constant-style,
    mean ± sd over seeds; (2) the fixed baselines (identity, exposure-shift, noise, ideal: the same
    sources and draws in every benchmark, so one value with its 95 % CI); (3) every seed's value
    with its bootstrap 95 % CI."""
    variants = list(results)
    fixed = [m for m in models if m not in ("run", "constant-style")]
    t1 = ["| task | mode | metric | " + " | ".join(variants) + " | "
          + " | ".join(f"constant-style ({v})" for v in variants) + " |",
          "|---|---|---|" + "---|" * (2 * len(variants))]
    t2 = ["| task | mode | metric | n | " + " | ".join(fixed) + " |", "|---|---|---|---|" + "---|" * len(fixed)]
    t3 = ["| task | mode | metric | " + " | ".join(f"{v} s{i}" for v in variants for i in range(len(results[v])))
          + " |", "|---|---|---|" + "---|" * sum(len(r) for r in results.values())]
    data: dict = {}
    for task, mode, metric in TABLE:
        key = f"{task}|{mode}|{metric}"
        head = f"| {task} | {mode} | {metric} | "
        runs, const = [], []
        for v in variants:
            for model, out in (("run", runs), ("constant-style", const)):
                found = [lookup(t, model, task, mode, metric) for t in results[v]]
                vals = [r["value"] if r else None for r in found]
                out.append(cell(vals))
                data.setdefault(key, {})[f"{v}:{model}"] = {
                    "values": vals, "ci95": [r["ci95"] if r else None for r in found],
                    "n": [r["n"] if r else None for r in found]}
        t1.append(head + " | ".join(runs + const) + " |")
        first = results[variants[0]][0]
        fixed_rows = [lookup(first, m, task, mode, metric) for m in fixed]
        n = next((r["n"] for r in fixed_rows if r), "")
        t2.append(head + f"{n} | " + " | ".join(_ci(r) for r in fixed_rows) + " |")
        for m, r in zip(fixed, fixed_rows):
            data[key][m] = r
        t3.append(head + " | ".join(_ci(lookup(t, "run", task, mode, metric)) for v in variants for t in results[v]) + " |")
    md = ("### Runs (mean ± sd over seeds)\n\n" + "\n".join(t1)
          + "\n\n### Fixed baselines (value [95 % CI])\n\n" + "\n".join(t2)
          + "\n\n### Every run (value [95 % CI, bootstrap over sources])\n\n" + "\n".join(t3))
    return md, data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", default="baseline,d-e+inv+fixed,d-e-augment")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--config", default="demo")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one CPU thread each)")
    p.add_argument("--n-sources", type=int, default=40)
    p.add_argument("--n-styles", type=int, default=6)
    p.add_argument("--train-only", action="store_true", help="train, do not benchmark")
    p.add_argument("--table-only", action="store_true", help="tabulate finished benchmarks, start nothing")
    p.add_argument("--table", default="truth-table", help="name of the table files (.md / .json) in --out")
    a = p.parse_args()
    variants = chosen_variants(p, a.variants, TRUTH_VARIANTS)
    seeds = [int(s) for s in a.seeds.split(",")]
    for sub in ("runs", "bench", "logs", "configs"):
        (a.out / sub).mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(resolve_config(a.config).read_text())
    for v in variants:
        (a.out / "configs" / f"{v}.yaml").write_text(yaml.safe_dump(variant_config(base, v), sort_keys=False))

    jobs = [] if a.table_only else [(v, s) for s in seeds for v in variants]
    run_all(jobs, lambda v, s: one(v, s, a), a.jobs)
    if a.train_only:
        return

    results: dict[str, list[dict]] = {}
    for v in variants:
        found = [a.out / "bench" / f"{v}-s{s}" / "truth.json" for s in seeds]
        results[v] = [json.loads(t.read_text()) for t in found if t.exists()]
    results = {v: r for v, r in results.items() if r}
    if not results:
        sys.exit("no finished benchmarks")
    models = list(dict.fromkeys(r["model"] for r in next(iter(results.values()))[0]["rows"]))
    md, data = table(results, models)
    meta = (f"config {a.config} ({base['model']['img_size']} px, {base['train']['iters']} iterations; each "
            f"variant's overrides in {a.out / 'configs'}), seeds {a.seeds}; bench: {a.n_sources} sources per "
            f"task, {a.n_styles} styles / references, seed 0.")
    (a.out / f"{a.table}.md").write_text(meta + "\n\n" + md + "\n")
    (a.out / f"{a.table}.json").write_text(json.dumps({"meta": meta, "cells": data}, indent=1))
    print(meta + "\n\n" + md)


if __name__ == "__main__":
    main()
