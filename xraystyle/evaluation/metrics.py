"""The evaluation's metrics as cumulative objects: ``update(batch)`` per chunk of sources,
``aggregate()`` the entries of the task's row, ``reset()`` to reuse (MONAI's ``Cumulative``
metrics are the model).

One class per metric family, written once for every kind of task (tasks.py): a :class:`Batch`
states what a task asked in terms every task shares (the finding set asked of each output,
NaN where nothing is asked; the pixels outside the edit), so a single-domain pair and a
finding-set task go through the same code. The measurements come from each family's module
(counterfactual.py, features.py, diversity.py, identity.py, physics.py, the phantom oracle);
the classes gather them over batches and reduce them to the row's numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .counterfactual import JudgeSpace, matches
from .diversity import pairwise_feature_distance, pairwise_l1
from .features import FeatureStats, frechet_distance
from .identity import identity_scores
from .physics import global_stats, leakage_summary
from .tasks import Task


@dataclass
class Batch:
    """One chunk of b sources, their K outputs each (source-major) and what the judges said."""

    x_src: torch.Tensor  # (b, 1, S, S) in [-1, 1]
    x_fake: torch.Tensor  # (b * K, 1, S, S): source i's outputs are rows i*K .. i*K + K - 1
    p_src: np.ndarray  # (b, C) judge probabilities
    p_fake: np.ndarray  # (b, K, C)
    feats_src: dict[str, np.ndarray]  # feature space ("feats": the judge's, "inception") -> (b, D)
    feats_fake: dict[str, np.ndarray]  # -> (b * K, D)
    src_sets: np.ndarray  # (b, F) the sources' findings, 0/1
    asked: np.ndarray  # (b, F) the set asked of each source's outputs; NaN: not asked
    keep: torch.Tensor  # (b, S, S) True outside the edited region
    masks: dict[str, torch.Tensor]  # finding -> (b, S, S) the sources' masks of it, where the cohort has them

    @property
    def k(self) -> int:
        return len(self.x_fake) // len(self.x_src)

    @property
    def x_rep(self) -> torch.Tensor:
        """Each source repeated K times, row-aligned with ``x_fake``."""
        return self.x_src.repeat_interleave(self.k, dim=0)


class Metric(ABC):
    """Collects per-batch arrays; subclasses set their configuration before ``super().__init__()``."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._buffers: dict[str, list] = defaultdict(list)

    def extend(self, **values) -> None:
        for name, value in values.items():
            self._buffers[name].append(value)

    def has(self, name: str) -> bool:
        return bool(self._buffers[name])

    def get(self, name: str) -> np.ndarray:
        return np.concatenate(self._buffers[name])

    @abstractmethod
    def update(self, batch: Batch) -> None: ...

    @abstractmethod
    def aggregate(self) -> dict[str, Any]: ...


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x))


