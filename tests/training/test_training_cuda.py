"""The GPU paths (skipped without CUDA; run by benchmarks/gpu_check.sh on the device machine)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.paths import resolve_config
from xraystyle.training.accel import make_accel
from xraystyle.training.agreement import EARLY, compare_trajectories
from xraystyle.training.checkpoint import load_latest
from xraystyle.training.config import load_config

from .conftest import loss_trajectory

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda") if torch.cuda.is_available() else None


@pytest.fixture(autouse=True)
def _backend_flags():
    """Runs here set process-wide cuDNN / TF32 flags (as training does): restore them after."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _trajectory(cfg, mode, steps):
    accel = make_accel(mode, CUDA)
    return loss_trajectory(cfg, accel, steps)[0], accel


def test_auto_mode_is_fast_on_cuda():
    accel = make_accel("auto", CUDA)
    assert accel.name == "fast" and accel.amp_dtype == torch.bfloat16 and accel.compile and accel.fused_optim


@pytest.mark.parametrize("overrides", [{}, {"loss.r1_interval": 2, "physics.d_augment": True, "physics.e_augment": True,
                                            "physics.lambda_inv": 1.0, "physics.lambda_eq": 1.0,
                                            "model.normal_style": "fixed"}])
def test_compiled_bf16_fast_path_tracks_reference_early(overrides):
    """Inductor-compiled G/F/E/D under bf16 autocast, with lazy R1 and the physics terms."""
    cfg = load_config(resolve_config("tiny"), overrides)
    ref, _ = _trajectory(cfg, "reference", EARLY)
    fast, accel = _trajectory(cfg, "fast", EARLY)
    assert accel.compile and accel.amp_dtype == torch.bfloat16
    assert [r["term"] for r in compare_trajectories(ref, fast) if not r["ok"]] == []
    assert any(not np.array_equal(ref[k], fast[k]) for k in ref)


def test_cli_trains_in_fast_mode_and_resumes(png_cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    base = ["train", "--config", "tiny", "--cohort", str(png_cohort.path), "--out", str(run), "--no-progress",
            "--device", "cuda", "--mode", "fast"]
    r = CliRunner().invoke(app, [*base, "--iters", "3"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*base, "--iters", "5", "--resume"])
    assert r.exit_code == 0, r.output
    payload, _ = load_latest(run)
    assert payload["step"] == 5
