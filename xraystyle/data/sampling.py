"""Which images make up training step ``t``: a pure function of (seed, step).

Drawing every batch from ``numpy.random.default_rng([seed, step])`` instead of an iterator
with hidden position makes resumption exact by construction (the "sampler position" is the
step), and lets data-parallel ranks take disjoint slices of the same global batch, so a
2-process run sees exactly the images a 1-process run with the same global batch sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepIndices:
    src: np.ndarray  # rows of the source images x_real
    y_org: np.ndarray  # their labels (domain index [B], or finding set [B, K] with NaN = unknown)
    y_trg: np.ndarray  # latent-guided targets
    ref: np.ndarray  # two references, drawn fresh each step, sharing the label y_ref
    ref2: np.ndarray
    y_ref: np.ndarray  # reference-guided targets (= y_trg for single domains)


class BalancedStepSampler:
    """Class-balanced sources (domain uniform, then image uniform) and target domains uniform
    over all domains (the paper) or, with ``cross``, over the domains other than the source's.

    ``labels[i]`` is the domain of cached row ``i``; rows labelled -1 are never drawn. With two
    domains and uniform targets half of every batch is translated into its own domain; ``cross``
    spends the whole batch on changing the finding (adds and removals), and no near-identity
    translation reaches D as a fake.
    """

    def __init__(self, labels: np.ndarray, num_domains: int, batch_size: int, seed: int,
                 cross: bool = False):
        self.labels = np.asarray(labels)
        self.num_domains = num_domains
        self.batch_size = batch_size
        self.seed = seed
        self.by_domain = [np.flatnonzero(self.labels == d) for d in range(num_domains)]
        self.present = np.array([d for d in range(num_domains) if len(self.by_domain[d])])
        self.cross = cross and len(self.present) > 1

    def indices(self, step: int) -> StepIndices:
        rng = np.random.default_rng([self.seed, step])
        b = self.batch_size
        y_org = rng.choice(self.present, size=b)
        if self.cross:
            # a uniform draw among the other present domains: shift past the source's position
            pos = np.searchsorted(self.present, y_org)
            y_trg = self.present[(pos + 1 + rng.integers(len(self.present) - 1, size=b)) % len(self.present)]
        else:
            y_trg = rng.choice(self.present, size=b)
        src = self._pick(rng, y_org)
        ref = self._pick(rng, y_trg)
        ref2 = self._pick(rng, y_trg)
        return StepIndices(src, y_org, y_trg, ref, ref2, y_trg)

    def _pick(self, rng: np.random.Generator, domains: np.ndarray) -> np.ndarray:
        return np.array([self.by_domain[d][rng.integers(len(self.by_domain[d]))] for d in domains],
                        dtype=np.int64)


TARGET_POLICIES = ("toggle", "observed", "random", "mixed")


class SetStepSampler:
    """Finding-set labels: sources balanced over observed label patterns, targets by policy.

    ``sets[i]`` is row i's finding set (1 / 0 / NaN = unknown); rows with ``usable[i]`` False
    are never drawn. Sources pick a label pattern uniformly, then a row, so rare combinations
    are seen as often as common ones. Latent-guided targets follow ``policy``: ``toggle`` flips
    one finding of the source's set, ``observed`` copies the (known part of the) set of a random
    training row, ``random`` draws each finding with probability 1/2, ``mixed`` picks one of
    these per sample. Targets are always fully specified (unknown -> absent) and never contain
    a combination in ``holdout`` (kept out of training entirely: rows and targets).
    References pick a pattern and two rows of it; their set is the reference-guided target.
    """

    def __init__(self, sets: np.ndarray, usable: np.ndarray, batch_size: int, seed: int,
                 policy: str = "mixed", holdout: np.ndarray | None = None):
        self.sets = np.asarray(sets, dtype=np.float32)
        self.k = self.sets.shape[1]
        self.batch_size, self.seed, self.policy = batch_size, seed, policy
        # holdout: [H, K] bool, each row a combination of findings that never co-occur in training
        self.holdout = np.zeros((0, self.k), bool) if holdout is None else np.asarray(holdout, bool)
        keys = np.where(np.isnan(self.sets), 2, self.sets).astype(np.int8)
        usable = np.asarray(usable, bool) & ~self._is_holdout(self.sets)
        patterns: dict[bytes, list[int]] = {}
        for i in np.flatnonzero(usable):
            patterns.setdefault(keys[i].tobytes(), []).append(i)
        self.groups = [np.array(v, dtype=np.int64) for _, v in sorted(patterns.items())]
        if not self.groups:
            raise ValueError("no usable rows")

    def _is_holdout(self, y: np.ndarray) -> np.ndarray:
        """Rows of ``y`` positive for every finding of some held-out combination."""
        positive = (y == 1.0)[:, None, :]
        return (positive | ~self.holdout[None]).all(-1).any(-1) if len(self.holdout) else np.zeros(len(y), bool)

    def _rows(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        g = rng.integers(len(self.groups), size=n)
        first = np.array([self.groups[j][rng.integers(len(self.groups[j]))] for j in g], dtype=np.int64)
        second = np.array([self.groups[j][rng.integers(len(self.groups[j]))] for j in g], dtype=np.int64)
        return first, second

    def _targets(self, rng: np.random.Generator, y_org: np.ndarray) -> np.ndarray:
        known = np.nan_to_num(y_org)  # unknown -> absent in a target
        out = np.empty_like(known)
        policies = ("toggle", "observed", "random")
        for i in range(len(known)):
            for _ in range(100):  # rejection of held-out combinations
                p = policies[rng.integers(3)] if self.policy == "mixed" else self.policy
                if p == "toggle":
                    t = known[i].copy()
                    j = rng.integers(self.k)
                    t[j] = 1.0 - t[j]
                elif p == "observed":
                    t = np.nan_to_num(self.sets[self._rows(rng, 1)[0][0]])
                else:
                    t = (rng.random(self.k) < 0.5).astype(np.float32)
                if not self._is_holdout(t[None])[0]:
                    break
            out[i] = t
        return out

    def indices(self, step: int) -> StepIndices:
        rng = np.random.default_rng([self.seed, step])
        src, _ = self._rows(rng, self.batch_size)
        y_org = self.sets[src]
        y_trg = self._targets(rng, y_org)
        ref, ref2 = self._rows(rng, self.batch_size)
        return StepIndices(src, y_org, y_trg, ref, ref2, self.sets[ref])