class JudgeVerdicts(Metric):
    """What the classifier says (counterfactual.py), over the judged findings J:

    - ``validity``: share of outputs matching the asked set; ``base_rate``: of the unchanged
      sources; ``real_rate``: of real target images of the evaluation split (``real_probs``),
      against ``task.real_asked`` (the ceiling a perfect generator reaches with this judge);
    - ``target_rate`` (tasks that check the rest of the set): the edited findings only;
      ``added_rate`` / ``removed_rate`` (tasks that add and remove): each half;
    - ``prob_shift/<f>``: mean p(output) - p(source); ``judge_present/<f>``: share of outputs
      judged positive; ``off_target_shift`` / ``off_target_flip_rate``: mean |shift| and share
      of flipped decisions over the judged findings not edited.
    """

    def __init__(self, space: JudgeSpace, task: Task, findings: list[str], real_probs: np.ndarray):
        self.space, self.task, self.findings, self.real_probs = space, task, findings, real_probs
        super().__init__()

    def update(self, batch: Batch) -> None:
        self.extend(p_src=batch.p_src, p_fake=batch.p_fake, asked=batch.asked)

    def shift(self, finding: str) -> np.ndarray | None:
        """Every output's p(output) - p(source) for a judged finding (the shift histograms)."""
        if finding not in self.space.names or not self.has("p_src"):
            return None
        c = self.space.cols[self.space.names.index(finding)]
        return (self.get("p_fake")[..., c] - self.get("p_src")[:, None, c]).ravel()

    def aggregate(self) -> dict[str, Any]:
        sp, task = self.space, self.task
        p_src, p_fake = self.get("p_src"), self.get("p_fake")
        want = sp.wanted(self.get("asked"))[:, None]  # (N, 1, J)
        d_src, d_fake = sp.decide(p_src), sp.decide(p_fake)
        edited = sp.mask(task.edited)
        res: dict[str, Any] = {"validity": _mean(matches(d_fake, want)), "base_rate": _mean(matches(d_src, want[:, 0]))}
        if task.checks_rest and edited.any():
            res["target_rate"] = _mean(matches(d_fake[..., edited], want[..., edited]))
        if task.added and task.removed:
            for name, part in (("added_rate", sp.mask(task.added)), ("removed_rate", sp.mask(task.removed))):
                res[name] = _mean(matches(d_fake[..., part], want[..., part]))
        if len(self.real_probs) and edited.sum() == len(task.edited):
            real_want = sp.wanted(task.real_asked(self.findings))
            res["real_rate"] = _mean(matches(sp.decide(self.real_probs), real_want))
        shift = p_fake[..., sp.cols] - p_src[:, None, sp.cols]
        for j, f in enumerate(sp.names):
            res[f"prob_shift/{f}"] = _mean(shift[..., j])
            res[f"judge_present/{f}"] = _mean(d_fake[..., j])
        if (~edited).any():
            res["off_target_shift"] = _mean(np.abs(shift[..., ~edited]))
            res["off_target_flip_rate"] = _mean(d_fake[..., ~edited] != d_src[:, None, ~edited])
        return res


class Fid(Metric):
    """Fréchet distance (features.py) between the outputs and the real target images in one
    feature space, with its sample sizes and the real-vs-real floor at the outputs' n:
    ``fid_<name>``, ``_n`` (outputs), ``_n_real``, ``_real_floor``, ``_floor_n`` (rows per draw
    of the floor), ``_source_baseline`` (the sources instead of the outputs: the identity map)."""

    def __init__(self, name: str, key: str, real: np.ndarray | None,
                 floor: Callable[[int], tuple[float, int]]):
        self.name, self.key, self.real, self.floor = name, key, real, floor
        super().__init__()

    def update(self, batch: Batch) -> None:
        if self.key in batch.feats_fake:
            self.extend(fake=batch.feats_fake[self.key], src=batch.feats_src[self.key])

    def _fid(self, feats: np.ndarray) -> float:
        if self.real is None or len(self.real) < 2 or len(feats) < 2:
            return float("nan")
        return frechet_distance(FeatureStats.of(feats), FeatureStats.of(self.real))

    def aggregate(self) -> dict[str, Any]:
        if not self.has("fake"):
            return {}
        fake, pre = self.get("fake"), f"fid_{self.name}"
        floor, floor_n = self.floor(len(fake))
        return {pre: self._fid(fake), f"{pre}_n": len(fake), f"{pre}_n_real": 0 if self.real is None else len(self.real),
                f"{pre}_real_floor": floor, f"{pre}_floor_n": floor_n,
                f"{pre}_source_baseline": self._fid(self.get("src"))}


class Diversity(Metric):
    """Among the K outputs of one source, averaged over sources (diversity.py): ``diversity_l1``,
    ``diversity_feat`` (judge features), ``lpips`` when LPIPS is loaded; ``diversity_feat_real``:
    the feature distance among real target images, for scale."""

    def __init__(self, lpips=None, real_feats: np.ndarray | None = None):
        self.lpips, self.real_feats = lpips, real_feats
        super().__init__()

    def update(self, batch: Batch) -> None:
        b, k = len(batch.x_src), batch.k
        outs = batch.x_fake.reshape(b, k, *batch.x_fake.shape[1:])
        feats = torch.from_numpy(batch.feats_fake["feats"]).reshape(b, k, -1)
        self.extend(k=[k], l1=[pairwise_l1(o) for o in outs], feat=[pairwise_feature_distance(f) for f in feats])
        if self.lpips is not None:
            self.extend(lpips=[self.lpips.diversity(o) for o in outs])

    def aggregate(self) -> dict[str, Any]:
        several = self.has("k") and self.get("k").max() > 1  # one style has no diversity (not a NaN warning)
        res: dict[str, Any] = {"diversity_l1": float(np.nanmean(self.get("l1"))) if several else float("nan"),
                               "diversity_feat": float(np.nanmean(self.get("feat"))) if several else float("nan")}
        if self.real_feats is not None and len(self.real_feats) >= 2:
            res["diversity_feat_real"] = pairwise_feature_distance(torch.from_numpy(self.real_feats[:200]))
        if self.has("lpips"):
            res["lpips"] = float(np.nanmean(self.get("lpips")))
        return res


