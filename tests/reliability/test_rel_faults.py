"""Faults a multi-day run meets, in-process: a full disk mid-checkpoint, corrupted snapshots, NaN
losses, a changed config or cohort on resume, unreadable images, and the determinism every
recovery relies on. Signals and crashes of real processes: test_rel_signals.py."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import xraystyle.atomic as atomic  # checkpoints are written through atomic.atomic_write
from xraystyle.training.checkpoint import load_checkpoint, load_latest

from .conftest import ITERS, cli, copy_run, one_line_error, tensors_equal, train_args, write_config


def _snapshot(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:07d}.pt"


def _indexed_steps(run: Path) -> list[int]:
    return [e["step"] for e in json.loads((run / "checkpoints" / "index.json").read_text())]


def _assert_same_final_state(run: Path, reference: Path) -> None:
    got = load_checkpoint(_snapshot(run, ITERS))
    want = load_checkpoint(_snapshot(reference, ITERS))
    assert got["step"] == want["step"] == ITERS
    diff = tensors_equal(got["state"], want["state"])
    assert not diff, f"resumed run differs from the uninterrupted one at {diff[:5]}"


def _losses(line: str) -> dict:
    record = json.loads(line)
    record.pop("it_per_s")
    return record


def _resume(run: Path, config: Path, cohort, rel_base: Path, iters: int = ITERS):
    return cli(*train_args(config, cohort.path, run, iters, "--resume"),
               env={"XRAYSTYLE_CACHE": str(rel_base / "cache-reference")})


# ---------------------------------------------------------------------------------------------
# disk full while writing a checkpoint (ENOSPC from write, after part of the data went out)


@pytest.fixture(scope="module")
def disk_full_run(rel_base, cohort, fault_config):
    run = rel_base / "disk-full"
    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def write(self, data):
            self.fh.write(data[: len(data) // 3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return Full(fh) if Path(path).name == ".step_0000004.pt.tmp" else fh

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic, "open", full_open, raising=False)
        result = cli(*train_args(fault_config, cohort.path, run),
                     env={"XRAYSTYLE_CACHE": str(rel_base / "cache-reference")})
    return run, result


def test_disk_full_during_checkpoint_write_is_one_line_and_keeps_previous(disk_full_run, reference_run,
                                                                        fault_config, cohort, rel_base):
    run, result = disk_full_run
    one_line_error(result, "No space left on device")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["index.json", "step_0000002.pt"]
    assert load_latest(run)[0]["step"] == 2  # checksum-verified
    r = _resume(run, fault_config, cohort, rel_base)  # space freed: the run continues exactly
    assert r.exit_code == 0, r.output
    _assert_same_final_state(run, reference_run)


def test_disk_full_error_names_the_checkpoint(disk_full_run):
    _, result = disk_full_run
    one_line_error(result, "step_0000004.pt")


# ---------------------------------------------------------------------------------------------
# damaged snapshots on resume


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "truncate-without-index"])
def test_damaged_latest_checkpoint_falls_back_with_a_warning(damage, reference_run, fault_config, cohort,
                                                             rel_base, tmp_path, caplog):
    run = copy_run(reference_run, tmp_path / "run")
    latest = _snapshot(run, ITERS)
    data = bytearray(latest.read_bytes())
    if damage == "bitflip":
        data[len(data) // 2] ^= 0x10
    else:
        data = data[: len(data) * 2 // 3]
    latest.write_bytes(bytes(data))
    if damage == "truncate-without-index":  # a folder copied without its index: no checksums
        (run / "checkpoints" / "index.json").unlink()
    from xraystyle.trained import load_trained_model

    with caplog.at_level("WARNING"):
        model = load_trained_model(run)
    assert model.step == ITERS - 2
    assert "skipping checkpoint" in caplog.text and latest.name in caplog.text
    if damage != "truncate-without-index":
        assert "checksum mismatch" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        r = _resume(run, fault_config, cohort, rel_base)
    assert r.exit_code == 0, r.output
    assert "skipping checkpoint" in caplog.text
    _assert_same_final_state(run, reference_run)  # steps 7-8 redone from snapshot 6


def test_every_snapshot_damaged_is_a_one_line_error(reference_run, fault_config, cohort, rel_base, tmp_path):
    run = copy_run(reference_run, tmp_path / "run")
    for p in (run / "checkpoints").glob("step_*.pt"):
        p.write_bytes(p.read_bytes()[:100])
    one_line_error(_resume(run, fault_config, cohort, rel_base), "no readable checkpoint")


# ---------------------------------------------------------------------------------------------
# NaN loss


def test_nan_loss_stops_with_one_line_and_never_saves_nan_weights(monkeypatch, cohort, fault_config, rel_base,
                                                                   tmp_path):
    from xraystyle.training import trainer

    real_step = trainer.train_step

    def poisoned(state, *args, **kwargs):
        out = real_step(state, *args, **kwargs)
        if state.step == 3:  # weights go NaN after step 3: step 4's losses are NaN
            with torch.no_grad():
                next(state.nets["G"].parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(trainer, "train_step", poisoned)
    run = tmp_path / "run"
    r = cli(*train_args(fault_config, cohort.path, run), env={"XRAYSTYLE_CACHE": str(rel_base / "cache-reference")})
    line = one_line_error(r, "non-finite loss", "before step 4", "last good checkpoint", "step_0000002.pt")
    assert "G/" in line or "D/" in line  # the loss terms are named
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt")) == ["step_0000002.pt"]
    for net in load_latest(run)[0]["state"]["nets"].values():
        assert all(torch.isfinite(v).all() for v in net.values() if v.is_floating_point())


# ---------------------------------------------------------------------------------------------
# resuming with a different config or cohort


def test_resume_with_incompatible_config_is_refused_naming_the_keys(reference_run, cohort, rel_base, tmp_path):
    run = copy_run(reference_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    changed = write_config(tmp_path / "changed.yaml", iters=ITERS, ckpt_every=2, keep_ckpts=10, sample_every=4,
                           log_every=1, batch_size=2, data={"max_bad_fraction": 0.5})
    import yaml

    cfg = yaml.safe_load(changed.read_text())
    cfg["model"]["style_dim"] = 8
    cfg["loss"] = {"lambda_cyc": 2.0}
    changed.write_text(yaml.safe_dump(cfg))
    line = one_line_error(_resume(run, changed, cohort, rel_base), "cannot resume with a different config")
    for key in ("model.style_dim", "loss.lambda_cyc", "train.batch_size"):
        assert key in line
    assert "max_bad_fraction" not in line  # loop settings may change on resume
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_resume_with_a_changed_manifest_is_refused(reference_run, fault_config, cohort, rel_base, tmp_path):
    import pandas as pd

    from xraystyle.cohorts.manifest import write_manifest

    run = copy_run(reference_run, tmp_path / "run")
    df = cohort.df.copy()
    df.loc[0, "effusion"] = 1.0 - df.loc[0, "effusion"]
    edited = write_manifest(pd.DataFrame(df), tmp_path / "edited.csv", root=cohort.root)
    r = cli(*train_args(fault_config, edited.path, run, ITERS, "--resume"),
            env={"XRAYSTYLE_CACHE": str(tmp_path / "cache")})
    one_line_error(r, "manifest changed")


# ---------------------------------------------------------------------------------------------
# unreadable images inside the data pipeline


@pytest.fixture
def damaged_cohort(tmp_path):
    """The 12-image cohort with one training image truncated (1 of 8 training images bad)."""
    from tests.training.conftest import write_png_cohort

    m = write_png_cohort(tmp_path / "cohort", n=12)
    bad = m.resolve(m.df["path"][1])
    bad.write_bytes(bad.read_bytes()[:60])
    return m


@pytest.mark.parametrize("limit,ok", [(0.2, True), (0.01, False)])
def test_corrupt_image_in_training_is_skipped_counted_and_limited(damaged_cohort, tmp_path, caplog, limit, ok):
    cfg = write_config(tmp_path / "cfg.yaml", iters=2, data={"max_bad_fraction": limit})
    with caplog.at_level("WARNING"):
        r = cli(*train_args(cfg, damaged_cohort.path, tmp_path / "run", 2))
    if ok:
        assert r.exit_code == 0, r.output
        assert "1 of 8 images could not be read and are skipped" in caplog.text
        assert "im001.png" in caplog.text and "truncated or corrupt PNG" in caplog.text
        assert load_latest(tmp_path / "run")[0]["step"] == 2
    else:
        one_line_error(r, "1 of 8 images could not be read", "max_bad_fraction=0.01", "cohort check")
        assert not (tmp_path / "run" / "checkpoints").exists()


def test_stopped_cache_build_leaves_no_scratch_file(damaged_cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))
    cfg = write_config(tmp_path / "cfg.yaml", iters=2, data={"max_bad_fraction": 0.01})
    r = cli(*train_args(cfg, damaged_cohort.path, tmp_path / "run", 2))
    assert r.exit_code == 1, r.output
    # A real cohort's scratch file is N x S x S float16: 13 GB for 100k images at 256 px, per attempt.
    assert not [p.name for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name]


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_seed_gives_identical_first_steps_and_another_seed_does_not(reference_run, fault_config, cohort,
                                                                          rel_base, tmp_path):
    env = {"XRAYSTYLE_CACHE": str(rel_base / "cache-reference")}
    assert cli(*train_args(fault_config, cohort.path, tmp_path / "a", 2), env=env).exit_code == 0
    assert cli(*train_args(fault_config, cohort.path, tmp_path / "b", 2, "--seed", 1), env=env).exit_code == 0
    ref = [_losses(x) for x in (reference_run / "stats.jsonl").read_text().splitlines()[:2]]
    same = [_losses(x) for x in (tmp_path / "a" / "stats.jsonl").read_text().splitlines()]
    other = [_losses(x) for x in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert same == ref and len(same) == 2
    assert other[0] != ref[0]
