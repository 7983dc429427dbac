"""Fixtures of the reliability battery: a tiny PNG cohort, a fault-test run config (checkpoint
every 2 steps, all kept), one uninterrupted reference run, and subprocess plumbing."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from xraystyle.paths import resolve_config

REPO = Path(__file__).resolve().parents[2]
ITERS = 8  # steps of the reference run; checkpoints at 2, 4, 6, 8
runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "xcache"))


def cli(*args, env=None):
    """Invoke the CLI in-process; returns the typer Result."""
    from xraystyle.cli import app

    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line_error(result, *needles) -> str:
    """Assert exit code 1 with exactly one stderr line ``xraystyle: error: ...`` holding every needle."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: "), result.output
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def write_config(path: Path, **train) -> Path:
    """The packaged tiny config with ``train.*`` overrides (and any ``data.*`` via data=...)."""
    cfg = yaml.safe_load(resolve_config("tiny").read_text())
    data = train.pop("data", None)
    cfg["train"].update(train)
    if data:
        cfg.setdefault("data", {}).update(data)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def rel_base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
def cohort(rel_base):
    """12 sixteen-bit PNGs (8 train: 4 normal, 4 effusion), manifest next to them."""
    from tests.training.conftest import write_png_cohort

    return write_png_cohort(rel_base / "cohort", n=12)


@pytest.fixture(scope="session")
def fault_config(rel_base) -> Path:
    return write_config(rel_base / "fault.yaml", iters=ITERS, ckpt_every=2, keep_ckpts=10, sample_every=4,
                        log_every=1)


def train_args(config: Path, cohort_path: Path, out: Path, iters: int = ITERS, *extra) -> list[str]:
    return ["train", "--config", str(config), "--cohort", str(cohort_path), "--iters", str(iters), "--out",
            str(out), "--no-progress", *map(str, extra)]


@pytest.fixture(scope="session")
def reference_run(rel_base, cohort, fault_config) -> Path:
    """An uninterrupted in-process run to ITERS steps: the bitwise baseline of every resume test."""
    torch.set_num_threads(1)
    run = rel_base / "reference"
    r = cli(*train_args(fault_config, cohort.path, run), env={"XRAYSTYLE_CACHE": str(rel_base / "cache-reference")})
    assert r.exit_code == 0, r.output
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def subprocess_env(cache: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE")}
    env.update({"XRAYSTYLE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tensors_equal(a, b, where: str = "") -> list[str]:
    """Keys (dotted) at which two nested state structures differ; tensors compared bitwise."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ok = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
        return [] if ok else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}{{keys}}"]
        return [d for k in a for d in tensors_equal(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}[len]"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in tensors_equal(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def write_evil_checkpoint(folder: Path, marker: Path) -> tuple[Path, Path]:
    """A checkpoint file whose unpickling would run ``touch MARKER``, and a run folder whose only
    snapshot is that file with a *matching* checksum in index.json, so nothing but the safe
    loader stands between the payload and execution. Returns (file, run folder)."""
    import json

    from .hostile import PicklePayload

    folder.mkdir(parents=True, exist_ok=True)
    evil = folder / "evil.pt"
    torch.save({"format": 1, "step": 8, "config": {}, "domains": ["normal", "effusion"],
                "state": {"ema": {"G": {"weight": PicklePayload(marker)}}}}, evil)
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    snap = run / "checkpoints" / "step_0000008.pt"
    snap.write_bytes(evil.read_bytes())
    (run / "checkpoints" / "index.json").write_text(
        json.dumps([{"file": snap.name, "step": 8, "sha256": sha256(snap)}]))
    return evil, run


# Tests served by the background subprocesses (see procs.py), by the process they need.
_NEEDS = {
    "signal": ("test_sigkill_mid_training_then_resume_is_bitwise_identical",
               "test_sigterm_saves_a_checkpoint_exits_143_and_resumes"),
    "crash": ("test_kill_during_checkpoint_write_keeps_previous_and_never_loads_a_partial_file",),
    "unsafe": ("test_pickle_payload_refused_with_unsafe_torch_env",),
}


@pytest.fixture(scope="session", autouse=True)
def background(request, rel_base, cohort, fault_config):
    """Start the subprocesses the selected tests need, at the beginning of the session."""
    from .procs import Background

    wanted = {item.originalname for item in request.session.items if "reliability" in item.nodeid}
    bg = Background(rel_base)
    try:
        if wanted & set(_NEEDS["signal"]):
            bg.start_signal_runs(fault_config, cohort.path)
        if wanted & set(_NEEDS["crash"]):
            bg.start_crashed_writes()
        if wanted & set(_NEEDS["unsafe"]):
            evil, run = write_evil_checkpoint(rel_base / "evil-unsafe", rel_base / "evil-unsafe" / "PWNED")
            source = cohort.resolve(cohort.df["path"][0])
            bg.start_unsafe_env([evil, run, cohort.path, fault_config, source, rel_base / "evil-unsafe" / "out"])
        yield bg
    finally:
        bg.stop()
