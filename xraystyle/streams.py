"""One registry of random-stream ids.

Every seeded draw in the toolkit is keyed by (seed, ..., stream): a stream id keeps two uses of
one seed independent (the latent codes of a batch and its augmentation, say). The values are
part of the reproducibility contract: changing one changes every run's draws and breaks exact
resumption of existing runs, so a new use gets a new number and old numbers are never reused.
"""

from __future__ import annotations

from enum import IntEnum


class Stream(IntEnum):
    LATENTS = 0  # z_trg, z_trg2 of a training batch (data/fetcher.py)
    AUGMENT = 1  # physics augmentation of a training batch's real images (data/fetcher.py)
    STEP_PHYSICS = 2  # in-step augmentation of D/E inputs (training/step.py)
    SET_TASK_SOURCES = 3  # sources of one finding-set evaluation task under --limit (evaluation/sets.py)
    EVAL_ROWS = 7  # rows drawn per domain for evaluation (evaluation/data.py)
    SET_SOURCES = 11  # multi-label evaluation sources under --limit (evaluation/sets.py)
    FID_FLOOR = 13  # the two disjoint real draws of FID's real-vs-real floor (evaluation/runner.py)
    TRUTH = 15  # sources' order and the baselines' draws of the truth benchmark (evaluation/truth.py)
    STYLE_PROBE = 16  # bootstrap, permutations and noise codes of the style probes (evaluation/style_probe.py)
    STEP_CYCLE_NOISE = 17  # noise on the fake before the cycle's second pass (training/step.py)
    STEP_PARTIAL = 18  # boxes that mix a removal with its source for D (training/step.py)
    SAMPLE_GRID = 2**31 - 1  # sources and references of the training sample grids (training/trainer.py)
