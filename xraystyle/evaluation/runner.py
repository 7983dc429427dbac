"""The evaluation loop: every task x mode of a model, scored by one set of metric objects.

A task is one counterfactual question (tasks.py): a source -> target domain pair of a domain
model, or add f / remove f / set T of a finding-set model (sets.py). :func:`evaluate_tasks`
runs each in both modes as in the StarGAN v2 protocol: real sources of the evaluation split, K
outputs each (K random latent codes, or K references drawn, seeded, among the split's real
images whose own set is exactly the target), every chunk of sources fed to the metric objects
(metrics.py): the judge's verdicts, FID with its real-vs-real floor, diversity, identity
outside the edit, physics leakage and, on phantom cohorts, the oracle. One loop, so a metric
is written once for both kinds of model.

:func:`run_evaluation` (domain models) and :func:`run_set_evaluation` (finding-set models) pick
the rows and the tasks and return an :class:`EvalResult` (metrics.json + arrays for plots);
:func:`evaluate_model` is the fast variant for training loops, returning flat scalars.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..cohorts.manifest import Manifest, load_manifest
from ..cohorts.vocabulary import NORMAL
from ..errors import ConfigError, MissingWeightsError, XrayStyleError
from ..models.args import ModelArgs
from ..models.translate import translate_latent, translate_reference
from ..streams import Stream
from ..trained import TrainedModel
from .counterfactual import JudgeSpace
from .data import ImageSet, Pool, cached_arrays, check_domains, load_set, manifest_prior, select_rows
from .features import real_floor
from .metrics import Batch, Diversity, Fid, Identity, JudgeVerdicts, Metric, OracleVerdicts, PhysicsLeakage
from .physics import global_stats, style_physics_report
from .sets import KINDS, set_tasks
from .tasks import Task, domain_set, pair_tasks

log = logging.getLogger(__name__)

MODES = ("latent", "reference")
PRIOR_REGION = 0.05  # a pixel is "where the finding goes" when this share of positives covers it


@dataclass
class EvalOptions:
    split: str = "test"  # sources, references and the judge's real rate
    n_styles: int = 10  # K outputs per source (paper: 10)
    modes: tuple[str, ...] = MODES
    limit: int | None = None  # at most this many sources per source domain / per task
    seed: int = 0
    batch_size: int = 32  # images per forward pass
    fid_split: str = "train"  # real target images for FID and real spreads (paper: training images)
    max_real: int | None = 2000  # real images per domain (per pool for sets) for references, real rates, FID, spreads
    inception: bool = True  # Inception FID when the weights are cached
    lpips: bool = True  # LPIPS diversity when the weights are cached
    oracle: str = "auto"  # auto (phantom cohorts), on, off
    oracle_patients: int = 64
    n_examples: int = 4  # sources shown per task in example grids
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
                          "by evaluation.runner.run_set_evaluation (xraystyle eval picks it)")
    return model


@dataclass
class PairArrays:
    """Per-output arrays of one (task, mode), kept for plots (not written to metrics.json)."""

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

    def run(self, x: torch.Tensor, inception: bool = True) -> dict[str, np.ndarray]:
        """``probs`` (N, C), the judge's features ``feats`` and, when loaded, ``inception``."""
        probs, feats, inc = [], [], []
        for i in range(0, len(x), self.bs):
            xb = x[i:i + self.bs]
            logits, f = self.clf.logits_and_features(xb)
            probs.append(torch.sigmoid(logits).cpu())
            feats.append(f.cpu())
            if inception and self.inception is not None:
                inc.append(self.inception(xb).cpu())
        out = {"probs": torch.cat(probs).double().numpy(), "feats": torch.cat(feats).double().numpy()}
        if inc:
            out["inception"] = torch.cat(inc).double().numpy()
        return out


