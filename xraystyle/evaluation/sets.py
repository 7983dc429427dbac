"""Evaluation of multi-label (finding-set) models: per finding and per target set.

A finding-set model is asked for three kinds of counterfactuals, each a *task*:

- ``add f``: sources of the split with ``f`` known absent; the target is the source's own
  set plus ``f`` (the rest of the patient's findings must stay as they are);
- ``remove f``: sources with ``f`` present; the target is the source's own set minus ``f``;
- ``set T``: normal sources (every finding of the model known absent) translated to the set
  ``T``, for every non-empty ``T`` of at most ``max_set_size`` findings; combinations held out
  of training (``data.holdout_combinations``) are marked ``held_out``; add / remove rows give
  ``held_out_share``, the share of their sources whose target contains such a combination.

Sources need every finding of the model known (a blank label is never read as absent). Each
task gets K outputs per source (latent codes, or references whose own set is exactly the
target) and, as in single-domain evaluation (runner.py):

- judge: ``validity`` = every judged finding's decision equals the target set (the edited ones
  changed, the others kept); ``target_rate`` = the edited findings are right;
  ``off_target_flip_rate``; ``base_rate`` (the unchanged sources); ``real_rate`` (real images:
  with exactly the set T for set tasks; for add / remove the judge's sensitivity /
  specificity for f on real images, the ceiling of ``target_rate``); ``prob_shift/<f>`` and
  ``judge_present/<f>`` (share of outputs judged positive for f);
- oracle (phantom cohorts): ``oracle_validity`` = anatomy kept, every edited finding changed
  as asked, no other finding added or removed; ``oracle_target_rate``; ``oracle_added/<f>``;
- identity outside the edited findings' regions, diversity and physics leakage.

Rows use the single-domain row layout (``source``, ``target``, ``mode``) so metrics.json,
the tables, the plots and summary.html are shared: add ``f`` is ``no-f -> add-f``, remove
is ``f -> remove-f``, a set is ``normal -> a+b``.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..cohorts.manifest import Manifest, load_manifest
from ..cohorts.vocabulary import NORMAL
from ..errors import XrayStyleError
from ..models.translate import translate_latent, translate_reference
from ..streams import Stream
from .data import ImageSet, load_set, manifest_prior, source_masks
from .diversity import pairwise_l1
from .physics import global_stats, leakage_summary
from .runner import PRIOR_REGION, EvalOptions, EvalResult, Judges, PairArrays, output_scores, summarise

log = logging.getLogger(__name__)

KINDS = ("add", "remove", "set")


@dataclass(frozen=True)
class SetTask:
    kind: str  # add | remove | set
    edited: tuple[str, ...]  # the finding(s) the task changes
    held_out: bool = False

    @property
    def source(self) -> str:
        return {"add": f"no-{self.edited[0]}", "remove": self.edited[0], "set": NORMAL}[self.kind]

    @property
    def target(self) -> str:
        return "+".join(self.edited) if self.kind == "set" else f"{self.kind}-{self.edited[0]}"


def set_tasks(findings: list[str], holdout: list[list[str]], max_set_size: int | None = None) -> list[SetTask]:
    """Add and remove per finding, then every non-empty set of at most ``max_set_size``."""
    held = {frozenset(c) for c in holdout}
    tasks = [SetTask(k, (f,)) for f in findings for k in ("add", "remove")]
    top = len(findings) if max_set_size is None else min(max_set_size, len(findings))
    for k in range(1, top + 1):
        tasks += [SetTask("set", combo, frozenset(combo) in held) for combo in itertools.combinations(findings, k)]
    return tasks


def _sources(task: SetTask, sets: np.ndarray, findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows of the task and the target set (n, K) of each."""
    j = [findings.index(f) for f in task.edited]
    if task.kind == "set":
        rows = np.flatnonzero((sets == 0).all(axis=1))
        target = np.zeros((len(rows), len(findings)))
        target[:, j] = 1.0
        return rows, target
    want = 0.0 if task.kind == "add" else 1.0
    rows = np.flatnonzero(sets[:, j[0]] == want)
    target = sets[rows].copy()
    target[:, j[0]] = 1.0 - want
    return rows, target


