"""The ``eval`` job: a checkpoint judged on a cohort, results written. :func:`run_eval` is what
``xraystyle eval`` calls. Domain models are evaluated per (source, target) pair, finding-set
models per finding and per set (both by the loop of evaluation/runner.py); the model's label
space decides which."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .runner import EvalOptions, EvalResult


def run_eval(checkpoint: Path, cohort: Path, classifier: str, options: EvalOptions, out: Path, *,
             weights_dir: Path | None = None, device: str = "auto",
             max_set_size: int | None = None) -> tuple[EvalResult, dict[str, Path]]:
    """Evaluate ``checkpoint`` on ``cohort`` with the judge ``classifier``; write metrics.json,
    metrics.jsonl, figures and summary.html into ``out``. Returns the result and those paths."""
    from ..cohorts.manifest import load_manifest
    from ..trained import load_trained_model
    from ..training.accel import resolve_device
    from .classifier import load_classifier
    from .runner import run_evaluation, run_set_evaluation
    from .summary import write_outputs

    if max_set_size is not None and max_set_size < 1:
        raise ConfigError(f"--max-set-size must be >= 1, got {max_set_size}")
    dev = resolve_device(device)
    manifest = load_manifest(cohort)
    judge = load_classifier(classifier, weights_dir, dev)
    model = load_trained_model(checkpoint, device=dev)
    if model.labels.kind == "finding-sets":
        result = run_set_evaluation(model, manifest, judge, options, max_set_size=max_set_size)
    elif max_set_size is not None:
        raise ConfigError("--max-set-size is for multi-label (finding-set) models")
    else:
        result = run_evaluation(model, manifest, judge, options)
    return result, write_outputs(result, out)
