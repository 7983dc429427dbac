"""The process around the toolkit: the CPU thread policy reaches torch before it loads its
OpenMP runtime (xraystyle/runtime.py), and files the CLI must not touch or cannot read give one
line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xraystyle import runtime

from .conftest import cli, one_line_error

WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE")


def _clean_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_KEYS}
    env.update({"XRAYSTYLE_CACHE": str(tmp_path / "cache")}, **extra)
    return env


def _python(code: str, env: dict) -> str:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_import_sets_the_wait_policy_before_anything_loads_torch(tmp_path):
    code = ("import os, sys, xraystyle, xraystyle.cli; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    # libgomp reads the policy when torch loads it: neither the package nor the CLI may import torch
    assert runtime.OPENMP_DEFAULTS == {"GOMP_SPINCOUNT": "10000"}
    assert _python(code, _clean_env(tmp_path)) == "10000 None False"


@pytest.mark.parametrize("user, expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None"),
    ({"GOMP_SPINCOUNT": "5000"}, "None 5000"),  # a spin count is a wait policy too: nothing added
])
def test_the_users_wait_policy_is_kept(tmp_path, user, expected):
    code = "import os, xraystyle; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    assert _python(code, _clean_env(tmp_path, **user)) == expected


@pytest.mark.parametrize("env, cpus, expected", [
    ({}, 8, 8),
    ({"LOCAL_WORLD_SIZE": "2"}, 8, 4),
    ({"LOCAL_WORLD_SIZE": "3"}, 8, 2),
    ({"LOCAL_WORLD_SIZE": "16"}, 8, 1),  # more processes than CPUs: still one thread each
    ({"LOCAL_WORLD_SIZE": "junk"}, 8, 8),
    ({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "2"}, 8, 3),  # the user's count wins
    ({"OMP_NUM_THREADS": "6,2"}, 8, 6),  # an OpenMP nesting list: the outer level
    ({"OMP_NUM_THREADS": ""}, 8, 8),
])
def test_thread_count_is_usable_cpus_per_local_process(monkeypatch, env, cpus, expected):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: cpus)
    assert runtime.cpu_threads(env) == expected


def test_thread_policy_is_applied_only_in_a_fresh_process(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 8)
    env = {"LOCAL_WORLD_SIZE": "2"}
    assert runtime.apply_thread_policy(env) is None and "OMP_NUM_THREADS" not in env  # torch is loaded here
    monkeypatch.delitem(sys.modules, "torch")
    assert runtime.apply_thread_policy(env) == 4 and env["OMP_NUM_THREADS"] == "4"
    user = {"OMP_NUM_THREADS": "1"}
    assert runtime.apply_thread_policy(user) is None and user == {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_torch_in_a_cli_process_uses_the_policy(tmp_path):
    """Two processes per node (torchrun's LOCAL_WORLD_SIZE=2): torch in each `xraystyle` process
    starts with usable CPUs // 2 threads and the short spin; an explicit OMP_NUM_THREADS wins."""
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    args = ["-v", "train", "--config", "tiny", "--device", "cpu", "--cohort", str(tmp_path / "missing.csv"),
            "--out", str(tmp_path / "run")]
    script = Path(sys.executable).with_name("xraystyle")
    for cmd, env, threads in (([str(script)], _clean_env(tmp_path, LOCAL_WORLD_SIZE="2"), expected),
                              ([sys.executable, "-m", "xraystyle"], _clean_env(tmp_path, OMP_NUM_THREADS="1"), 1)):
        p = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 1 and "missing.csv" in p.stderr, p.stderr  # stops after choosing the device
        line = f"{threads} CPU threads (OMP_NUM_THREADS={threads}, OMP_WAIT_POLICY=unset, GOMP_SPINCOUNT=10000)"
        assert line in p.stderr, p.stderr


def test_config_that_is_not_utf8_is_one_line(tmp_path):
    for name, data in (("latin1.yaml", "model:\n  img_size: 32  # größe\n".encode("latin-1")),
                       ("utf16.yaml", "train:\n  iters: 3\n".encode("utf-16"))):
        bad = tmp_path / name
        bad.write_bytes(data)
        one_line_error(cli("train", "--config", bad, "--dry-run"), str(bad), "not UTF-8")


def _png(path: Path) -> Path:
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "absolute", "symlink", "hardlink"])
def test_convert_refuses_to_overwrite_its_input(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    src = _png(tmp_path / "x.png")
    (tmp_path / "d").mkdir()
    before = src.read_bytes()
    out = {"same": "x.png", "dot": "./x.png", "dotdot": "d/../x.png", "absolute": str(src),
           "symlink": "link.png", "hardlink": "hard.png"}[spelling]
    if spelling == "symlink":
        (tmp_path / "link.png").symlink_to("x.png")
    if spelling == "hardlink":
        os.link(src, tmp_path / "hard.png")
    one_line_error(cli("convert", "x.png", out), str(Path(out)), "is the input file")
    assert src.read_bytes() == before
    r = cli("convert", "x.png", "y.png", "--size", 32)  # another file is fine
    assert r.exit_code == 0, r.output


# --- the thread count a training run picks for the load it finds (benchmarks/README.md, "CPU under load")

def test_training_threads_leave_the_users_count_alone_and_follow_the_load(monkeypatch):
    monkeypatch.delenv(runtime.AUTO_THREADS_ENV, raising=False)
    assert runtime.training_threads() is None  # the user (or library code) chose the count
    monkeypatch.setenv(runtime.AUTO_THREADS_ENV, "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    for busy, expected in ((0.05, 2), (1.0, 1), (1.7, 1), (None, 2)):
        monkeypatch.setattr(runtime, "busy_cpus_elsewhere", lambda seconds=0.3, b=busy: b)
        assert runtime.training_threads() == expected, busy
    monkeypatch.setattr(runtime, "busy_cpus_elsewhere", lambda seconds=0.3: 1.0)
    assert runtime.training_threads(saved=2) == 2  # a resumed run keeps its count: exact resumption
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(runtime, "busy_cpus_elsewhere", lambda seconds=0.3: 0.0)
    assert runtime.training_threads() == 4  # never above this process's share


def test_training_threads_ignore_a_crafted_saved_count(monkeypatch):
    """The saved count comes from a checkpoint file: a string, a bool or an absurd number is
    ignored (the count is chosen afresh), never compared (TypeError) or passed to torch."""
    monkeypatch.setenv(runtime.AUTO_THREADS_ENV, "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cpus_elsewhere", lambda seconds=0.3: 0.0)
    for saved in ("2", [2], True, 0, -3, 2.5, 10**9):
        assert runtime.training_threads(saved=saved) == 2, saved


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_busy_cpus_elsewhere_sees_another_busy_process():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        busy = runtime.busy_cpus_elsewhere(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert busy is not None and busy >= 0.6, busy


def test_a_resumed_cli_run_trains_with_the_thread_count_it_started_with(tmp_path, monkeypatch):
    import torch

    from tests.training.conftest import write_png_cohort
    from xraystyle.paths import resolve_config
    from xraystyle.training.accel import make_accel
    from xraystyle.training.config import load_config
    from xraystyle.training.trainer import training_loop

    monkeypatch.setenv(runtime.AUTO_THREADS_ENV, "1")  # as when the CLI chose OMP_NUM_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    cohort = write_png_cohort(tmp_path / "cohort")

    def run(iters, busy, resume):
        monkeypatch.setattr(runtime, "busy_cpus_elsewhere", lambda seconds=0.3: busy)
        cfg = load_config(resolve_config("tiny"), {"train.iters": iters, "train.ckpt_every": 2})
        training_loop(cfg, tmp_path / "run", cohort, cache_dir=tmp_path / "cache", resume=resume,
                      accel=make_accel("reference", torch.device("cpu")), progress=False)
        return torch.get_num_threads()

    try:
        assert run(2, busy=1.0, resume=False) == 1  # started beside a busy process
        assert torch.load(tmp_path / "run" / "checkpoints" / "step_0000002.pt", weights_only=True)["cpu_threads"] == 1
        assert run(4, busy=0.0, resume=True) == 1  # the machine is idle now, but the run keeps its count
    finally:
        torch.set_num_threads(1)


def test_ranks_of_a_multi_process_node_keep_their_share_without_probing(monkeypatch):
    monkeypatch.setenv(runtime.AUTO_THREADS_ENV, "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 8)
    monkeypatch.setattr(runtime, "busy_cpus_elsewhere", lambda seconds=0.3: pytest.fail("probed"))
    assert runtime.training_threads() == 4