def _key(s: np.ndarray) -> bytes:
    return np.asarray(s, np.int8).tobytes()


def run_set_evaluation(model, manifest: Manifest | str | Path, classifier, options: EvalOptions | None = None, *,
                       max_set_size: int | None = None, cache_dir: str | Path | None = None) -> EvalResult:
    """Evaluate a multi-label TrainedModel on a cohort (see the module docstring)."""
    from ..paths import cache_dir as default_cache
    from ..phantom.generator import FINDINGS as PHANTOM_FINDINGS
    from ..phantom.oracle import is_phantom_manifest, load_oracle

    opt = options or EvalOptions()
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    findings = list(model.domains)
    judged = [f for f in findings if f in classifier.findings]
    if not judged:
        raise XrayStyleError(f"classifier {classifier.name} predicts none of the model's findings "
                             f"({', '.join(findings)}); it predicts: {', '.join(classifier.findings)}")
    manifest.finding_matrix(findings)  # ManifestError naming a missing finding column
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    size, K, pre = model.size, opt.n_styles, model.preprocess
    thr = classifier.thresholds.detach().cpu().double().numpy()
    cols = [classifier.findings.index(f) for f in judged]

    oracle, oracle_info = None, {"available": False, "reason": "off"}
    if opt.oracle != "off":
        if not (is_phantom_manifest(manifest) or opt.oracle == "on"):
            oracle_info = {"available": False, "reason": "not a phantom cohort"}
        elif any(f not in PHANTOM_FINDINGS for f in findings):
            oracle_info = {"available": False, "reason": "the model has findings the phantom does not draw"}
        else:
            oracle = load_oracle(findings, size, pre, n=opt.oracle_patients, cache_dir=root)
            oracle_info = {"available": True, **oracle.report()}
    judges = Judges(classifier, None, None, oracle, opt.batch_size)

    def known_rows(split: str, limit: int | None, seed: int) -> ImageSet:
        sub = manifest.subset(split)
        idx = np.flatnonzero(~np.isnan(sub.finding_matrix(findings)).any(axis=1))
        if limit is not None and len(idx) > limit:
            idx = np.sort(np.random.default_rng([seed, Stream.SET_SOURCES]).choice(idx, size=limit, replace=False))
        return load_set(Manifest(sub.path, sub.root, sub.df.iloc[idx].copy()), pre, root / "tensors", opt.progress)

    pool = known_rows(opt.split, None, opt.seed)
    real = known_rows(opt.fid_split, opt.max_real, opt.seed + 2)
    sets, real_sets = pool.manifest.finding_matrix(findings), real.manifest.finding_matrix(findings)
    real_probs = np.concatenate([judges.run(real.batch(np.arange(i, min(i + opt.batch_size, len(real)))))["probs"]
                                 for i in range(0, len(real), opt.batch_size)]) if len(real) else np.zeros((0, len(thr)))
    real_stats = (np.concatenate([global_stats(real.batch(np.arange(i, min(i + 256, len(real)))))
                                  for i in range(0, len(real), 256)]) if len(real) >= 2 else None)
    priors = {f: (oracle.models[f].prior if oracle is not None else manifest_prior(manifest, f, size)) for f in findings}
    masks = {f: source_masks(pool.manifest, f, size) for f in findings}
    by_set: dict[bytes, np.ndarray] = {}
    for i, s in enumerate(sets):
        by_set.setdefault(_key(s), []).append(i)
    by_set = {k: np.asarray(v) for k, v in by_set.items()}

    tasks = set_tasks(findings, model.args.holdout_combinations, max_set_size)
    rows: list[dict[str, Any]] = []
    arrays: dict[tuple[str, str, str], PairArrays] = {}
    bar = tqdm(total=len(tasks) * len(opt.modes), desc="evaluate sets", unit="task", disable=not opt.progress)
    held = [np.isin(findings, c) for c in model.args.holdout_combinations]
    real_rates = {t.target: _real_rate(t, findings, judged, cols, thr, real_sets, real_probs) for t in tasks}
    for t_i, task in enumerate(tasks):
        all_cand, all_target = _sources(task, sets, findings)
        for m_i, mode in enumerate(opt.modes):
            cand, target = all_cand, all_target
            if mode == "reference":  # only sources for which a reference with exactly the target set exists
                has_ref = np.array([_key(t) in by_set for t in target], bool)
                cand, target = cand[has_ref], target[has_ref]
            if opt.limit is not None and len(cand) > opt.limit:  # the same seeded choice in both modes
                keep = np.sort(np.random.default_rng([opt.seed, t_i, Stream.SET_TASK_SOURCES]).choice(len(cand), size=opt.limit,
                                                                                 replace=False))
                cand, target = cand[keep], target[keep]
            row = {"source": task.source, "target": task.target, "mode": mode, "kind": task.kind,
                   "edited": list(task.edited), "held_out": task.held_out, "n_styles": K}
            if task.kind != "set" and held:
                # add f to a source that has the rest of a held-out combination: its target was never trained
                row["held_out_share"] = float(np.mean([any((t[h] == 1).all() for h in held) for t in target])
                                              if len(target) else 0.0)
            ctx = _Task(task, findings, judged, cols, thr, K, size, priors, masks, real_stats)
            res = _run_task(model, judges, pool, cand, target, mode, by_set, ctx, opt,
                            np.random.default_rng([opt.seed, t_i, m_i]), arrays)
            row.update(res)
            row.update(real_rates[task.target])
            rows.append(row)
            bar.update(1)
    bar.close()

    metrics = {
        "meta": {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": str(model.checkpoint), "checkpoint_sha256": model.checkpoint_sha256, "step": model.step,
            "labels": model.labels.kind, "conditioning": model.args.model.conditioning, "domains": findings,
            "judged_findings": judged, "image_size": size,
            "holdout_combinations": model.args.holdout_combinations,
            "classifier": {"name": classifier.name, "identity": classifier.identity, "findings": classifier.findings,
                           "thresholds": [round(float(v), 6) for v in thr], "input_size": classifier.input_size},
            "split": opt.split, "fid_split": opt.fid_split, "n_styles": K, "modes": list(opt.modes),
            "limit": opt.limit, "seed": opt.seed, "max_real": opt.max_real, "max_set_size": max_set_size,
            "manifest_hash": manifest.content_hash(),
            "n_sources": {r["target"]: r.get("n_sources", 0) for r in rows if r["mode"] == opt.modes[0]},
            "n_real": len(real),
            "inception": {"available": False, "reason": "not computed for finding sets"},
            "lpips": {"available": False, "reason": "not computed for finding sets"},
            "oracle": oracle_info,
        },
        "pairs": rows,
        "summary": summarise(rows),
        "summary_by_kind": {kind: summarise([r for r in rows if r["kind"] == kind]) for kind in KINDS},
    }
    return EvalResult(metrics, arrays)