def _real_arrays(judges: Judges, real: ImageSet, cache_dir: Path, progress: bool, what: str,
                 inception: bool) -> dict[str, np.ndarray]:
    def compute():
        parts = []
        bar = tqdm(total=len(real), desc=f"features {what}", unit="img", disable=not progress, leave=False)
        for i in range(0, len(real), judges.bs):
            parts.append(judges.run(real.batch(np.arange(i, min(i + judges.bs, len(real)))), inception))
            bar.update(min(judges.bs, len(real) - i))
        bar.close()
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    ids = {"rows": real.key, "n": len(real), "classifier": judges.clf.identity,
           "inception": judges.inception.identity if inception and judges.inception is not None else None}
    return cached_arrays(cache_dir, ids, compute) if len(real) else {}


def _pool_arrays(judges: Judges, pool: Pool, cache_dir: Path, progress: bool, what: str,
                 inception: bool) -> dict[str, np.ndarray]:
    """The judges' arrays of every row of a pool, cached per part."""
    parts = [a for p in pool.parts if (a := _real_arrays(judges, p, cache_dir, progress, what, inception))]
    if not parts:
        return {"probs": np.zeros((0, len(judges.clf.findings)))}
    return {k: np.concatenate([a[k] for a in parts]) for k in parts[0]}


def _region_keep(region: tuple[str, ...], priors: dict[str, np.ndarray | None], size: int) -> torch.Tensor:
    """(1, S, S) True outside where the region's findings go (their cohort priors)."""
    keep = torch.ones(1, size, size, dtype=torch.bool)
    for f in region:
        if priors.get(f) is not None:
            keep &= ~torch.from_numpy(np.asarray(priors[f]) >= PRIOR_REGION)[None]
    return keep


@dataclass
class Evaluation:
    """What every task of one evaluation shares: the model, the judges, and three labelled
    pools: ``sources`` and ``refs`` (references and the judge's real rate) of the evaluation
    split, ``real`` (FID, real spreads) of the fid split, with the judges' arrays of the last two."""

    model: TrainedModel
    judges: Judges
    space: JudgeSpace
    findings: list[str]  # the model's findings: the columns of every pool's sets
    sources: Pool
    refs: Pool
    real: Pool
    priors: dict[str, np.ndarray | None]
    opt: EvalOptions
    cache_dir: Path
    holdout: list[list[str]] = field(default_factory=list)
    ref_probs: np.ndarray = field(init=False)  # (len(refs), C)
    real_arrays: dict[str, np.ndarray] = field(init=False)  # Judges.run of every row of real
    masks: dict[str, torch.Tensor | None] = field(init=False)  # finding -> (len(sources), S, S)

    def __post_init__(self):
        cache, progress = self.cache_dir / "eval-features", self.opt.progress
        self.ref_probs = _pool_arrays(self.judges, self.refs, cache, progress, "references", inception=False)["probs"]
        self.real_arrays = _pool_arrays(self.judges, self.real, cache, progress, "real", inception=True)
        self.masks = {f: self.sources.masks(f, self.model.size) for f in self.findings}


@dataclass
class RealTarget:
    """A task's real target images: fid-split features and global statistics (outside the task's
    region), evaluation-split judge probabilities; FID floors computed once per (space, n)."""

    arrays: dict[str, np.ndarray]
    stats: np.ndarray | None
    probs: np.ndarray
    seed: int
    floors: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.arrays.get("feats", ()))

    def floor(self, key: str, n: int) -> tuple[float, int]:
        if (key, n) not in self.floors:
            rng = np.random.default_rng([self.seed, Stream.FID_FLOOR, n])
            self.floors[(key, n)] = real_floor(self.arrays[key], n, rng) if key in self.arrays else (float("nan"), 0)
        return self.floors[(key, n)]


def _real_target(ev: Evaluation, task: Task) -> RealTarget:
    fid_rows = np.flatnonzero(task.real_rows(ev.real.sets, ev.findings))
    ref_rows = np.flatnonzero(task.real_rows(ev.refs.sets, ev.findings))
    keep = _region_keep(task.region, ev.priors, ev.model.size)
    stats = (np.concatenate([global_stats(ev.real.batch(fid_rows[i:i + 256]), keep) for i in range(0, len(fid_rows), 256)])
             if len(fid_rows) else None)
    arrays = {k: v[fid_rows] for k, v in ev.real_arrays.items() if k != "probs"}
    return RealTarget(arrays, stats, ev.ref_probs[ref_rows], ev.opt.seed)


