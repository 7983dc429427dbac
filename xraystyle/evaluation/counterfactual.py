"""Counterfactual validity: does the judge see the finding the model was asked to add/remove?

For a source domain s and target domain t ("normal" = none of the model's findings):

- the *added* finding is t (unless t is normal), the *removed* finding is s (unless s is normal);
- ``validity``: share of outputs with every asked change past the judge's operating point
  (added: p >= threshold; removed: p < threshold);
- ``base_rate``: the same share on the unchanged sources (what doing nothing scores);
- ``real_rate``: the same criterion on real target-domain images (what the judge says about
  the real thing: the ceiling a perfect generator would reach);
- ``prob_shift/<finding>``: mean p(output) - p(source), for every finding the judge predicts;
- ``off_target_shift``: mean |shift| over the findings not asked for, and
  ``off_target_flip_rate`` the share of (output, such finding) pairs whose decision flipped.
"""

from __future__ import annotations

import numpy as np

from ..cohorts.vocabulary import NORMAL


def pair_changes(src: str, trg: str) -> tuple[str | None, str | None]:
    """(added, removed) finding of a source -> target translation."""
    return (None if trg == NORMAL else trg), (None if src == NORMAL else src)


def success(p: np.ndarray, thr: np.ndarray, findings: list[str], added: str | None,
             removed: str | None) -> np.ndarray:
    """Bool over the leading axes of p (..., F)."""
    ok = np.ones(p.shape[:-1], bool)
    if added is not None:
        j = findings.index(added)
        ok &= p[..., j] >= thr[j]
    if removed is not None:
        j = findings.index(removed)
        ok &= p[..., j] < thr[j]
    return ok


def validity_summary(p_out: np.ndarray, p_src: np.ndarray, thresholds: np.ndarray, findings: list[str],
                     added: str | None, removed: str | None, p_real: np.ndarray | None = None) -> dict[str, float]:
    """p_out (N, K, F) probabilities of the outputs, p_src (N, F) of their sources, p_real (M, F)."""
    thr = np.asarray(thresholds, dtype=np.float64)
    res: dict[str, float] = {}
    res["validity"] = float(success(p_out, thr, findings, added, removed).mean())
    if added is not None and removed is not None:
        res["added_rate"] = float(success(p_out, thr, findings, added, None).mean())
        res["removed_rate"] = float(success(p_out, thr, findings, None, removed).mean())
    res["base_rate"] = float(success(p_src, thr, findings, added, removed).mean())
    if p_real is not None and len(p_real):
        res["real_rate"] = float(success(p_real, thr, findings, added, removed).mean())
    shift = p_out - p_src[:, None, :]
    for j, f in enumerate(findings):
        res[f"prob_shift/{f}"] = float(shift[..., j].mean())
    off = [j for j, f in enumerate(findings) if f not in (added, removed)]
    if off:
        res["off_target_shift"] = float(np.abs(shift[..., off]).mean())
        flips = (p_out[..., off] >= thr[off]) != (p_src[:, None, off] >= thr[off])
        res["off_target_flip_rate"] = float(flips.mean())
    return res
