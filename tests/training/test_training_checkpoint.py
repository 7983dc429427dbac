import json
import os
import subprocess
import sys

import pytest
import torch

from xraystyle.errors import CheckpointError
from xraystyle.training.checkpoint import load_checkpoint, load_latest, rng_state, save_checkpoint, set_rng_state


def payload(step):
    return {"state": {"w": torch.full((3,), float(step))}, "step": step, "config": {"a": 1}}


def test_save_load_roundtrip_and_pruning(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, payload(step), keep=2)
    files = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert files == ["step_0000003.pt", "step_0000004.pt"]
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert [e["step"] for e in index] == [3, 4]
    loaded, path = load_latest(tmp_path)
    assert loaded["step"] == 4 and path.name == "step_0000004.pt"
    assert torch.equal(loaded["state"]["w"], torch.full((3,), 4.0))
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, damage, caplog):
    save_checkpoint(tmp_path, 1, payload(1))
    latest = save_checkpoint(tmp_path, 2, payload(2))
    data = bytearray(latest.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x40
    latest.write_bytes(bytes(data))
    loaded, path = load_latest(tmp_path)
    assert loaded["step"] == 1
    assert "checksum mismatch" in caplog.text
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(latest)


def test_unreadable_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an xraystyle checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.pt")
    assert load_latest(tmp_path / "nothing") is None


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, force_unsafe_env):
    marker = tmp_path / "pwned"
    evil = _Payload()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "state": evil}, path)
    code = ("import sys; from xraystyle.training.checkpoint import load_checkpoint\n"
            "from xraystyle.errors import CheckpointError\n"
            f"try:\n    load_checkpoint({str(path)!r})\nexcept CheckpointError as e:\n    print('REFUSED', e)\n")
    env = dict(os.environ)
    if force_unsafe_env:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "REFUSED" in out.stdout, out.stderr
    assert not marker.exists()


def test_rng_state_roundtrip_through_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    save_checkpoint(tmp_path, 1, {"rng": rng_state()})
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded, _ = load_latest(tmp_path)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_write_failure_leaves_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, payload(1))

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match=r"step_0000002.pt: cannot write checkpoint \(No space left"):
        save_checkpoint(tmp_path, 2, payload(2))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["index.json", "step_0000001.pt"]
    assert load_latest(tmp_path)[0]["step"] == 1


def test_resume_from_a_malformed_rng_state_is_one_checkpoint_error(tmp_path):
    """A checkpoint whose saved RNG state has the wrong types (a list where a tensor belongs):
    a CheckpointError naming the file, not an AttributeError traceback from set_rng_state."""
    import random

    from xraystyle.config import to_dict
    from xraystyle.paths import resolve_config
    from xraystyle.training.accel import make_accel
    from xraystyle.training.config import load_config
    from xraystyle.training.state import build_state
    from xraystyle.training.trainer import _restore

    cfg = load_config(resolve_config("tiny"))
    state = build_state(cfg, make_accel("reference", torch.device("cpu")), seed=0)
    rng = rng_state()
    rng["numpy"][1] = [1, 2, 3]
    save_checkpoint(tmp_path, 0, {"state": state.state_dict(), "config": to_dict(cfg), "step": 0, "rng": rng,
                                  "manifest_hash": "h"})
    saved_py = random.getstate()
    try:
        with pytest.raises(CheckpointError, match=r"step_0000000\.pt: checkpoint holds no usable training state"):
            _restore(state, cfg, tmp_path, "h")
    finally:
        random.setstate(saved_py)
