"""Ground truth on the phantom: a judge built from the phantom's own masks, whose accuracy is
measured, so the classifier's verdicts can be checked against it.

The phantom's findings change the attenuation in known places (xraystyle/phantom/
findings.py): effusion and cardiomegaly add density (brighter), a nodule adds a small
bright disc, a pneumothorax removes lung markings and density (darker). The oracle compares an
output with its source on per-image percentile ranks: ``rank`` maps each pixel to its
percentile within its own image, which no monotonic grey-level change (exposure, contrast,
gamma, windowing) alters, so a style that only re-exposes an image scores ~0. With ``pol`` the
finding's polarity (+1 brighter, -1 darker, measured in calibration):

- removing a finding: ``d = -pol * mean over the source's own mask (mask_<finding>) of
  (rank(output) - rank(source))``; the prior below stands in when the manifest has no mask;
- adding a finding (the source has no mask of a finding it lacks): ``d = mean of the k
  largest values of pol * (rank(output) - rank(source))``, smoothed over 3 x 3 pixels, within
  the *prior*'s support (pixels covered by the mask of any calibration positive), k = half the
  finding's mean mask area: a local detector, since a nodule or an effusion occupies only
  part of where it can occur.

The finding counts as changed when ``d > margin``. A verdict also needs the patient kept:
outside the prior's support, the mean absolute rank change between output and source must stay
below ``anatomy_limit`` (the largest value seen between two acquisitions of one calibration
patient, plus 25 %), so noise or another patient never passes as a counterfactual.

Calibration (cached per finding, image size, preprocessing and phantom generator version): ``n`` phantom patients are
rendered with ``render_phantom`` with and without the finding, each under two independent
random acquisitions (``draw_physics``: the generator may change exposure too), quantised and
preprocessed exactly like cohort images. For adding, positives are (patient without, physics
1) -> (same patient with the finding, physics 2) and negatives (without, 1) -> (without, 2);
removal mirrors it. The first half of the patients fixes polarity, prior, k, the margins
(Youden's J) and the anatomy limit; the second half measures the oracle's sensitivity,
specificity and balanced accuracy, and how often the anatomy gate rejects a different
patient, reported with every evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation.roc import balanced_accuracy, youden_threshold
from ..transforms.config import PreprocessConfig

log = logging.getLogger(__name__)

ORACLE_VERSION = 2
DIRECTIONS = ("add", "remove")
_PHANTOM_ID = re.compile(r"^phantom-\d+$")


def is_phantom_manifest(manifest) -> bool:
    """A cohort written by ``generate_phantom_cohort`` (its patient ids and mask columns)."""
    df = manifest.df
    return (len(df) > 0 and any(c.startswith("mask_") for c in df.columns)
            and bool(df["patient_id"].astype(str).str.match(_PHANTOM_ID).all()))


def rank_image(x: torch.Tensor) -> torch.Tensor:
    """Per-image percentile rank of each pixel, (N, S, S) or (N, 1, S, S) -> same shape, [0, 1]."""
    flat = x.reshape(x.shape[0], -1).float()
    ranks = flat.argsort(dim=1, stable=True).argsort(dim=1).float() / max(flat.shape[1] - 1, 1)
    return ranks.reshape(x.shape)


def region_delta(out: torch.Tensor, src: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean rank change per pair. out, src (N, S, S); weight (N|1, S, S) >= 0."""
    w = weight.float().expand_as(out)
    diff = rank_image(out) - rank_image(src)
    return (diff * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp(min=1e-9)


def local_rise(out: torch.Tensor, src: torch.Tensor, support: torch.Tensor, k: int, polarity: float) -> torch.Tensor:
    """Mean of the k largest 3x3-smoothed ``polarity * rank change`` values inside ``support``
    ((S, S) bool), per pair."""
    diff = polarity * (rank_image(out) - rank_image(src))
    diff = F.avg_pool2d(diff[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    values = diff[:, support]
    return values.topk(max(1, min(int(k), values.shape[1])), dim=1).values.mean(dim=1)


@dataclass
class OracleRule:
    margin: float  # the change counts when its statistic d > margin
    sensitivity: float  # on the held-out calibration pairs
    specificity: float
    balanced_accuracy: float
    n_test_pairs: int


@dataclass
class FindingModel:
    polarity: float  # +1: the finding brightens its region, -1: darkens it
    k: int  # pixels averaged by the add statistic
    prior: np.ndarray  # (S, S) share of calibration positives whose mask covers each pixel
    rules: dict[str, OracleRule]  # "add" / "remove"
    anatomy_limit: float = float("inf")  # mean |rank change| outside the prior, same patient
    anatomy_same_pass: float = float("nan")  # held-out: same patient, other physics, passes
    anatomy_other_reject: float = float("nan")  # held-out: another patient is rejected


def anatomy_change(out: torch.Tensor, src: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """Mean |rank change| over ``outside`` ((S, S) bool) per pair."""
    return (rank_image(out) - rank_image(src)).abs()[:, outside].mean(dim=1)


@dataclass
class PhantomOracle:
    size: int
    models: dict[str, FindingModel]
    calibration: dict = field(default_factory=dict)

    @property
    def findings(self) -> list[str]:
        return list(self.models)

    def prior(self, finding: str) -> torch.Tensor:
        return torch.from_numpy(self.models[finding].prior)

    def add_statistic(self, out: torch.Tensor, src: torch.Tensor, finding: str) -> torch.Tensor:
        m = self.models[finding]
        return local_rise(out, src, self.prior(finding) > 0, m.k, m.polarity)

    def remove_statistic(self, out: torch.Tensor, src: torch.Tensor, finding: str,
                         src_mask: torch.Tensor | None = None) -> torch.Tensor:
        w = self.prior(finding)[None].expand_as(out).clone()
        if src_mask is not None:
            has = src_mask.reshape(len(out), -1).any(dim=1)
            w[has] = src_mask[has].float()
        return -self.models[finding].polarity * region_delta(out, src, w)

    def added(self, out: torch.Tensor, src: torch.Tensor, finding: str) -> torch.Tensor:
        """Bool per pair: ``finding`` appeared. out, src (N, S, S) in [-1, 1]."""
        return self.add_statistic(out, src, finding) > self.models[finding].rules["add"].margin

    def removed(self, out: torch.Tensor, src: torch.Tensor, finding: str,
                src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Bool per pair: ``finding`` left the source's mask (N, S, S) (or the prior)."""
        d = self.remove_statistic(out, src, finding, src_mask)
        return d > self.models[finding].rules["remove"].margin

    def anatomy_kept(self, out: torch.Tensor, src: torch.Tensor, findings: list[str]) -> torch.Tensor:
        """Bool per pair: outside every listed finding's prior, the patient is unchanged."""
        outside = torch.ones(self.size, self.size, dtype=torch.bool)
        for f in findings:
            outside &= ~(self.prior(f) > 0)
        limit = min(self.models[f].anatomy_limit for f in findings)
        return anatomy_change(out, src, outside) <= limit

    def changed(self, out: torch.Tensor, src: torch.Tensor, added: str | None, removed: str | None,
                src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Bool per pair: every asked change happened (anatomy not checked)."""
        ok = torch.ones(len(out), dtype=torch.bool)
        if added is not None:
            ok &= self.added(out, src, added)
        if removed is not None:
            ok &= self.removed(out, src, removed, src_mask)
        return ok

    def judge(self, out: torch.Tensor, src: torch.Tensor, added: str | None, removed: str | None,
              src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Bool per pair: the patient is kept and every asked change happened. Shapes as in
        :meth:`removed`."""
        kept = self.anatomy_kept(out, src, [f for f in (added, removed) if f is not None])
        return kept & self.changed(out, src, added, removed, src_mask)

    def report(self) -> dict:
        out = {f: {"polarity": m.polarity, "k": m.k, **{d: asdict(r) for d, r in m.rules.items()},
                   "anatomy": {"limit": m.anatomy_limit, "same_patient_pass": m.anatomy_same_pass,
                               "other_patient_reject": m.anatomy_other_reject}}
               for f, m in self.models.items()}
        return {"findings": out, "protocol": self.calibration}


# ----------------------------------------------------------------------------- calibration


def _render_pair_set(finding: str, size: int, n: int, seed: int, cfg: PreprocessConfig, lung_source: str):
    """Images A (without, physics 1), B (with, physics 1), C (without, physics 2), D (with,
    physics 2) and B's masks, all (n, S, S) tensors in the pipeline's [-1, 1] units."""
    from ..transforms import preprocess_array
    from .generator import draw_physics, render_phantom
    from .physics import quantize

    def prep(sample) -> torch.Tensor:
        bits = int(sample.physics["bit_depth"])
        stored = quantize(sample.image, bits).astype(np.float32)  # what a cohort file holds
        return torch.as_tensor(preprocess_array(stored, None, cfg)["image"])[0]

    out = {k: [] for k in "ABCD"}
    masks = []
    for i in range(n):
        # An int per patient, not a SeedSequence: render_phantom spawns from the object it is
        # given, so reusing one would render a different patient every call.
        patient, phys = (int(v) for v in np.random.SeedSequence([seed, i]).generate_state(2))
        rng = np.random.default_rng(phys)
        p1, p2 = draw_physics(rng), draw_physics(rng)
        for key, present, p in (("A", False, p1), ("B", True, p1), ("C", False, p2), ("D", True, p2)):
            sample = render_phantom(patient, size, {finding: present}, p, lung_source=lung_source)
            out[key].append(prep(sample))
            if key == "B":
                masks.append(torch.from_numpy(sample.masks[finding]))
    return {k: torch.stack(v) for k, v in out.items()}, torch.stack(masks)


def _fit_rule(d_pos: np.ndarray, d_neg: np.ndarray, t_pos: np.ndarray, t_neg: np.ndarray) -> OracleRule:
    """Margin from the fit pairs (Youden's J), accuracy on the held-out pairs."""
    scores = np.concatenate([d_pos, d_neg])
    labels = np.concatenate([np.ones(len(d_pos)), np.zeros(len(d_neg))])
    margin = youden_threshold(scores, labels, default=0.0)
    hit_pos, hit_neg = t_pos > margin, t_neg > margin
    pred = np.concatenate([hit_pos, hit_neg])
    truth = np.concatenate([np.ones(len(t_pos), bool), np.zeros(len(t_neg), bool)])
    return OracleRule(float(margin), float(hit_pos.mean()), float((~hit_neg).mean()),
                      float(balanced_accuracy(pred, truth)), int(len(t_pos) + len(t_neg)))


def calibrate_finding(finding: str, size: int, cfg: PreprocessConfig, n: int = 64, seed: int = 0,
                      lung_source: str = "auto") -> FindingModel:
    """Polarity, prior, k and add/remove rules of one finding (see the module docstring)."""
    img, masks = _render_pair_set(finding, size, n, seed, cfg, lung_source)
    half = n // 2
    fit, test = slice(0, half), slice(half, n)
    prior = masks[fit].float().mean(dim=0)
    polarity = 1.0 if float(region_delta(img["B"][fit], img["A"][fit], masks[fit]).mean()) >= 0 else -1.0
    k = max(1, int(round(float(masks[fit].float().sum(dim=(1, 2)).mean()) / 2)))
    model = FindingModel(polarity, k, prior.numpy().astype(np.float32), {})
    oracle = PhantomOracle(size, {finding: model})

    def stats(sl, direction):
        if direction == "add":  # source A -> with (D) / without (C)
            return (oracle.add_statistic(img["D"][sl], img["A"][sl], finding).numpy(),
                    oracle.add_statistic(img["C"][sl], img["A"][sl], finding).numpy())
        m = masks[sl]  # source B -> without (C) / with (D)
        return (oracle.remove_statistic(img["C"][sl], img["B"][sl], finding, m).numpy(),
                oracle.remove_statistic(img["D"][sl], img["B"][sl], finding, m).numpy())

    for direction in DIRECTIONS:
        model.rules[direction] = _fit_rule(*stats(fit, direction), *stats(test, direction))

    outside = ~(prior > 0)

    def same_patient(sl):
        return torch.cat([anatomy_change(img[o][sl], img[a][sl], outside)
                          for a, o in (("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"))])

    model.anatomy_limit = float(same_patient(fit).max()) * 1.25
    model.anatomy_same_pass = float((same_patient(test) <= model.anatomy_limit).float().mean())
    other = anatomy_change(img["C"][test].roll(1, dims=0), img["A"][test], outside)  # patient i vs i-1
    model.anatomy_other_reject = float((other > model.anatomy_limit).float().mean())
    return model


def load_oracle(findings: list[str], size: int, cfg: PreprocessConfig, *, n: int = 64, seed: int = 0,
                lung_source: str = "auto", cache_dir: str | Path | None = None) -> PhantomOracle:
    """Calibrated oracle for ``findings`` (phantom findings only), cached under the cache dir."""
    from ..paths import cache_dir as default_cache
    from .default import generator_version
    from .generator import FINDINGS as PHANTOM_FINDINGS

    unknown = [f for f in findings if f not in PHANTOM_FINDINGS]
    if unknown:
        raise ValueError(f"no phantom oracle for {', '.join(unknown)} (phantom findings: {', '.join(PHANTOM_FINDINGS)})")
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    pre = {"size": cfg.size, "lower": cfg.lower_percentile, "upper": cfg.upper_percentile}
    models = {}
    for f in findings:
        # the generator's hash: a calibration of an older phantom must not judge today's renders
        key_src = json.dumps({"v": ORACLE_VERSION, "f": f, "size": size, "pre": pre, "n": n, "seed": seed,
                              "lungs": lung_source, "generator": generator_version()}, sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        path = root / "oracle" / f"{f}-{size}px-{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                models[f] = FindingModel(meta["polarity"], meta["k"], z["prior"],
                                         {d: OracleRule(**r) for d, r in meta["rules"].items()},
                                         meta["anatomy_limit"], meta["anatomy_same_pass"],
                                         meta["anatomy_other_reject"])
            continue
        log.info("calibrating the phantom oracle for %s at %d px (%d patients)", f, size, n)
        m = models[f] = calibrate_finding(f, size, cfg, n=n, seed=seed, lung_source=lung_source)
        meta = {"polarity": m.polarity, "k": m.k, "rules": {d: asdict(r) for d, r in m.rules.items()},
                "anatomy_limit": m.anatomy_limit, "anatomy_same_pass": m.anatomy_same_pass,
                "anatomy_other_reject": m.anatomy_other_reject}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, prior=m.prior, meta=json.dumps(meta))
        os.replace(tmp, path)
    protocol = {"patients": n, "fit": n // 2, "test": n - n // 2, "seed": seed, "lung_source": lung_source,
                "statistic": "per-image percentile rank change: top-k local rise in the prior (add), "
                             "mean over the source mask (remove)"}
    return PhantomOracle(size, models, protocol)
