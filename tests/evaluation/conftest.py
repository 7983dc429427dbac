"""Shared fixtures: a tiny phantom cohort (32 px), a small classifier trained on it, and a
checkpoint trained for two steps. Session-scoped: built once for the whole folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xraystyle.cohorts.manifest import load_manifest


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "xcache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached hub weights


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """Also the cache of the session fixtures below (set before any of them runs), so nothing,
    not even the phantom's lung-mask bank, is written to the home folder."""
    root = tmp_path_factory.mktemp("eval-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRAYSTYLE_CACHE", str(root))
        mp.setenv("TORCH_HOME", str(root / "torch-home"))
        yield root


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory):
    from xraystyle.phantom.generator import generate_phantom_cohort

    path = generate_phantom_cohort(tmp_path_factory.mktemp("phantom"), n=120, size=32, seed=3,
                                   findings=("effusion",), prevalence={"effusion": 0.5},
                                   split=(0.6, 0.2, 0.2))
    return load_manifest(path)


@pytest.fixture(scope="session")
def classifier_pt(phantom_manifest, session_cache, tmp_path_factory) -> Path:
    from xraystyle.evaluation.classifier_train import train_classifier

    out = tmp_path_factory.mktemp("clf") / "effusion.pt"
    train_classifier(phantom_manifest, ["effusion"], out, arch="small", epochs=10, size=32, batch_size=16,
                     cache_dir=session_cache / "tensors", progress=False)
    return out


@pytest.fixture(scope="session")
def checkpoint(phantom_manifest, session_cache, tmp_path_factory) -> Path:
    from xraystyle.paths import resolve_config
    from xraystyle.training.accel import make_accel
    from xraystyle.training.config import load_config
    from xraystyle.training.trainer import training_loop

    torch.set_num_threads(1)
    cfg = load_config(resolve_config("tiny"), {"train.iters": 2, "train.ckpt_every": 2, "train.sample_every": 2})
    result = training_loop(cfg, tmp_path_factory.mktemp("run"), phantom_manifest, cache_dir=session_cache / "tensors",
                           accel=make_accel("reference", torch.device("cpu")), progress=False)
    return result.checkpoint