@dataclass
class _Task:
    """What one task's scoring needs besides the images."""

    task: SetTask
    findings: list[str]
    judged: list[str]
    cols: list[int]  # classifier output index of each judged finding
    thr: np.ndarray
    K: int
    size: int
    priors: dict[str, np.ndarray | None]  # where each finding goes (oracle or manifest masks)
    masks: dict[str, torch.Tensor | None]  # (rows of the pool, S, S) source masks per finding
    real_stats: np.ndarray | None  # (M, 2) global stats of real images, for the leakage ratios


@torch.no_grad()
def _run_task(model, judges: Judges, pool: ImageSet, cand: np.ndarray, target: np.ndarray, mode: str,
              by_set: dict[bytes, np.ndarray], ctx: _Task, opt: EvalOptions,
              rng: np.random.Generator, arrays: dict) -> dict[str, Any]:
    K, size, dev = ctx.K, ctx.size, model.device
    res: dict[str, Any] = {"n_sources": int(len(cand))}
    if len(cand) == 0:
        return res
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sets = pool.manifest.finding_matrix(ctx.findings)
    removed = [f for f in ctx.task.edited if ctx.task.kind == "remove"]
    priors, masks = ctx.priors, ctx.masks
    acc: dict[str, list] = {k: [] for k in ("p_src", "p_out", "ssim", "l1", "stats_out", "stats_src", "div",
                                            "oracle", "oracle_target", "oracle_added")}
    examples = []
    per_src = max(1, opt.batch_size // K)
    for start in range(0, len(cand), per_src):
        idx = cand[start:start + per_src]
        b = len(idx)
        x_src = pool.batch(idx)
        x_rep = x_src.repeat_interleave(K, dim=0).to(dev)
        y = torch.as_tensor(target[start:start + b], dtype=torch.float32).repeat_interleave(K, dim=0).to(dev)
        fixed = model.fixed(y)
        if mode == "latent":
            z = torch.randn(b * K, model.latent_dim, generator=gen).to(dev)
            x_out = translate_latent(model.nets, x_rep, y, z, fixed).float().cpu()
        else:
            refs = np.concatenate([rng.choice(by_set[_key(t)], size=K) for t in target[start:start + b]])
            x_out = translate_reference(model.nets, x_rep, pool.batch(refs).to(dev), y, fixed).float().cpu()
        x_rep = x_rep.cpu()
        acc["p_src"].append(judges.run(x_src)["probs"])
        acc["p_out"].append(judges.run(x_out)["probs"].reshape(b, K, -1))
        keep = torch.ones(b, size, size, dtype=torch.bool)
        for f in ctx.task.edited:
            if priors.get(f) is not None:
                keep &= ~torch.from_numpy(np.asarray(priors[f]) >= PRIOR_REGION)[None]
        for f in removed:
            if masks.get(f) is not None:
                keep &= ~masks[f][idx]
        for k, v in output_scores(x_out, x_rep, x_src, keep, K).items():
            acc[k].append(v)
        outs_k = x_out.reshape(b, K, 1, size, size)
        acc["div"] += [pairwise_l1(outs_k[i]) for i in range(b)]
        if judges.oracle is not None:
            o, r = x_out[:, 0], x_rep[:, 0]
            src_sets = np.repeat(sets[idx], K, axis=0)
            trg_sets = np.repeat(target[start:start + b], K, axis=0)
            ok = judges.oracle.anatomy_kept(o, r, list(ctx.task.edited)).numpy()
            on_target = np.ones(len(o), bool)
            added = {}
            for j, f in enumerate(ctx.findings):
                added[f] = judges.oracle.added(o, r, f).numpy()
                m = masks[f][idx].repeat_interleave(K, dim=0) if masks.get(f) is not None else None
                gone = judges.oracle.removed(o, r, f, m).numpy()
                src_has, trg_has = src_sets[:, j] == 1, trg_sets[:, j] == 1
                right = np.where(trg_has & ~src_has, added[f], np.where(src_has & ~trg_has, gone,
                                 np.where(src_has, ~gone, ~added[f])))
                ok &= right
                if f in ctx.task.edited:
                    on_target &= right
            acc["oracle"].append(ok.reshape(b, K))
            acc["oracle_target"].append(on_target.reshape(b, K))
            acc["oracle_added"].append(np.stack([added[f] for f in ctx.findings], axis=1))
        n_ex = max(0, opt.n_examples - sum(len(e) for e in examples))
        if n_ex:
            examples.append(torch.cat([x_src[:n_ex, None], outs_k[:n_ex, :min(K, 5)]], dim=1)[:, :, 0].numpy())

    p_src, p_out = np.concatenate(acc["p_src"]), np.concatenate(acc["p_out"])
    res.update(_judge_scores(p_src, p_out, target, ctx))
    res["identity_ssim"] = float(np.concatenate(acc["ssim"]).mean())
    res["identity_l1"] = float(np.concatenate(acc["l1"]).mean())
    res["diversity_l1"] = float(np.nanmean(acc["div"])) if K > 1 else float("nan")
    res.update(leakage_summary(np.concatenate(acc["stats_out"]), np.concatenate(acc["stats_src"]), ctx.real_stats))
    if acc["oracle"]:
        res["oracle_validity"] = float(np.concatenate(acc["oracle"]).mean())
        res["oracle_target_rate"] = float(np.concatenate(acc["oracle_target"]).mean())
        added = np.concatenate(acc["oracle_added"])
        for j, f in enumerate(ctx.findings):
            res[f"oracle_added/{f}"] = float(added[:, j].mean())
    pa = PairArrays(examples=np.concatenate(examples) if examples else None)
    if ctx.task.kind != "set" and ctx.task.edited[0] in ctx.judged:
        c = ctx.cols[ctx.judged.index(ctx.task.edited[0])]
        shift = (p_out[..., c] - p_src[:, None, c]).ravel()
        pa.shift_added, pa.shift_removed = (shift, None) if ctx.task.kind == "add" else (None, shift)
    arrays[(ctx.task.source, ctx.task.target, mode)] = pa
    return res


def _judge_scores(p_src: np.ndarray, p_out: np.ndarray, target: np.ndarray, ctx: _Task) -> dict[str, float]:
    """Judge decisions against the target set. p_src (N, C), p_out (N, K, C), target (N, F)."""
    thr = ctx.thr[ctx.cols]
    want = target[:, [ctx.findings.index(f) for f in ctx.judged]] == 1  # (N, J)
    d_src, d_out = p_src[:, ctx.cols] >= thr, p_out[..., ctx.cols] >= thr  # (N, J), (N, K, J)
    edited = np.array([f in ctx.task.edited for f in ctx.judged])
    out: dict[str, float] = {
        "validity": float((d_out == want[:, None]).all(-1).mean()),
        "base_rate": float((d_src == want).all(-1).mean()),
    }
    if edited.any():
        out["target_rate"] = float((d_out[..., edited] == want[:, None, edited]).all(-1).mean())
    if (~edited).any():
        out["off_target_flip_rate"] = float((d_out[..., ~edited] != d_src[:, None, ~edited]).mean())
    for j, (f, c) in enumerate(zip(ctx.judged, ctx.cols)):
        out[f"prob_shift/{f}"] = float((p_out[..., c] - p_src[:, None, c]).mean())
        out[f"judge_present/{f}"] = float(d_out[..., j].mean())
    return out


def _real_rate(task: SetTask, findings: list[str], judged: list[str], cols: list[int], thr: np.ndarray,
               real_sets: np.ndarray, real_probs: np.ndarray) -> dict[str, float]:
    """What the judge says about real images: the ceiling of validity (sets) or target_rate."""
    if not len(real_sets) or any(f not in judged for f in task.edited):
        return {}
    d = real_probs[:, cols] >= thr[cols]
    if task.kind == "set":
        want = np.zeros(len(findings), bool)
        want[[findings.index(f) for f in task.edited]] = True
        rows = (real_sets == want).all(axis=1)
        j_want = want[[findings.index(f) for f in judged]]
        return {"real_rate": float((d[rows] == j_want).all(-1).mean())} if rows.any() else {}
    j = findings.index(task.edited[0])
    k = judged.index(task.edited[0])
    has = 1.0 if task.kind == "add" else 0.0
    rows = real_sets[:, j] == has
    return {"real_rate": float((d[rows, k] == bool(has)).mean())} if rows.any() else {}
