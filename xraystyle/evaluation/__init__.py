"""Evaluation of counterfactuals: an independent judge (classifier), generative metrics (FID,
LPIPS/diversity), identity preservation, physics leakage and, on the phantom, ground truth.
See docs/evaluation.md."""

from .classifier import Classifier, load_classifier
from .runner import EvalOptions, EvalResult, evaluate_model, flat_metrics, run_evaluation

__all__ = ["Classifier", "load_classifier", "EvalOptions", "EvalResult", "evaluate_model", "flat_metrics",
           "run_evaluation"]
