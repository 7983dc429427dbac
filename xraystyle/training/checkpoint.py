"""Checkpoints: one file per snapshot, written atomically, verified by checksum, loaded safely.

Each snapshot ``checkpoints/step_0001000.pt`` holds networks, EMA copies, optimiser states,
the config, the step, RNG states and the manifest hash. Writing goes to a temporary file that
is fsynced and renamed, so a crash never leaves a partial file under a real name. The
SHA-256 of every snapshot is kept in ``checkpoints/index.json`` (also replaced atomically);
loading the latest snapshot verifies it and falls back to the previous one, with a warning,
when a file is truncated or corrupted. Loading always uses ``weights_only=True``: a
checkpoint carrying pickled code is refused, never executed.

The index is data on disk like any other input: ``read_index`` is its one reader, and nothing
outside the checkpoints folder is ever read or removed through it (a crafted entry such as
``/etc/x`` or ``../../x`` would otherwise be deleted by pruning or loaded by ``synth``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import CheckpointError

log = logging.getLogger(__name__)
INDEX = "index.json"
FORMAT_VERSION = 1
SNAPSHOT = re.compile(r"step_(\d{7,})\.pt")
# Scratch names of _atomic_write in a checkpoints folder; a writer killed mid-write leaves one.
SCRATCH = re.compile(r"\.(?:step_\d{7,}\.pt|index\.json)\.tmp")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def snapshot_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def _is_step(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data, tmp=path.with_name(f".{path.name}.tmp"))
    except OSError as exc:  # disk full, quota, permissions: name the file, keep the old one
        raise CheckpointError(path, f"cannot write checkpoint ({exc.strerror or exc})") from None


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


def _inside(ckpt_dir: Path, name: str) -> bool:
    """``ckpt_dir / name`` resolves (symlinks followed) to a path inside ``ckpt_dir``."""
    try:
        return (ckpt_dir / name).resolve().is_relative_to(ckpt_dir.resolve())
    except (OSError, RuntimeError):  # symlink loop
        return False


def _valid_entry(ckpt_dir: Path, e: Any) -> dict[str, Any] | None:
    if not isinstance(e, dict):
        return None
    name, step, digest = e.get("file"), e.get("step"), e.get("sha256")
    # The name must be the one save_checkpoint gives this step: no separators, no "..", no
    # absolute path, and the index's step cannot disagree with the file it names.
    if not (_is_step(step) and name == snapshot_name(step)):
        return None
    if digest is not None and not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        return None
    if not _inside(ckpt_dir, name):  # a snapshot-named symlink to a file elsewhere
        return None
    return {"file": name, "step": step, "sha256": digest.lower() if digest else None}


def read_index(ckpt_dir: str | Path) -> list[dict[str, Any]]:
    """The valid entries of ``ckpt_dir/index.json``, by step: the one reader of the index.

    Each entry is ``{"file": "step_NNNNNNN.pt", "step": N, "sha256": 64 hex or null}`` naming a
    file inside ``ckpt_dir``; anything else is dropped with one warning naming the index.
    """
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / INDEX
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested deep
        log.warning("%s: unreadable checkpoint index ignored (%s)", path,
                    (str(exc).splitlines() or [type(exc).__name__])[0][:120])
        return []
    if not isinstance(raw, list):
        log.warning("%s: checkpoint index is not a list; ignored", path)
        return []
    entries = [v for v in (_valid_entry(ckpt_dir, e) for e in raw) if v is not None]
    if len(entries) < len(raw):
        log.warning("%s: ignoring %d invalid entr%s (each must name its own step_NNNNNNN.pt inside the "
                    "folder, with an integer step)", path, len(raw) - len(entries),
                    "y" if len(raw) - len(entries) == 1 else "ies")
    return sorted(entries, key=lambda e: e["step"])


def _snapshots_on_disk(ckpt_dir: Path) -> list[dict[str, Any]]:
    """Snapshot-named regular files inside ``ckpt_dir``, by step (no index: unverified)."""
    found = []
    for p in ckpt_dir.glob("step_*.pt"):
        m = SNAPSHOT.fullmatch(p.name)
        if m and p.name == snapshot_name(int(m[1])) and _inside(ckpt_dir, p.name) and p.is_file():
            found.append({"file": p.name, "step": int(m[1]), "sha256": None})
    return sorted(found, key=lambda e: e["step"])


def remove_scratch(ckpt_dir: str | Path) -> list[Path]:
    """Remove temp files left by writers killed mid-write (only ``_atomic_write``'s names).

    Call it only while holding the run folder's lock (training_loop does): a live writer's
    temp file has the same name."""
    ckpt_dir = Path(ckpt_dir)
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        return []
    removed = []
    for name in names:
        p = ckpt_dir / name
        if SCRATCH.fullmatch(name):
            try:
                p.unlink()  # a symlink is removed, never followed; a folder raises and stays
            except OSError:
                continue
            removed.append(p)
    if removed:
        log.info("removed %d stale scratch file(s) from %s", len(removed), ckpt_dir)
    return removed


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write snapshot ``step`` atomically, record its checksum, prune to the newest ``keep``."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    remove_scratch(ckpt_dir)
    buf = io.BytesIO()
    # The step argument is authoritative: it names the file and the index entry.
    torch.save({"format": FORMAT_VERSION, **payload, "step": step}, buf)
    data = buf.getvalue()
    path = ckpt_dir / snapshot_name(step)
    _atomic_write(path, data)
    entries = [e for e in read_index(ckpt_dir) if e["file"] != path.name]
    entries.append({"file": path.name, "step": step, "sha256": hashlib.sha256(data).hexdigest()})
    entries.sort(key=lambda e: e["step"])
    stale, entries = entries[:-keep], entries[-keep:]
    _atomic_write(ckpt_dir / INDEX, json.dumps(entries, indent=1).encode())
    for e in stale:  # validated names: plain files (or links, removed not followed) in ckpt_dir
        (ckpt_dir / e["file"]).unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load one snapshot safely (``weights_only=True``); CheckpointError on any problem."""
    path = Path(path)
    if expected_sha256 is None and SNAPSHOT.fullmatch(path.name):  # a run folder's snapshot: its index
        for e in read_index(path.parent):
            if e["file"] == path.name:
                expected_sha256 = e["sha256"]
    return _load(path, expected_sha256)


def _load(path: Path, expected_sha256: str | None) -> dict[str, Any]:
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
    if not _is_step(payload.get("step")):
        raise CheckpointError(path, "checkpoint has no valid step (a non-negative integer)")
    payload["file_sha256"] = digest  # of the bytes read: callers need not read the file again
    return payload


def load_latest(run_dir: str | Path) -> tuple[dict[str, Any], Path] | None:
    """Newest snapshot of a run that verifies; older ones are tried, with a warning, on failure."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    # No usable index (a copied folder?): fall back to file names, unverified.
    entries = read_index(ckpt_dir) or _snapshots_on_disk(ckpt_dir)
    for e in reversed(entries):
        path = ckpt_dir / e["file"]
        try:
            return _load(path, e["sha256"]), path
        except CheckpointError as exc:
            log.warning("skipping checkpoint: %s; trying the previous one", exc)
    return None
