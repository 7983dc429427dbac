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
    y_org: np.ndarray  # their domains
    y_trg: np.ndarray  # target domains
    ref: np.ndarray  # two references per target, drawn fresh each step from the target domain
    ref2: np.ndarray

    def shard(self, rank: int, world: int) -> "StepIndices":
        """This rank's contiguous slice of the global batch."""
        n = len(self.src) // world
        sl = slice(rank * n, (rank + 1) * n)
        return StepIndices(self.src[sl], self.y_org[sl], self.y_trg[sl], self.ref[sl], self.ref2[sl])


class BalancedStepSampler:
    """Class-balanced sources (domain uniform, then image uniform) and uniform target domains.

    ``labels[i]`` is the domain of cached row ``i``; rows labelled -1 are never drawn.
    """

    def __init__(self, labels: np.ndarray, num_domains: int, batch_size: int, seed: int):
        self.labels = np.asarray(labels)
        self.num_domains = num_domains
        self.batch_size = batch_size
        self.seed = seed
        self.by_domain = [np.flatnonzero(self.labels == d) for d in range(num_domains)]
        self.present = np.array([d for d in range(num_domains) if len(self.by_domain[d])])

    def indices(self, step: int) -> StepIndices:
        rng = np.random.default_rng([self.seed, step])
        b = self.batch_size
        y_org = rng.choice(self.present, size=b)
        y_trg = rng.choice(self.present, size=b)
        src = self._pick(rng, y_org)
        ref = self._pick(rng, y_trg)
        ref2 = self._pick(rng, y_trg)
        return StepIndices(src, y_org, y_trg, ref, ref2)

    def _pick(self, rng: np.random.Generator, domains: np.ndarray) -> np.ndarray:
        return np.array([self.by_domain[d][rng.integers(len(self.by_domain[d]))] for d in domains],
                        dtype=np.int64)
