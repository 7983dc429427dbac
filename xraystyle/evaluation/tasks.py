"""What one counterfactual question asks: a task of the evaluation loop (runner.py).

A single-domain pair (s -> t, :class:`PairTask`) and a finding-set task (add f, remove f, set T;
sets.py) are both a :class:`Task`, so one loop scores both with one set of metrics
(metrics.py). Every image carries a 0/1 set over the model's findings F (a domain model's
non-normal domains), and a task says, in those terms:

- which pool rows are its sources, and the set each source's outputs are asked for;
- which findings it edits (added, removed) and which the judge and the oracle check: only the
  edited ones for a pair (a domain names one finding and says nothing of the others), the whole
  set for set tasks (the rest of the patient's findings must stay);
- which real images are "the target" (FID, the judge's real rate, real spreads);
- where the edit is expected (``region``: left out of identity and physics statistics).

References are the same for every task: real images whose own set is exactly the target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from ..cohorts.vocabulary import NORMAL


class Task(ABC):
    source: str  # row labels in metrics.json
    target: str
    kind: str  # pair | add | remove | set
    edited: tuple[str, ...]  # added + removed
    added: tuple[str, ...]
    removed: tuple[str, ...]
    checks_rest: bool  # validity also asks the findings not edited to stay as they are
    region: tuple[str, ...]  # findings whose expected region (cohort prior) is not counted against identity

    @abstractmethod
    def sources(self, sets: np.ndarray, findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Source rows of a pool with finding sets ``sets`` (N, F), and the set (n, F) each is asked for."""

    @abstractmethod
    def real_rows(self, sets: np.ndarray, findings: list[str]) -> np.ndarray:
        """Bool (N,): the real images of the target among rows with sets ``sets``."""

    @abstractmethod
    def real_asked(self, findings: list[str]) -> np.ndarray:
        """(F,) what the judge must say about a real target image to count for ``real_rate``; NaN = not asked."""

    @abstractmethod
    def condition(self, trg_sets: np.ndarray, domains: list[str]) -> torch.Tensor:
        """y_trg of each source: what the generator is conditioned on."""

    def asked(self, trg_sets: np.ndarray, findings: list[str]) -> np.ndarray:
        """(n, F) the sets the outputs must show; NaN where the task asks nothing."""
        if self.checks_rest:
            return trg_sets.astype(np.float64)
        asked = np.full(trg_sets.shape, np.nan)
        j = [findings.index(f) for f in self.edited]
        asked[:, j] = trg_sets[:, j]
        return asked

    def seed_key(self, position: int) -> tuple[int, ...]:
        """Keys the task's random draws; ``position`` is its place in the task list."""
        return (position,)

    def header(self) -> dict:
        """Row entries that describe the task."""
        return {"source": self.source, "target": self.target, "kind": self.kind, "edited": list(self.edited)}

    def held_out_share(self, trg_sets: np.ndarray, findings: list[str], holdout: list[list[str]]) -> float | None:
        """Share of sources whose target contains a combination held out of training (None: not asked)."""
        return None


def domain_set(domain: str, findings: list[str]) -> np.ndarray:
    """(F,) the finding set of a domain: one finding, or none for normal."""
    out = np.zeros(len(findings))
    if domain != NORMAL:
        out[findings.index(domain)] = 1.0
    return out


@dataclass(frozen=True)
class PairTask(Task):
    """Single-domain translation ``source`` -> ``target`` of a model with ``domains``."""

    source: str
    target: str
    domains: tuple[str, ...]
    kind = "pair"
    checks_rest = False

    @property
    def added(self) -> tuple[str, ...]:
        return () if self.target == NORMAL else (self.target,)

    @property
    def removed(self) -> tuple[str, ...]:
        return () if self.source == NORMAL else (self.source,)

    @property
    def edited(self) -> tuple[str, ...]:
        return self.added + self.removed

    @property
    def region(self) -> tuple[str, ...]:
        return self.added  # a removed finding's region is its source mask (runner.py)

    def sources(self, sets: np.ndarray, findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero((sets == domain_set(self.source, findings)).all(axis=1))
        return rows, np.tile(domain_set(self.target, findings), (len(rows), 1))

    def real_rows(self, sets: np.ndarray, findings: list[str]) -> np.ndarray:
        return (sets == domain_set(self.target, findings)).all(axis=1)

    def real_asked(self, findings: list[str]) -> np.ndarray:
        return self.asked(domain_set(self.target, findings)[None], findings)[0]

    def condition(self, trg_sets: np.ndarray, domains: list[str]) -> torch.Tensor:
        return torch.full((len(trg_sets),), domains.index(self.target), dtype=torch.long)

    def seed_key(self, position: int) -> tuple[int, ...]:
        # by domain index: a pair draws the same codes and references whichever other pairs run
        return self.domains.index(self.source), self.domains.index(self.target)


def pair_tasks(domains: list[str]) -> list[PairTask]:
    """Every ordered pair of distinct domains."""
    return [PairTask(s, t, tuple(domains)) for s in domains for t in domains if s != t]
