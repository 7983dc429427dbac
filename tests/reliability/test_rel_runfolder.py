"""The run folder as a trust boundary and a shared resource: a crafted ``checkpoints/index.json``
never reads or removes anything outside the folder, malformed entries and payload steps are
refused cleanly, one training process holds a folder at a time (and a killed one never leaves a
stale lock), scratch files of killed writers are cleaned, and stats.jsonl has each step once
after a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xraystyle.errors import CheckpointError

from .conftest import ITERS, REPO, cli, copy_run, one_line_error, sha256, train_args, write_config
from .test_rel_faults import _assert_same_final_state, _losses, _resume, _snapshot

CKPT_LOGGER = "xraystyle.training.checkpoint"


def _index(run: Path) -> Path:
    return run / "checkpoints" / "index.json"


def _entries(run: Path) -> list:
    return json.loads(_index(run).read_text())


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("not yours")
    return victim


def _escaping_entry(kind: str, run: Path, target: Path, step: int) -> dict:
    """An index entry that reaches ``target`` (outside ``run``): by absolute path, by ``..``, or
    through a snapshot-named symlink planted in the checkpoints folder."""
    ckpt = run / "checkpoints"
    if kind == "absolute":
        name = str(target)
    elif kind == "dotdot":
        name = os.path.relpath(target, ckpt)
        assert name.startswith("../")
    else:
        name = f"step_{step:07d}.pt"
        (ckpt / name).unlink(missing_ok=True)
        (ckpt / name).symlink_to(target)
    return {"file": name, "step": step, "sha256": sha256(target)}


@pytest.fixture
def source(cohort) -> Path:
    return cohort.resolve(cohort.df["path"][0])


def _synth(checkpoint, source, out):
    return cli("synth", "--checkpoint", checkpoint, "--source", source, "--target", "effusion", "--out", out,
               "--no-progress")


# ---------------------------------------------------------------------------------------------
# index entries pointing outside the run folder


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_pruning_never_removes_a_file_outside_the_run_folder(kind, reference_run, cohort, rel_base, tmp_path,
                                                             caplog):
    run = copy_run(reference_run, tmp_path / "run")
    victim = _victim(tmp_path)
    _index(run).write_text(json.dumps([_escaping_entry(kind, run, victim, 0), *_entries(run)]))
    # keep_ckpts=2 on resume: the next save prunes everything but two, the planted entry first
    config = write_config(tmp_path / "keep2.yaml", iters=ITERS, ckpt_every=2, keep_ckpts=2, sample_every=4,
                          log_every=1)
    with caplog.at_level("WARNING", logger=CKPT_LOGGER):
        r = _resume(run, config, cohort, rel_base, ITERS + 2)
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "not yours"
    assert "index.json" in caplog.text
    assert [e["step"] for e in _entries(run)] == [ITERS, ITERS + 2]
    assert all(e["file"].startswith("step_") and "/" not in e["file"] for e in _entries(run))


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_an_index_entry_outside_the_run_folder_is_never_loaded(kind, reference_run, source, tmp_path, caplog):
    from xraystyle.trained import load_trained_model

    run = copy_run(reference_run, tmp_path / "run")
    outside = tmp_path / "outside" / f"step_{ITERS:07d}.pt"  # a valid snapshot, checksum and all
    outside.parent.mkdir()
    outside.write_bytes(_snapshot(reference_run, ITERS).read_bytes())
    for p in (run / "checkpoints").glob("step_*.pt"):
        p.unlink()
    _index(run).write_text(json.dumps([_escaping_entry(kind, run, outside, ITERS)]))
    with caplog.at_level("WARNING", logger=CKPT_LOGGER), pytest.raises(CheckpointError, match="no readable"):
        load_trained_model(run)
    assert "index.json" in caplog.text
    r = _synth(run, source, tmp_path / "out")
    one_line_error(r, str(run), "no readable checkpoint")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# malformed index entries and payload steps


def test_malformed_index_entries_are_dropped_with_one_warning(reference_run, fault_config, cohort, rel_base,
                                                              tmp_path, caplog):
    from xraystyle.trained import load_trained_model

    run = copy_run(reference_run, tmp_path / "run")
    good = _entries(run)[:2]  # steps 2 and 4
    bad = [f"step_{ITERS:07d}.pt", {"file": "step_0000006.pt"}, {"file": "step_0000006.pt", "step": "6"},
           {"file": f"step_{ITERS:07d}.pt", "step": True}, {"file": f"step_{ITERS:07d}.pt", "step": ITERS,
                                                            "sha256": 5},
           {"step": ITERS}, {"file": "step_8.pt", "step": 8}, {"file": "index.json", "step": 9}, None, 7]
    _index(run).write_text(json.dumps(good + bad))
    with caplog.at_level("WARNING", logger=CKPT_LOGGER):
        model = load_trained_model(run)
    assert model.step == 4
    warnings = [r for r in caplog.records if "index.json" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    caplog.clear()
    r = _resume(run, fault_config, cohort, rel_base)
    assert r.exit_code == 0, r.output
    assert [e["step"] for e in _entries(run)] == [2, 4, 6, 8]  # rewritten with valid entries only
    _assert_same_final_state(run, reference_run)


@pytest.mark.parametrize("step", ["eight", None, -1, True, 8.5, "missing"])
def test_checkpoint_with_an_invalid_step_is_a_one_line_error(step, reference_run, source, tmp_path):
    payload = torch.load(_snapshot(reference_run, ITERS), map_location="cpu", weights_only=True)
    if step == "missing":
        del payload["step"]
    else:
        payload["step"] = step
    path = tmp_path / "bad-step.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="step") as exc:
        from xraystyle.training.checkpoint import load_checkpoint

        load_checkpoint(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    one_line_error(_synth(path, source, tmp_path / "out"), str(path), "step")


# ---------------------------------------------------------------------------------------------
# one process per run folder

HOLDER = r"""
import sys, time
from pathlib import Path
from xraystyle.training.runlock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("LOCKED", flush=True)
time.sleep(600)
"""


def _hold_lock(run: Path) -> subprocess.Popen:
    """A process holding ``run``'s lock (it prints LOCKED once it has it)."""
    run.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "LOCKED":
        proc.kill()
        pytest.fail(f"lock holder failed: {line}{proc.communicate(timeout=30)[1]}")
    return proc


