"""ROC helpers for binary scores with NaN labels ignored.

Hand-written because scikit-learn is not a dependency of the toolkit: the AUC is the
Mann-Whitney statistic computed from ranks (``scipy.stats.rankdata``, ties averaged), which is
exactly what ``sklearn.metrics.roc_auc_score`` returns for binary labels.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _clean(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    keep = np.isfinite(y) & np.isfinite(s)
    return s[keep], y[keep] == 1


def auc(scores, labels) -> float | None:
    """Area under the ROC curve; None when one class is missing."""
    s, y = _clean(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def youden_threshold(scores, labels, default: float = 0.5) -> float:
    """Threshold t maximising sensitivity + specificity - 1 for the rule ``score >= t``.

    The midpoint between the chosen score and the next lower one, so that scores equal to a
    validation score do not sit on the boundary. ``default`` when one class is missing.
    """
    s, y = _clean(scores, labels)
    if y.all() or not y.any():
        return default
    cand = np.unique(s)[::-1]  # descending
    tpr = np.array([(s[y] >= c).mean() for c in cand])
    fpr = np.array([(s[~y] >= c).mean() for c in cand])
    k = int(np.argmax(tpr - fpr))
    lower = cand[k + 1] if k + 1 < len(cand) else cand[k] - 1e-6
    return float((cand[k] + lower) / 2)


def balanced_accuracy(pred, labels) -> float | None:
    """Mean of sensitivity and specificity of a bool prediction; None when a class is missing."""
    p = np.asarray(pred, dtype=bool).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if y.all() or not y.any():
        return None
    return float((p[y].mean() + (~p[~y]).mean()) / 2)