def _metrics(ev: Evaluation, task: Task, real: RealTarget) -> list[Metric]:
    region_known = (any(ev.priors.get(f) is not None for f in task.region)
                    or any(ev.masks.get(f) is not None for f in task.removed))
    metrics: list[Metric] = [JudgeVerdicts(ev.space, task, ev.findings, real.probs),
                             Fid("xray", "feats", real.arrays.get("feats"), partial(real.floor, "feats"))]
    if ev.judges.inception is not None:
        metrics.append(Fid("inception", "inception", real.arrays.get("inception"), partial(real.floor, "inception")))
    metrics += [Diversity(ev.judges.lpips, real.arrays.get("feats")), Identity(region_known),
                PhysicsLeakage(real.stats)]
    if ev.judges.oracle is not None:
        metrics.append(OracleVerdicts(ev.judges.oracle, ev.findings, task, ev.space))
    return metrics


def evaluate_tasks(ev: Evaluation, tasks: list[Task]) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str], PairArrays]]:
    """One row per mode x task (metrics.json ``pairs``) and the arrays for plots."""
    rows: list[dict[str, Any]] = []
    arrays: dict[tuple[str, str, str], PairArrays] = {}
    reals: dict[str, RealTarget] = {}
    bar = tqdm(total=len(tasks) * len(ev.opt.modes), desc="evaluate", unit="task", disable=not ev.opt.progress,
               dynamic_ncols=True)
    for mode in ev.opt.modes:
        for position, task in enumerate(tasks):
            if task.target not in reals:
                reals[task.target] = _real_target(ev, task)
            rows.append(_task_row(ev, task, position, mode, reals[task.target], arrays))
            bar.update(1)
    bar.close()
    return rows, arrays


def _task_row(ev: Evaluation, task: Task, position: int, mode: str, real: RealTarget,
              arrays: dict[tuple[str, str, str], PairArrays]) -> dict[str, Any]:
    opt = ev.opt
    src_rows, trg = task.sources(ev.sources.sets, ev.findings)
    refs = None
    if mode == "reference":  # only sources for which a reference with exactly the target set exists
        refs = [ev.refs.rows_with(t) for t in trg]
        has = np.array([len(r) > 0 for r in refs], bool)
        src_rows, trg, refs = src_rows[has], trg[has], [r for r, h in zip(refs, has) if h]
    if opt.limit is not None and len(src_rows) > opt.limit:  # seeded per task, whatever the mode
        keep = np.sort(np.random.default_rng([opt.seed, position, Stream.SET_TASK_SOURCES])
                       .choice(len(src_rows), size=opt.limit, replace=False))
        src_rows, trg = src_rows[keep], trg[keep]
        refs = None if refs is None else [refs[i] for i in keep]
    row = {**task.header(), "mode": mode, "n_sources": int(len(src_rows)), "n_styles": opt.n_styles,
           "n_real_target": real.n}
    share = task.held_out_share(trg, ev.findings, ev.holdout)
    if share is not None:
        row["held_out_share"] = share
    if not len(src_rows):
        log.warning("%s -> %s (%s): no source of split %s%s: skipped", task.source, task.target, mode, opt.split,
                    " with a reference of the target" if mode == "reference" else "")
        return row
    row.update(_score(ev, task, position, mode, src_rows, trg, refs, real, arrays))
    return row


