"""Shared setup of the phantom diagnoses (removal_diagnosis.py, volume_diagnosis.py): the command
line, and a trained single-domain run with the built-in phantom's test split, the attribute
oracle and the ideal renderer at the run's size."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def diagnosis_args(doc: str, n_sources: int, n_styles: int, figure: str | None = None) -> argparse.Namespace:
    """``RUN... [--n-sources] [--n-styles] [--seed] [--out]`` (and ``--figure PNG`` with its help
    text when ``figure`` is given), with one torch thread."""
    import torch

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--n-sources", type=int, default=n_sources)
    p.add_argument("--n-styles", type=int, default=n_styles)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    if figure:
        p.add_argument("--figure", type=Path, help=figure)
    a = p.parse_args()
    torch.set_num_threads(1)
    return a


@dataclass
class PhantomRun:
    model: Any  # xraystyle.trained.TrainedModel
    rows: list  # the test split's TruthRows
    split: str
    oracle: Any  # AttributeOracle at the run's size
    renderer: Any  # the benchmark's ideal renderer in the model's space

    @property
    def size(self) -> int:
        return self.model.size


def load_phantom_run(run: Path, order_seed: int | None = None) -> PhantomRun:
    """The run (EMA weights) and the built-in phantom's test split at its size; with
    ``order_seed`` the rows in the truth benchmark's seeded order. Exits with one line if the run
    is not a normal / effusion single-domain model."""
    from xraystyle.evaluation.bench import split_rows
    from xraystyle.evaluation.truth import _Renderer
    from xraystyle.paths import cache_dir
    from xraystyle.phantom.attributes import calibrate_attribute_oracle
    from xraystyle.phantom.default import default_phantom_manifest
    from xraystyle.phantom.ideal import MANIFEST_FILE, read_truth
    from xraystyle.streams import Stream
    from xraystyle.trained import load_trained_model

    model = load_trained_model(run)
    if model.labels.multi_label or "effusion" not in model.domains:
        sys.exit(f"{run}: a normal / effusion (single-domain) run is needed")
    cohort = default_phantom_manifest(model.size, cache_dir())
    rows, split = split_rows(read_truth(cohort), cohort / MANIFEST_FILE if cohort.is_dir() else cohort, "test")
    if order_seed is not None:
        order = np.random.default_rng(np.random.SeedSequence([order_seed, Stream.TRUTH, 4])).permutation(len(rows))
        rows = [rows[i] for i in order]
    return PhantomRun(model, rows, split, calibrate_attribute_oracle(model.size, n=400, seed=0),
                      _Renderer(model.preprocess))
