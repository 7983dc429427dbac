"""Signals and crashes of real processes: ``python -m xraystyle train`` killed -9 or sent
SIGTERM mid-run, and checkpoint writers killed -9 half-way through a write.

The processes are started by procs.py at the beginning of the session (so their start-up
overlaps the other tests); this module collects and checks what they left behind.
"""

from __future__ import annotations

import signal

import pytest
import torch

from xraystyle.training.checkpoint import load_latest, save_checkpoint

from .conftest import ITERS
from .test_rel_faults import _assert_same_final_state, _indexed_steps, _losses, _resume, _snapshot

# ---------------------------------------------------------------------------------------------
# kill -9 and SIGTERM of a real `python -m xraystyle train` process (started in procs.py: a
# watcher thread signals each process as soon as its first checkpoint is indexed)


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_is_bitwise_identical(background, reference_run, fault_config,
                                                               cohort, rel_base):
    code, output, sent = background.result("SIGKILL")
    run = rel_base / "signal-SIGKILL"
    assert sent == signal.SIGKILL and code == -signal.SIGKILL, output
    latest = load_latest(run)
    assert latest is not None and 2 <= latest[0]["step"] < ITERS, "the kill must land mid-run"
    r = _resume(run, fault_config, cohort, rel_base)
    assert r.exit_code == 0, r.output
    _assert_same_final_state(run, reference_run)
    last = (run / "stats.jsonl").read_text().splitlines()[-1]
    assert _losses(last) == _losses((reference_run / "stats.jsonl").read_text().splitlines()[-1])


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_143_and_resumes(background, reference_run, fault_config, cohort,
                                                          rel_base):
    code, output, sent = background.result("SIGTERM")
    run = rel_base / "signal-SIGTERM"
    assert sent == signal.SIGTERM and code == 128 + signal.SIGTERM, output
    assert "Traceback" not in output
    assert "stopped by signal at step" in output and "--resume" in output
    stopped_at = int(output.split("stopped by signal at step ")[1].split(";")[0])
    assert stopped_at < ITERS
    # The stop checkpoint is the snapshot of the step where the signal was handled, verified.
    payload, path = load_latest(run)
    assert payload["step"] == stopped_at and path == _snapshot(run, stopped_at)
    r = _resume(run, fault_config, cohort, rel_base)
    assert r.exit_code == 0, r.output
    _assert_same_final_state(run, reference_run)


# ---------------------------------------------------------------------------------------------
# a crash in the middle of writing a checkpoint: procs.py runs save_checkpoint for two run
# folders in one process, stalling half-way through a write (inside the snapshot file; after the
# snapshot's rename, inside the new index), and SIGKILLs it there


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["snapshot", "index"])
def test_kill_during_checkpoint_write_keeps_previous_and_never_loads_a_partial_file(background, rel_base, phase):
    code, output, sent = background.result("crash")
    assert sent == signal.SIGKILL and code == -signal.SIGKILL, output
    run = rel_base / f"crash-{phase}"
    ckpt = run / "checkpoints"
    partial = ckpt / (".step_0000002.pt.tmp" if phase == "snapshot" else ".index.json.tmp")
    assert partial.exists(), "the process must have died mid-write"
    assert _snapshot(run, 2).exists() == (phase == "index")  # renamed into place only after a full write
    assert _indexed_steps(run) == [1]  # the old index survives whole
    payload, path = load_latest(run)
    assert path.name == "step_0000001.pt" and torch.equal(payload["state"]["w"], torch.full((128, 128), 1.0))
    # The next save overwrites the leftovers and completes normally.
    save_checkpoint(run, 2, {"state": {"w": torch.zeros(1)}, "step": 2})
    assert load_latest(run)[0]["step"] == 2 and _indexed_steps(run) == [1, 2]
    assert not list(ckpt.glob(".*.tmp"))
