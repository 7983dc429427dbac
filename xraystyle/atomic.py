"""Atomic file replacement: a reader sees the old file or the new one, never part of one."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, tmp: Path | None = None, durable: bool = True) -> None:
    """Write ``data`` to the scratch file ``tmp`` (default ``.<name>.<pid>.tmp`` beside ``path``)
    and rename it over ``path``. On any failure the scratch file is removed and the exception
    propagates (callers turn an OSError into their own one-line error). ``durable``: fsync the
    file and then the folder, so the rename survives a power cut (checkpoints, logs a resume
    trusts)."""
    path = Path(path)
    tmp = tmp if tmp is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        try:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # some file systems cannot fsync a folder; the data itself is synced
            pass
