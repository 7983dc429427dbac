"""Checkpoints: one file per snapshot, written atomically, verified by checksum, loaded safely.

Each snapshot ``checkpoints/step_0001000.pt`` holds networks, EMA copies, optimiser states,
the config, the step, RNG states and the manifest hash. Writing goes to a temporary file that
is fsynced and renamed, so a crash never leaves a partial file under a real name. The
SHA-256 of every snapshot is kept in ``checkpoints/index.json`` (also replaced atomically);
loading the latest snapshot verifies it and falls back to the previous one, with a warning,
when a file is truncated or corrupted. Loading always uses ``weights_only=True``: a
checkpoint carrying pickled code is refused, never executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)
INDEX = "index.json"
FORMAT_VERSION = 1


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, quota, permissions: name the file, keep the old one
        tmp.unlink(missing_ok=True)
        raise CheckpointError(path, f"cannot write checkpoint ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) global RNG states, in weights_only-loadable types."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_index(ckpt_dir: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads((ckpt_dir / INDEX).read_text())
        return entries if isinstance(entries, list) else []
    except (OSError, ValueError):
        return []


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write snapshot ``step`` atomically, record its checksum, prune to the newest ``keep``."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buf)
    data = buf.getvalue()
    path = ckpt_dir / f"step_{step:07d}.pt"
    _atomic_write(path, data)
    entries = [e for e in _read_index(ckpt_dir) if e.get("file") != path.name]
    entries.append({"file": path.name, "step": step, "sha256": hashlib.sha256(data).hexdigest()})
    entries.sort(key=lambda e: e["step"])
    stale, entries = entries[:-keep], entries[-keep:]
    _atomic_write(ckpt_dir / INDEX, json.dumps(entries, indent=1).encode())
    for e in stale:
        (ckpt_dir / e["file"]).unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load one snapshot safely (``weights_only=True``); CheckpointError on any problem."""
    path = Path(path)
    if expected_sha256 is None:  # a snapshot inside a run folder is checked against its index
        for e in _read_index(path.parent):
            if e.get("file") == path.name:
                expected_sha256 = e.get("sha256")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read checkpoint ({exc.strerror or exc})") from None
    if not data:
        raise CheckpointError(path, "checkpoint is empty")
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise CheckpointError(path, "checkpoint checksum mismatch (truncated or corrupted file)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(exc)
        if "Unsupported operand" in text:  # bytes that are not a pickle at all
            reason = "not a readable checkpoint (not a torch file, or corrupted)"
        elif "Weights only load failed" in text:  # a pickle naming callables/classes: never run
            reason = "refused: checkpoint contains pickled objects that are not plain weights"
        else:
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            reason = f"not a readable checkpoint ({first[:120]})"
        raise CheckpointError(path, reason) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(path, "not an xraystyle checkpoint (missing or unknown format tag)")
    payload["file_sha256"] = digest  # of the bytes read: callers need not read the file again
    return payload


def load_latest(run_dir: str | Path) -> tuple[dict[str, Any], Path] | None:
    """Newest snapshot of a run that verifies; older ones are tried, with a warning, on failure."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    entries = _read_index(ckpt_dir)
    if not entries:  # no index (copied folder?): fall back to file names, unverified
        entries = [{"file": p.name, "sha256": None} for p in sorted(ckpt_dir.glob("step_*.pt"))]
    for e in reversed(entries):
        path = ckpt_dir / e["file"]
        try:
            return load_checkpoint(path, e.get("sha256")), path
        except CheckpointError as exc:
            log.warning("skipping checkpoint: %s; trying the previous one", exc)
    return None
