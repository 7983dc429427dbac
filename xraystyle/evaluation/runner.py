"""The evaluation loop: every source -> target domain pair, latent- and reference-guided.

For each source domain, up to ``limit`` real images of the evaluation split are translated
into every other domain with K styles each (K random latent codes, or K references drawn from
the target domain's real images of the same split, seeded), as in the StarGAN v2 protocol.
Each (pair, mode) gets: counterfactual validity and probability shifts (counterfactual.py),
FID against real target-domain images in the classifier's feature space and, when its weights
are cached, Inception space (features.py), diversity among the K outputs (diversity.py),
identity preservation outside the finding (identity.py), physics leakage (physics.py) and, on
phantom cohorts, the oracle's verdict and its agreement with the classifier (oracle.py).

:func:`run_evaluation` returns an :class:`EvalResult` (metrics dict + arrays for plots);
:func:`evaluate_model` is the fast variant for training loops, returning flat scalars.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..cohorts.manifest import Manifest, load_manifest
from ..cohorts.vocabulary import NORMAL
from ..errors import ConfigError, MissingWeightsError
from ..models.args import ModelArgs
from ..models.translate import translate_latent, translate_reference
from ..trained import TrainedModel
from .counterfactual import pair_changes, success, validity_summary
from .data import ImageSet, cached_arrays, check_domains, load_set, manifest_prior, select_rows, source_masks
from .diversity import pairwise_feature_distance, pairwise_l1
from .features import FeatureStats, frechet_distance
from .identity import identity_scores
from .physics import PHYSICS_COLUMNS, global_stats, image_descriptors, leakage_summary, style_physics_leakage

log = logging.getLogger(__name__)

MODES = ("latent", "reference")
PRIOR_REGION = 0.05  # a pixel is "where the finding goes" when this share of positives covers it


@dataclass
class EvalOptions:
    split: str = "test"  # sources and references
    n_styles: int = 10  # K outputs per source (paper: 10)
    modes: tuple[str, ...] = MODES
    limit: int | None = None  # at most this many sources per source domain
    seed: int = 0
    batch_size: int = 32  # images per forward pass
    fid_split: str = "train"  # real target-domain images for FID (paper: training images)
    max_real: int | None = 2000  # real images per domain for FID, real rates and spreads
    inception: bool = True  # Inception FID when the weights are cached
    lpips: bool = True  # LPIPS diversity when the weights are cached
    oracle: str = "auto"  # auto (phantom cohorts), on, off
    oracle_patients: int = 64
    n_examples: int = 4  # sources shown per pair in example grids
    progress: bool = True

    def __post_init__(self):
        if self.n_styles < 1:
            raise ConfigError(f"--n-styles must be >= 1, got {self.n_styles}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ConfigError(f"--mode must be latent, reference or both, got {', '.join(bad) or 'nothing'}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.oracle not in ("auto", "on", "off"):
            raise ConfigError(f"oracle must be auto, on or off, got {self.oracle!r}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.oracle_patients < 4:
            raise ConfigError(f"--oracle-patients must be >= 4, got {self.oracle_patients}")


def as_trained_model(model_like, cfg=None, step: int | None = None) -> TrainedModel:
    """A TrainedModel as it is, or networks (a mapping with G, F, E, or an object with
    ``.ema``/``.nets``) plus the RunConfig ``cfg`` they were built from (the trainer's in-memory
    EMA copies)."""
    if isinstance(model_like, TrainedModel):
        model = model_like
    else:
        if cfg is None:
            raise ConfigError("evaluate: pass cfg= (the RunConfig) with in-memory networks")
        nets = model_like
        for attr in ("ema", "nets"):  # a TrainState-like object: prefer its EMA copies
            if getattr(model_like, attr, None) is not None:
                nets = getattr(model_like, attr)
                break
        try:
            complete = all(k in nets for k in ("G", "F", "E"))  # nn.ModuleDict is not a Mapping
        except TypeError:  # not a container of networks
            complete = False
        if not complete:
            raise ConfigError("evaluate: the networks must include G, F and E")
        model = TrainedModel.from_networks(nets, ModelArgs.from_run(cfg),
                                           step if step is not None else getattr(model_like, "step", None))
    if model.labels.kind != "domains":
        raise ConfigError("evaluate: multi-label (finding-set) models are evaluated per finding and per set "
                          "by evaluation.sets.run_set_evaluation (xraystyle eval picks it)")
    return model


@dataclass
class PairArrays:
    """Per-output arrays of one (pair, mode), kept for plots (not written to metrics.json)."""

    shift_added: np.ndarray | None = None
    shift_removed: np.ndarray | None = None
    examples: np.ndarray | None = None  # (rows, 1 + styles, S, S) in [-1, 1]: source, outputs


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    arrays: dict[tuple[str, str, str], PairArrays] = field(default_factory=dict)


def optional_extractor(kind: str, enabled: bool, loader, device):
    """(extractor or None, availability record) for Inception / LPIPS."""
    if not enabled:
        return None, {"available": False, "reason": "disabled"}
    try:
        return loader(device), {"available": True}
    except MissingWeightsError as exc:
        log.info("%s unavailable: %s", kind, exc)
        return None, {"available": False, "reason": str(exc)}


class Judges:
    """Classifier, optional Inception and LPIPS, optional oracle: one place that batches them."""

    def __init__(self, classifier, inception, lpips, oracle, batch_size: int):
        self.clf, self.inception, self.lpips, self.oracle = classifier, inception, lpips, oracle
        self.bs = batch_size

    def run(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        probs, feats, inc = [], [], []
        for i in range(0, len(x), self.bs):
            xb = x[i:i + self.bs]
            logits, f = self.clf.logits_and_features(xb)
            probs.append(torch.sigmoid(logits).cpu())
            feats.append(f.cpu())
            if self.inception is not None:
                inc.append(self.inception(xb).cpu())
        out = {"probs": torch.cat(probs).double().numpy(), "feats": torch.cat(feats).double().numpy()}
        if inc:
            out["inception"] = torch.cat(inc).double().numpy()
        return out


def _real_arrays(judges: Judges, real: ImageSet, cache_dir: Path, progress: bool, what: str) -> dict[str, np.ndarray]:
    def compute():
        parts = []
        bar = tqdm(total=len(real), desc=f"features {what}", unit="img", disable=not progress, leave=False)
        for i in range(0, len(real), judges.bs):
            parts.append(judges.run(real.batch(np.arange(i, min(i + judges.bs, len(real))))))
            bar.update(min(judges.bs, len(real) - i))
        bar.close()
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    ids = {"rows": real.key, "n": len(real), "classifier": judges.clf.identity,
           "inception": None if judges.inception is None else judges.inception.identity}
    return cached_arrays(cache_dir, ids, compute) if len(real) else {}


def _fid(feats: np.ndarray, real: dict, key: str) -> float:
    if key not in real or len(real[key]) < 2 or len(feats) < 2:
        return float("nan")
    return frechet_distance(FeatureStats.of(feats), FeatureStats.of(real[key]))


def output_scores(x_out: torch.Tensor, x_rep: torch.Tensor, x_src: torch.Tensor, keep: torch.Tensor,
                  K: int) -> dict[str, np.ndarray]:
    """Identity (SSIM, L1) of each of the K outputs per source against its source, and global
    intensity statistics of outputs (b, K, 2) and sources (b, 2), all over the ``keep`` pixels."""
    keep_rep = keep.repeat_interleave(K, dim=0)
    ssim, l1 = identity_scores(x_out, x_rep, keep_rep)
    return {"ssim": ssim, "l1": l1, "stats_out": global_stats(x_out, keep_rep).reshape(len(keep), K, 2),
            "stats_src": global_stats(x_src, keep)}


def _keep_mask(src_mask: torch.Tensor | None, prior: np.ndarray | None, n: int, size: int) -> torch.Tensor:
    """(n, S, S) True outside the finding region (source masks and the added finding's prior)."""
    keep = torch.ones(n, size, size, dtype=torch.bool)
    if src_mask is not None:
        keep &= ~src_mask
    if prior is not None:
        keep &= ~torch.from_numpy(prior >= PRIOR_REGION)[None]
    return keep


def run_evaluation(model_like, manifest: Manifest | str | Path, classifier, options: EvalOptions | None = None, *,
                   cfg=None, cache_dir: str | Path | None = None) -> EvalResult:
    """Evaluate a model on a cohort with an independent classifier (see the module docstring)."""
    from ..paths import cache_dir as default_cache
    from ..phantom.oracle import is_phantom_manifest, load_oracle
    from .diversity import load_lpips
    from .features import load_inception

    opt = options or EvalOptions()
    model = as_trained_model(model_like, cfg)
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    check_domains(manifest, model.domains, classifier)
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    tensors, feature_cache = root / "tensors", root / "eval-features"
    size, K, domains = model.size, opt.n_styles, model.domains
    findings = classifier.findings
    thr = classifier.thresholds.detach().cpu().double().numpy()

    inception, inception_info = optional_extractor("Inception FID", opt.inception, load_inception, classifier.device)
    lpips_net, lpips_info = optional_extractor("LPIPS", opt.lpips, load_lpips, classifier.device)
    oracle, oracle_info = None, {"available": False, "reason": "off"}
    model_findings = [d for d in domains if d != NORMAL]
    if opt.oracle != "off":
        phantom = is_phantom_manifest(manifest)
        if phantom or opt.oracle == "on":
            try:
                oracle = load_oracle(model_findings, size, model.preprocess, n=opt.oracle_patients,
                                     cache_dir=root)
                oracle_info = {"available": True, **oracle.report()}
            except ValueError as exc:
                oracle_info = {"available": False, "reason": str(exc)}
        else:
            oracle_info = {"available": False, "reason": "not a phantom cohort"}
    judges = Judges(classifier, inception, lpips_net, oracle, opt.batch_size)

    # Real images: sources/references of the split, FID/reference statistics of the fid split.
    sources, pools, reals, real_arr, priors = {}, {}, {}, {}, {}
    for d in domains:
        sources[d] = load_set(select_rows(manifest, domains, d, opt.split, opt.limit, opt.seed), model.preprocess,
                              tensors, opt.progress)
        pools[d] = load_set(select_rows(manifest, domains, d, opt.split, opt.max_real, opt.seed + 1),
                            model.preprocess, tensors, opt.progress)
        reals[d] = load_set(select_rows(manifest, domains, d, opt.fid_split, opt.max_real, opt.seed + 2),
                            model.preprocess, tensors, opt.progress)
        real_arr[d] = _real_arrays(judges, reals[d], feature_cache, opt.progress, d)
        if d != NORMAL:
            priors[d] = oracle.models[d].prior if oracle is not None else manifest_prior(manifest, d, size)

    pairs = [(s, t, m) for m in opt.modes for s in domains for t in domains if s != t]
    arrays: dict[tuple[str, str, str], PairArrays] = {}
    rows: list[dict[str, Any]] = []
    n_work = sum(len(sources[s]) for s, _t, _m in pairs)
    bar = tqdm(total=n_work, desc="evaluate", unit="src", disable=not opt.progress, dynamic_ncols=True)
    for s, t, mode in pairs:
        src_set = sources[s]
        row: dict[str, Any] = {"source": s, "target": t, "mode": mode, "n_sources": len(src_set),
                               "n_styles": K, "n_real_target": len(reals[t])}
        if len(src_set) == 0:
            log.warning("no images of split %s labelled %s: pair %s -> %s skipped", opt.split, s, s, t)
            rows.append(row)
            continue
        if mode == "reference" and len(pools[t]) == 0:
            log.warning("no images of split %s labelled %s to draw references from: %s -> %s skipped",
                        opt.split, t, s, t)
            rows.append(row)
            continue
        row.update(_evaluate_pair(model, judges, src_set, pools[t], real_arr[t], reals[t], s, t, mode,
                                  priors.get(t), opt, arrays, bar, domains, findings, thr))
        rows.append(row)
    bar.close()

    metrics = {
        "meta": {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": None if model.checkpoint is None else str(model.checkpoint), "checkpoint_sha256": model.checkpoint_sha256, "step": model.step,
            "labels": model.labels.kind, "domains": domains, "image_size": size,
            "classifier": {"name": classifier.name, "identity": classifier.identity, "findings": findings,
                           "thresholds": [round(float(v), 6) for v in thr],
                           "input_size": classifier.input_size},
            "split": opt.split, "fid_split": opt.fid_split, "n_styles": K, "modes": list(opt.modes),
            "limit": opt.limit, "seed": opt.seed, "max_real": opt.max_real,
            "manifest_hash": manifest.content_hash(),
            "n_sources": {d: len(sources[d]) for d in domains}, "n_real": {d: len(reals[d]) for d in domains},
            "inception": inception_info, "lpips": lpips_info, "oracle": oracle_info,
        },
        "style_physics": style_physics_report(model, pools, opt.batch_size),
        "pairs": rows,
        "summary": summarise(rows),
    }
    return EvalResult(metrics, arrays)


@torch.no_grad()
def style_physics_report(model: TrainedModel, pools: dict[str, ImageSet], batch_size: int) -> dict[str, Any]:
    """Does the style encoder read the acquisition? Cross-validated R^2 of the known physics
    parameters (phantom ``phys_*`` columns) from E's style codes of real images, per domain,
    beside the R^2 from the images' own intensity descriptors (physics/style_physics_leakage).
    Domains with the deterministic style are skipped: their codes are never used."""
    out: dict[str, Any] = {}
    dev = model.device
    for d, pool in pools.items():
        df = pool.manifest.df
        if len(pool) < 10 or not all(c in df.columns for c in PHYSICS_COLUMNS):
            continue
        y = torch.full((len(pool),), model.domains.index(d), dtype=torch.long)
        fixed = model.fixed(y[:1])
        if fixed is not None and bool(fixed.all()):
            out[d] = {"skipped": "deterministic style"}
            continue
        codes, desc = [], []
        for i in range(0, len(pool), batch_size):
            x = pool.batch(np.arange(i, min(i + batch_size, len(pool))))
            codes.append(model.nets["E"](x.to(dev), y[i:i + len(x)].to(dev)).float().cpu().numpy())
            desc.append(image_descriptors(x))
        phys = {c: df[c].to_numpy(np.float64) for c in PHYSICS_COLUMNS}
        out[d] = style_physics_leakage(np.concatenate(codes), np.concatenate(desc), phys)
    per = [v for v in out.values() if "skipped" not in v]
    if per:
        for kind in ("style_r2", "image_r2"):
            vals = [r[k] for r in per for k in r if k.startswith(kind + "/") and math.isfinite(r[k])]
            out[f"mean_{kind}"] = float(np.mean(vals)) if vals else float("nan")
    return out


def _evaluate_pair(model: TrainedModel, judges: Judges, src_set: ImageSet, pool: ImageSet, real: dict,
                   real_set: ImageSet, s: str, t: str, mode: str, prior: np.ndarray | None, opt: EvalOptions,
                   arrays: dict, bar, domains: list[str], findings: list[str], thr: np.ndarray) -> dict[str, Any]:
    K, size = opt.n_styles, model.size
    added, removed = pair_changes(s, t)
    s_i, t_i, m_i = domains.index(s), domains.index(t), MODES.index(mode)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([opt.seed, s_i, t_i, m_i]).generate_state(1)[0]))
    rng = np.random.default_rng([opt.seed, s_i, t_i, m_i, 1])
    masks_all = source_masks(src_set.manifest, removed, size)
    dev = model.device
    per_src = max(1, opt.batch_size // K)
    acc: dict[str, list] = {k: [] for k in ("p_src", "p_out", "f_out", "inc_out", "ssim", "l1", "stats_out",
                                            "stats_src", "div_l1", "div_feat", "div_lpips", "oracle", "f_src")}
    examples = []
    for start in range(0, len(src_set), per_src):
        idx = np.arange(start, min(start + per_src, len(src_set)))
        b = len(idx)
        x_src = src_set.batch(idx)
        x_rep = x_src.repeat_interleave(K, dim=0)
        y = torch.full((b * K,), t_i, dtype=torch.long)
        if mode == "latent":
            guide, translate = torch.randn(b * K, model.latent_dim, generator=gen), translate_latent
        else:
            ref_idx = np.concatenate([rng.choice(len(pool), size=K, replace=len(pool) < K) for _ in range(b)])
            guide, translate = pool.batch(ref_idx), translate_reference
        outs = []
        for i in range(0, b * K, opt.batch_size):
            part = slice(i, i + opt.batch_size)
            y_b = y[part].to(dev)
            x_b, g_b = x_rep[part].to(dev), guide[part].to(dev)
            args = (x_b, y_b, g_b) if mode == "latent" else (x_b, g_b, y_b)
            outs.append(translate(model.nets, *args, model.fixed(y_b)).float().cpu())
        x_out = torch.cat(outs)
        j_src, j_out = judges.run(x_src), judges.run(x_out)
        acc["p_src"].append(j_src["probs"])
        acc["f_src"].append(j_src["feats"])
        acc["p_out"].append(j_out["probs"].reshape(b, K, -1))
        acc["f_out"].append(j_out["feats"])
        if "inception" in j_out:
            acc["inc_out"].append(j_out["inception"])
        m_src = masks_all[idx] if masks_all is not None else None
        keep = _keep_mask(m_src, prior, b, size)
        for k, v in output_scores(x_out, x_rep, x_src, keep, K).items():
            acc[k].append(v)
        outs_k = x_out.reshape(b, K, 1, size, size)
        feats_k = torch.from_numpy(j_out["feats"]).reshape(b, K, -1)
        for i in range(b):
            acc["div_l1"].append(pairwise_l1(outs_k[i]))
            acc["div_feat"].append(pairwise_feature_distance(feats_k[i]))
            if judges.lpips is not None:
                acc["div_lpips"].append(judges.lpips.diversity(outs_k[i]))
        if judges.oracle is not None:
            m_rep = m_src.repeat_interleave(K, dim=0) if m_src is not None else None
            o, r = x_out[:, 0], x_rep[:, 0]
            kept = judges.oracle.anatomy_kept(o, r, [f for f in (added, removed) if f is not None])
            changed = judges.oracle.changed(o, r, added, removed, m_rep)
            acc["oracle"].append(torch.stack([kept, changed], dim=1).numpy().reshape(b, K, 2))
        n_ex = max(0, opt.n_examples - sum(len(e) for e in examples))
        if n_ex:
            k_show = min(K, 5)
            examples.append(torch.cat([x_src[:n_ex, None], outs_k[:n_ex, :k_show]], dim=1)[:, :, 0].numpy())
        bar.update(b)

    p_src, p_out = np.concatenate(acc["p_src"]), np.concatenate(acc["p_out"])
    res = validity_summary(p_out, p_src, thr, findings, added, removed, real.get("probs"))
    f_out = np.concatenate(acc["f_out"])
    res["fid_xray"] = _fid(f_out, real, "feats")
    res["fid_xray_source_baseline"] = _fid(np.concatenate(acc["f_src"]), real, "feats")
    if acc["inc_out"]:
        res["fid_inception"] = _fid(np.concatenate(acc["inc_out"]), real, "inception")
    res["diversity_l1"] = float(np.nanmean(acc["div_l1"])) if K > 1 else float("nan")
    res["diversity_feat"] = float(np.nanmean(acc["div_feat"])) if K > 1 else float("nan")
    if "feats" in real and len(real["feats"]) >= 2:
        res["diversity_feat_real"] = pairwise_feature_distance(torch.from_numpy(real["feats"][:200]))
    if acc["div_lpips"]:
        res["lpips"] = float(np.nanmean(acc["div_lpips"]))
    res["identity_ssim"] = float(np.concatenate(acc["ssim"]).mean())
    res["identity_l1"] = float(np.concatenate(acc["l1"]).mean())
    res["identity_region"] = ("outside the finding region" if prior is not None or masks_all is not None
                              else "whole image")
    real_stats = None
    if len(real_set):
        keep_real = _keep_mask(None, prior, 1, size)
        real_stats = np.concatenate([global_stats(real_set.batch(np.arange(i, min(i + 256, len(real_set)))), keep_real)
                                     for i in range(0, len(real_set), 256)])
    res.update(leakage_summary(np.concatenate(acc["stats_out"]), np.concatenate(acc["stats_src"]), real_stats))
    if acc["oracle"]:
        kept, changed = np.moveaxis(np.concatenate(acc["oracle"]), -1, 0)
        verdict = kept & changed
        res["oracle_validity"] = float(verdict.mean())
        res["oracle_change_rate"] = float(changed.mean())
        res["oracle_anatomy_kept"] = float(kept.mean())
        clf_ok = success(p_out, thr, findings, added, removed)
        res["oracle_agreement"] = float((clf_ok == verdict).mean())
    pa = PairArrays(examples=np.concatenate(examples) if examples else None)
    if added is not None:
        pa.shift_added = (p_out[..., findings.index(added)] - p_src[:, None, findings.index(added)]).ravel()
    if removed is not None:
        pa.shift_removed = (p_out[..., findings.index(removed)] - p_src[:, None, findings.index(removed)]).ravel()
    arrays[(s, t, mode)] = pa
    return res


SUMMARY_KEYS = ("validity", "base_rate", "real_rate", "oracle_validity", "oracle_agreement", "off_target_shift",
                "fid_xray", "fid_inception", "lpips", "diversity_l1", "diversity_feat", "identity_ssim",
                "identity_l1", "exposure_spread_ratio", "contrast_spread_ratio", "exposure_shift_abs")


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over pairs of the headline metrics, per mode."""
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode and "validity" in r]
        if not mine:
            continue
        out[mode] = {}
        for k in SUMMARY_KEYS:
            vals = [r[k] for r in mine if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
            if vals:
                out[mode][k] = float(np.mean(vals))
    return out


def flat_metrics(metrics: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Scalar metrics as one flat dict (``eval/<mode>/<src>-><trg>/<metric>`` and
    ``eval/<mode>/mean/<metric>``), for stats.jsonl."""
    flat: dict[str, float] = {}
    for r in metrics["pairs"]:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("n_styles",):
                flat[f"{prefix}/{r['mode']}/{r['source']}->{r['target']}/{k}"] = float(v)
    for mode, vals in metrics["summary"].items():
        for k, v in vals.items():
            flat[f"{prefix}/{mode}/mean/{k}"] = float(v)
    return flat


def evaluate_model(model_like, manifest, classifier, *, cfg=None, split: str = "val", n_styles: int = 4,
                   limit: int = 16, seed: int = 0, modes: tuple[str, ...] = ("latent",), max_real: int = 256,
                   oracle: str = "off", cache_dir: str | Path | None = None, batch_size: int = 32) -> dict[str, float]:
    """Quick evaluation of in-memory (EMA) networks every N training steps: flat scalars.

    ``model_like``: a TrainedModel, or the EMA ModuleDict (G, F, E) with ``cfg`` its RunConfig.
    No Inception, LPIPS or progress bars; the real-image features are cached after the first
    call, so later calls cost only the translations (``limit`` sources x ``n_styles`` per pair).
    """
    opts = EvalOptions(split=split, n_styles=n_styles, modes=tuple(modes), limit=limit, seed=seed,
                       max_real=max_real, inception=False, lpips=False, oracle=oracle, n_examples=0,
                       progress=False, batch_size=batch_size)
    result = run_evaluation(model_like, manifest, classifier, opts, cfg=cfg, cache_dir=cache_dir)
    return flat_metrics(result.metrics)