def test_second_train_on_a_run_folder_in_use_is_refused_naming_the_holder(cohort, fault_config, tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        r = cli(*train_args(fault_config, cohort.path, run, 2))
        one_line_error(r, str(run), "in use", f"pid {holder.pid}", "--out")
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written by the refused run
        r = cli(*train_args(fault_config, cohort.path, run, 2, "--resume"))
        one_line_error(r, str(run), f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    from xraystyle.training.runlock import RunLock

    run = tmp_path / "run"
    holder = _hold_lock(run)
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    assert str(holder.pid) in (run / ".lock").read_text()  # the holder's pid is still written there
    lock = RunLock(run)
    lock.acquire()  # ... but the OS released the lock with the process
    lock.release()


def test_lock_is_released_when_a_run_fails(cohort, fault_config, tmp_path):
    from xraystyle.training.runlock import RunLock

    run = tmp_path / "run"
    one_line_error(cli(*train_args(fault_config, cohort.path, run, 2, "--resume")), "no readable checkpoint")
    with RunLock(run):
        pass


# ---------------------------------------------------------------------------------------------
# scratch files of killed writers

SCRATCH = [".step_0000010.pt.tmp", ".step_0000004.pt.tmp", ".index.json.tmp"]
DECOYS = [".notes.tmp", "step_0000010.pt.tmp", ".step_x.pt.tmp", ".index.json.tmp.bak", "README.tmp"]


def _plant(ckpt: Path) -> None:
    for name in SCRATCH + DECOYS:
        (ckpt / name).write_bytes(b"partial")


def test_stale_scratch_files_are_removed_when_a_run_starts(reference_run, fault_config, cohort, rel_base,
                                                           tmp_path):
    run = copy_run(reference_run, tmp_path / "run")
    ckpt = run / "checkpoints"
    _plant(ckpt)
    r = _resume(run, fault_config, cohort, rel_base)  # already at ITERS: starts, trains nothing
    assert r.exit_code == 0, r.output
    assert not any((ckpt / name).exists() for name in SCRATCH)
    assert all((ckpt / name).exists() for name in DECOYS)


def test_stale_scratch_files_are_removed_when_a_checkpoint_is_saved(tmp_path):
    from xraystyle.training.checkpoint import save_checkpoint

    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    _plant(ckpt)
    save_checkpoint(tmp_path, 1, {"state": {"w": torch.zeros(1)}, "step": 1})
    assert not any((ckpt / name).exists() for name in SCRATCH)
    assert all((ckpt / name).exists() for name in DECOYS)


# ---------------------------------------------------------------------------------------------
# stats.jsonl after a resume


def test_stats_have_each_step_once_after_resume(reference_run, fault_config, cohort, rel_base, tmp_path):
    run = copy_run(reference_run, tmp_path / "run")
    # killed after logging step ITERS, before its checkpoint: the last snapshot is ITERS - 2
    _snapshot(run, ITERS).unlink()
    _index(run).write_text(json.dumps(_entries(run)[:-1]))
    with open(run / "stats.jsonl", "a") as fh:
        fh.write('not json\n{"no_step": 1}\n[1, 2]\n{"step": "9"}\n{"step": 99, "partial": tr')
    r = _resume(run, fault_config, cohort, rel_base)
    assert r.exit_code == 0, r.output
    got = (run / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in got] == list(range(1, ITERS + 1))
    want = (reference_run / "stats.jsonl").read_text().splitlines()
    assert [_losses(line) for line in got] == [_losses(line) for line in want]  # resumed bitwise exactly
    _assert_same_final_state(run, reference_run)
    assert not list(run.glob(".*.tmp"))