def _translate(model: TrainedModel, x_rep: torch.Tensor, y_trg: torch.Tensor, guide: torch.Tensor, mode: str,
               batch_size: int) -> torch.Tensor:
    """x_fake for each row of x_rep: guided by a latent code z (latent) or a reference x_ref."""
    dev, outs = model.device, []
    for i in range(0, len(x_rep), batch_size):
        part = slice(i, i + batch_size)
        y_b, x_b, g_b = y_trg[part].to(dev), x_rep[part].to(dev), guide[part].to(dev)
        if mode == "latent":
            outs.append(translate_latent(model.nets, x_b, y_b, g_b, model.fixed(y_b)).float().cpu())
        else:
            outs.append(translate_reference(model.nets, x_b, g_b, y_b, model.fixed(y_b)).float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def _score(ev: Evaluation, task: Task, position: int, mode: str, src_rows: np.ndarray, trg: np.ndarray,
           refs: list[np.ndarray] | None, real: RealTarget, arrays: dict) -> dict[str, Any]:
    model, opt, K, size = ev.model, ev.opt, ev.opt.n_styles, ev.model.size
    key = [opt.seed, *task.seed_key(position), MODES.index(mode)]
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
    rng = np.random.default_rng([*key, 1])
    metrics = _metrics(ev, task, real)
    asked, y_trg = task.asked(trg, ev.findings), task.condition(trg, model.domains)
    region = _region_keep(task.region, ev.priors, size)
    examples: list[np.ndarray] = []
    per_src = max(1, opt.batch_size // K)
    for start in range(0, len(src_rows), per_src):
        part = slice(start, start + per_src)
        idx = src_rows[part]
        b = len(idx)
        x_src = ev.sources.batch(idx)
        if mode == "latent":
            guide = torch.randn(b * K, model.latent_dim, generator=gen)
        else:
            guide = ev.refs.batch(np.concatenate([rng.choice(r, size=K, replace=len(r) < K) for r in refs[part]]))
        x_fake = _translate(model, x_src.repeat_interleave(K, dim=0), y_trg[part].repeat_interleave(K, dim=0), guide,
                            mode, opt.batch_size)
        j_src, j_fake = ev.judges.run(x_src), ev.judges.run(x_fake)
        masks = {f: m[idx] for f, m in ev.masks.items() if m is not None}
        keep = region.expand(b, size, size).clone()
        for f in task.removed:  # a removed finding's own region: the source's mask
            if f in masks:
                keep &= ~masks[f]
        batch = Batch(x_src, x_fake, j_src["probs"], j_fake["probs"].reshape(b, K, -1),
                      {k: v for k, v in j_src.items() if k != "probs"}, {k: v for k, v in j_fake.items() if k != "probs"},
                      ev.sources.sets[idx], asked[part], keep, masks)
        for m in metrics:
            m.update(batch)
        n_ex = max(0, opt.n_examples - sum(len(e) for e in examples))
        if n_ex:
            outs_k = x_fake.reshape(b, K, 1, size, size)
            examples.append(torch.cat([x_src[:n_ex, None], outs_k[:n_ex, :min(K, 5)]], dim=1)[:, :, 0].numpy())
    res: dict[str, Any] = {}
    for m in metrics:
        res.update(m.aggregate())
    judge = metrics[0]
    arrays[(task.source, task.target, mode)] = PairArrays(
        shift_added=judge.shift(task.added[0]) if len(task.added) == 1 else None,
        shift_removed=judge.shift(task.removed[0]) if len(task.removed) == 1 else None,
        examples=np.concatenate(examples) if examples else None)
    return res


def _judges(classifier, manifest: Manifest, findings: list[str], model: TrainedModel, opt: EvalOptions,
            root: Path) -> tuple[Judges, dict[str, Any]]:
    """The judges and the availability record of the optional ones (meta)."""
    from .diversity import load_lpips
    from .features import load_inception

    inception, inception_info = optional_extractor("Inception FID", opt.inception, load_inception, classifier.device)
    lpips_net, lpips_info = optional_extractor("LPIPS", opt.lpips, load_lpips, classifier.device)
    oracle, oracle_info = _oracle(manifest, findings, model, opt, root)
    return (Judges(classifier, inception, lpips_net, oracle, opt.batch_size),
            {"inception": inception_info, "lpips": lpips_info, "oracle": oracle_info})


def _oracle(manifest: Manifest, findings: list[str], model: TrainedModel, opt: EvalOptions, root: Path):
    from ..phantom.generator import FINDINGS as PHANTOM_FINDINGS
    from ..phantom.oracle import is_phantom_manifest, load_oracle

    if opt.oracle == "off":
        return None, {"available": False, "reason": "off"}
    if not (is_phantom_manifest(manifest) or opt.oracle == "on"):
        return None, {"available": False, "reason": "not a phantom cohort"}
    if any(f not in PHANTOM_FINDINGS for f in findings):
        return None, {"available": False, "reason": "the model has findings the phantom does not draw"}
    try:
        oracle = load_oracle(findings, model.size, model.preprocess, n=opt.oracle_patients, cache_dir=root)
    except ValueError as exc:
        return None, {"available": False, "reason": str(exc)}
    return oracle, {"available": True, **oracle.report()}


def _meta(model: TrainedModel, classifier, manifest: Manifest, opt: EvalOptions, info: dict[str, Any],
          **extra) -> dict[str, Any]:
    thr = classifier.thresholds.detach().cpu().double().numpy()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": None if model.checkpoint is None else str(model.checkpoint),
        "checkpoint_sha256": model.checkpoint_sha256, "step": model.step, "labels": model.labels.kind,
        "image_size": model.size,
        "classifier": {"name": classifier.name, "identity": classifier.identity, "findings": classifier.findings,
                       "thresholds": [round(float(v), 6) for v in thr], "input_size": classifier.input_size},
        "split": opt.split, "real_rate_split": opt.split, "fid_split": opt.fid_split, "n_styles": opt.n_styles,
        "modes": list(opt.modes), "limit": opt.limit, "seed": opt.seed, "max_real": opt.max_real,
        "manifest_hash": manifest.content_hash(), **extra, **info,
    }


def _priors(judges: Judges, manifest: Manifest, findings: list[str], size: int) -> dict[str, np.ndarray | None]:
    """Where each finding goes: the oracle's calibrated prior on phantoms, else the cohort's masks."""
    return {f: judges.oracle.models[f].prior if judges.oracle is not None else manifest_prior(manifest, f, size)
            for f in findings}


def _root(cache_dir: str | Path | None) -> Path:
    from ..paths import cache_dir as default_cache

    return Path(cache_dir) if cache_dir is not None else default_cache()


def run_evaluation(model_like, manifest: Manifest | str | Path, classifier, options: EvalOptions | None = None, *,
                   cfg=None, cache_dir: str | Path | None = None) -> EvalResult:
    """Evaluate a domain model on every source -> target pair (see the module docstring)."""
    opt = options or EvalOptions()
    model = as_trained_model(model_like, cfg)
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    check_domains(manifest, model.domains, classifier)
    root, domains = _root(cache_dir), model.domains
    findings = [d for d in domains if d != NORMAL]
    judges, info = _judges(classifier, manifest, findings, model, opt, root)

    def pool(split: str, limit: int | None, seed: int) -> Pool:  # one part per domain, labelled by its domain
        parts = [load_set(select_rows(manifest, domains, d, split, limit, seed), model.preprocess, root / "tensors",
                          opt.progress) for d in domains]
        return Pool(parts, np.concatenate([np.tile(domain_set(d, findings), (len(p), 1)) for d, p in zip(domains, parts)]))

    priors = _priors(judges, manifest, findings, model.size)
    space = JudgeSpace.of(classifier.findings, classifier.thresholds.detach().cpu().double().numpy(),
                          classifier.findings, findings)
    ev = Evaluation(model, judges, space, findings, pool(opt.split, opt.limit, opt.seed),
                    pool(opt.split, opt.max_real, opt.seed + 1), pool(opt.fid_split, opt.max_real, opt.seed + 2),
                    priors, opt, root)
    rows, arrays = evaluate_tasks(ev, pair_tasks(domains))
    meta = _meta(model, classifier, manifest, opt, info, domains=domains,
                 n_sources={d: len(p) for d, p in zip(domains, ev.sources.parts)},
                 n_real={d: len(p) for d, p in zip(domains, ev.real.parts)})
    metrics = {"meta": meta, "style_physics": style_physics_report(model, dict(zip(domains, ev.refs.parts)),
                                                                   opt.batch_size),
               "pairs": rows, "summary": summarise(rows)}
    return EvalResult(metrics, arrays)


def run_set_evaluation(model: TrainedModel, manifest: Manifest | str | Path, classifier,
                       options: EvalOptions | None = None, *, max_set_size: int | None = None,
                       cache_dir: str | Path | None = None) -> EvalResult:
    """Evaluate a multi-label TrainedModel per finding and per set (sets.py). Sources need every
    finding of the model known (a blank label is never read as absent)."""
    opt = options or EvalOptions()
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    findings = list(model.domains)
    judged = [f for f in findings if f in classifier.findings]
    if not judged:
        raise XrayStyleError(f"classifier {classifier.name} predicts none of the model's findings "
                             f"({', '.join(findings)}); it predicts: {', '.join(classifier.findings)}")
    manifest.finding_matrix(findings)  # ManifestError naming a missing finding column
    root = _root(cache_dir)
    judges, info = _judges(classifier, manifest, findings, model, opt, root)

    def known_rows(split: str, limit: int | None, seed: int) -> Pool:
        sub = manifest.subset(split)
        idx = np.flatnonzero(~np.isnan(sub.finding_matrix(findings)).any(axis=1))
        if limit is not None and len(idx) > limit:
            idx = np.sort(np.random.default_rng([seed, Stream.SET_SOURCES]).choice(idx, size=limit, replace=False))
        images = load_set(Manifest(sub.path, sub.root, sub.df.iloc[idx].copy()), model.preprocess, root / "tensors",
                          opt.progress)
        return Pool([images], images.manifest.finding_matrix(findings))

    priors = _priors(judges, manifest, findings, model.size)
    space = JudgeSpace.of(classifier.findings, classifier.thresholds.detach().cpu().double().numpy(), judged, findings)
    ev = Evaluation(model, judges, space, findings, known_rows(opt.split, None, opt.seed),
                    known_rows(opt.split, opt.max_real, opt.seed + 1), known_rows(opt.fid_split, opt.max_real, opt.seed + 2),
                    priors, opt, root, holdout=model.args.holdout_combinations)
    rows, arrays = evaluate_tasks(ev, set_tasks(findings, model.args.holdout_combinations, max_set_size))
    meta = _meta(model, classifier, manifest, opt, info, conditioning=model.args.model.conditioning, domains=findings,
                 judged_findings=judged, holdout_combinations=model.args.holdout_combinations,
                 max_set_size=max_set_size,
                 n_sources={r["target"]: r["n_sources"] for r in rows if r["mode"] == opt.modes[0]},
                 n_real=len(ev.real))
    metrics = {"meta": meta, "pairs": rows, "summary": summarise(rows),
               "summary_by_kind": {kind: summarise([r for r in rows if r["kind"] == kind]) for kind in KINDS}}
    return EvalResult(metrics, arrays)


SUMMARY_KEYS = ("validity", "base_rate", "real_rate", "oracle_validity", "oracle_agreement", "off_target_shift",
                "fid_xray", "fid_xray_real_floor", "fid_inception", "fid_inception_real_floor", "lpips",
                "diversity_l1", "diversity_feat", "identity_ssim", "identity_l1", "exposure_spread_ratio",
                "contrast_spread_ratio", "exposure_shift_abs")


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over tasks of the headline metrics, per mode."""
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
    No Inception, LPIPS or progress bars; the real-image arrays are cached after the first
    call, so later calls cost only the translations (``limit`` sources x ``n_styles`` per pair).
    """
    opts = EvalOptions(split=split, n_styles=n_styles, modes=tuple(modes), limit=limit, seed=seed,
                       max_real=max_real, inception=False, lpips=False, oracle=oracle, n_examples=0,
                       progress=False, batch_size=batch_size)
    result = run_evaluation(model_like, manifest, classifier, opts, cfg=cfg, cache_dir=cache_dir)
    return flat_metrics(result.metrics)
