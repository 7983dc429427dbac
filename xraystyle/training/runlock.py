"""One training process per run folder: an exclusive ``flock`` on ``RUN_DIR/.lock``.

The lock belongs to the open file, so the OS drops it when the holder exits, however it dies
(SIGKILL, OOM killer): a crashed run never leaves a stale lock, and no pid check or timeout is
needed. The file keeps the holder's pid and host only to name them to a process that is
refused; it stays in place after release (deleting a lock file races with the next locker).
Without ``fcntl`` (Windows, not a target) the lock is skipped with a warning.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from ..errors import InputError, RunFolderInUseError

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"
# Filesystems that cannot lock (some network mounts): train unlocked rather than not at all.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class RunLock:
    """``with RunLock(run_dir): ...`` or ``acquire()`` / ``release()``; refuses with
    ``RunFolderInUseError`` naming the folder and the holder's pid when another process has it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            log.warning("%s: cannot lock the run folder on this platform; make sure no other run uses it",
                        self.run_dir)
            return self
        try:  # never through a symlink, never a FIFO or device: the file is truncated below
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InputError(self.path, f"cannot open the run folder's lock file ({exc.strerror or exc})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(self.path, "the run folder's lock file is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunFolderInUseError(
                        self.run_dir, f"run folder is in use by another xraystyle process ({_holder(fd)}); "
                                      "wait for it to finish or choose another --out") from None
                if exc.errno in _NO_LOCKS:
                    log.warning("%s: the filesystem cannot lock the run folder (%s); make sure no other run "
                                "uses it", self.run_dir, exc.strerror)
                    os.close(fd)
                    return self
                raise InputError(self.path, f"cannot lock the run folder ({exc.strerror or exc})") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)  # closing also drops a lock taken above
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    """``pid N`` (``on host H`` when not this host) from the lock file; the holder may have the
    lock but not have written yet, so a few short retries."""
    for attempt in range(5):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode())
            pid, host = int(info["pid"]), str(info.get("host", ""))
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05 * (attempt + 1))
            continue
        where = f" on host {host[:64]}" if host and host != socket.gethostname() else ""
        return f"pid {pid}{where}"
    return "pid unknown"
