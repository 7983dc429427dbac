"""The judge's decisions: is a finding present (p >= the classifier's operating point), and does
an image show what a task asked for?

A task asks each output for a set over the model's findings, NaN where it asks nothing
(tasks.py). An image *matches* when every judged finding that is asked has the asked
decision. The judge scores a subset of its outputs (:class:`JudgeSpace`): every output for a
domain model, the model's findings it predicts for a finding-set model. The metric built on
this (validity, base and real rates, probability shifts) is ``JudgeVerdicts`` in metrics.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JudgeSpace:
    """The judged classifier outputs: names, column, operating point, model-finding index (-1: none)."""

    names: tuple[str, ...]
    cols: np.ndarray
    thr: np.ndarray
    fidx: np.ndarray

    @classmethod
    def of(cls, classifier_findings: list[str], thresholds: np.ndarray, judged: list[str],
           findings: list[str]) -> "JudgeSpace":
        cols = np.array([classifier_findings.index(f) for f in judged], dtype=np.int64)
        fidx = np.array([findings.index(f) if f in findings else -1 for f in judged], dtype=np.int64)
        return cls(tuple(judged), cols, np.asarray(thresholds, np.float64)[cols], fidx)

    def decide(self, p: np.ndarray) -> np.ndarray:
        """(..., C) classifier probabilities -> (..., J) bool: judged present."""
        return p[..., self.cols] >= self.thr

    def wanted(self, asked: np.ndarray) -> np.ndarray:
        """(..., F) asked sets -> (..., J) asked decisions, NaN where not asked or not a model finding."""
        out = np.full(asked.shape[:-1] + (len(self.names),), np.nan)
        own = self.fidx >= 0
        out[..., own] = asked[..., self.fidx[own]]
        return out

    def mask(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """(J,) bool: which judged outputs are among ``names``."""
        return np.isin(np.asarray(self.names, dtype=object), list(names))


def matches(decisions: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Bool over the leading axes: every asked decision (wanted not NaN) is as wanted."""
    return ((decisions == (wanted == 1)) | np.isnan(wanted)).all(axis=-1)
