"""The tasks of a multi-label (finding-set) model: per finding and per target set.

- ``add f``: sources with ``f`` known absent; the target is the source's own set plus ``f``
  (the rest of the patient's findings must stay as they are);
- ``remove f``: sources with ``f`` present; the target is the source's own set minus ``f``;
- ``set T``: normal sources (every finding of the model known absent) translated to the set
  ``T``, for every non-empty ``T`` of at most ``max_set_size`` findings; combinations held out
  of training (``data.holdout_combinations``) are marked ``held_out``; add / remove rows give
  ``held_out_share``, the share of their sources whose target contains such a combination.

Their real target images: for add / remove, real images with / without ``f`` (the judge's
sensitivity / specificity for f is the ceiling of ``target_rate``); for a set, real images with
exactly ``T``. Rows use the pair layout: add ``f`` is ``no-f -> add-f``, remove is
``f -> remove-f``, a set is ``normal -> a+b``. runner.py scores them like pairs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ..cohorts.vocabulary import NORMAL
from .tasks import Task

KINDS = ("add", "remove", "set")


@dataclass(frozen=True)
class SetTask(Task):
    kind: str  # add | remove | set
    edited: tuple[str, ...]  # the finding(s) the task changes
    held_out: bool = False
    checks_rest = True

    @property
    def source(self) -> str:
        return {"add": f"no-{self.edited[0]}", "remove": self.edited[0], "set": NORMAL}[self.kind]

    @property
    def target(self) -> str:
        return "+".join(self.edited) if self.kind == "set" else f"{self.kind}-{self.edited[0]}"

    @property
    def added(self) -> tuple[str, ...]:
        return () if self.kind == "remove" else self.edited

    @property
    def removed(self) -> tuple[str, ...]:
        return self.edited if self.kind == "remove" else ()

    @property
    def region(self) -> tuple[str, ...]:
        return self.edited

    def sources(self, sets: np.ndarray, findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
        j = [findings.index(f) for f in self.edited]
        if self.kind == "set":
            rows = np.flatnonzero((sets == 0).all(axis=1))
            target = np.zeros((len(rows), len(findings)))
            target[:, j] = 1.0
            return rows, target
        want = 0.0 if self.kind == "add" else 1.0
        rows = np.flatnonzero(sets[:, j[0]] == want)
        target = sets[rows].copy()
        target[:, j[0]] = 1.0 - want
        return rows, target

    def real_rows(self, sets: np.ndarray, findings: list[str]) -> np.ndarray:
        asked = self.real_asked(findings)
        return ((sets == asked) | np.isnan(asked)).all(axis=1)

    def real_asked(self, findings: list[str]) -> np.ndarray:
        asked = np.zeros(len(findings)) if self.kind == "set" else np.full(len(findings), np.nan)
        asked[[findings.index(f) for f in self.edited]] = 0.0 if self.kind == "remove" else 1.0
        return asked

    def condition(self, trg_sets: np.ndarray, domains: list[str]) -> torch.Tensor:
        return torch.as_tensor(trg_sets, dtype=torch.float32)

    def header(self) -> dict:
        return {**super().header(), "held_out": self.held_out}

    def held_out_share(self, trg_sets: np.ndarray, findings: list[str], holdout: list[list[str]]) -> float | None:
        if self.kind == "set" or not holdout:
            return None
        held = [np.isin(findings, c) for c in holdout]
        return float(np.mean([any((t[h] == 1).all() for h in held) for t in trg_sets])) if len(trg_sets) else 0.0


def set_tasks(findings: list[str], holdout: list[list[str]], max_set_size: int | None = None) -> list[SetTask]:
    """Add and remove per finding, then every non-empty set of at most ``max_set_size``."""
    held = {frozenset(c) for c in holdout}
    tasks = [SetTask(k, (f,)) for f in findings for k in ("add", "remove")]
    top = len(findings) if max_set_size is None else min(max_set_size, len(findings))
    for k in range(1, top + 1):
        tasks += [SetTask("set", combo, frozenset(combo) in held) for combo in itertools.combinations(findings, k)]
    return tasks