class Identity(Metric):
    """SSIM and L1 of each output against its source outside the edited region (identity.py);
    ``identity_region`` says whether a region was known."""

    def __init__(self, region_known: bool):
        self.region_known = region_known
        super().__init__()

    def update(self, batch: Batch) -> None:
        ssim, l1 = identity_scores(batch.x_fake, batch.x_rep, batch.keep.repeat_interleave(batch.k, dim=0))
        self.extend(ssim=ssim, l1=l1)

    def aggregate(self) -> dict[str, Any]:
        return {"identity_ssim": _mean(self.get("ssim")), "identity_l1": _mean(self.get("l1")),
                "identity_region": "outside the finding region" if self.region_known else "whole image"}


class PhysicsLeakage(Metric):
    """Spread of exposure / contrast across a source's K styles and their shift from the source,
    next to the spread across real target images ``real_stats`` (physics.py)."""

    def __init__(self, real_stats: np.ndarray | None):
        self.real_stats = real_stats
        super().__init__()

    def update(self, batch: Batch) -> None:
        keep_rep = batch.keep.repeat_interleave(batch.k, dim=0)
        self.extend(fake=global_stats(batch.x_fake, keep_rep).reshape(len(batch.x_src), batch.k, 2),
                    src=global_stats(batch.x_src, batch.keep))

    def aggregate(self) -> dict[str, Any]:
        return leakage_summary(self.get("fake"), self.get("src"), self.real_stats)


class OracleVerdicts(Metric):
    """The phantom oracle's ground truth (phantom/oracle.py), per output: ``oracle_validity`` =
    anatomy kept and every asked finding right (appeared, left, or stayed as it was);
    ``oracle_target_rate``: the edited findings right (anatomy not checked);
    ``oracle_anatomy_kept``; ``oracle_added/<f>``: f appeared; ``oracle_agreement``: share of
    outputs where the judge's and the oracle's validity verdicts agree."""

    def __init__(self, oracle, findings: list[str], task: Task, space: JudgeSpace):
        self.oracle, self.findings, self.task, self.space = oracle, findings, task, space
        super().__init__()

    def update(self, batch: Batch) -> None:
        k, o, r = batch.k, batch.x_fake[:, 0], batch.x_rep[:, 0]
        src, asked = np.repeat(batch.src_sets, k, axis=0), np.repeat(batch.asked, k, axis=0)
        kept = self.oracle.anatomy_kept(o, r, list(self.task.edited)).numpy()
        ok, on_target, added = kept.copy(), np.ones(len(o), bool), []
        for j, f in enumerate(self.findings):
            added.append(self.oracle.added(o, r, f).numpy())
            if np.isnan(asked[:, j]).all():
                continue
            m = batch.masks.get(f)
            gone = self.oracle.removed(o, r, f, None if m is None else m.repeat_interleave(k, dim=0)).numpy()
            has, want = src[:, j] == 1, asked[:, j] == 1
            right = np.where(want & ~has, added[-1], np.where(has & ~want, gone, np.where(has, ~gone, ~added[-1])))
            right |= np.isnan(asked[:, j])
            ok &= right
            if f in self.task.edited:
                on_target &= right
        judge_ok = matches(self.space.decide(batch.p_fake), self.space.wanted(batch.asked)[:, None]).ravel()
        self.extend(kept=kept, ok=ok, on_target=on_target, added=np.stack(added, axis=1), agree=judge_ok == ok)

    def aggregate(self) -> dict[str, Any]:
        added = self.get("added")
        return {"oracle_validity": _mean(self.get("ok")), "oracle_target_rate": _mean(self.get("on_target")),
                "oracle_anatomy_kept": _mean(self.get("kept")), "oracle_agreement": _mean(self.get("agree")),
                **{f"oracle_added/{f}": _mean(added[:, j]) for j, f in enumerate(self.findings)}}
