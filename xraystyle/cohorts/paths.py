"""Path safety for manifests: every image path must stay inside the manifest's image root.

Two layers: a lexical check of the text in the CSV (absolute, drive letters, ``..``, URLs, NUL
bytes, ...) and a file-system check that no symbolic link on the way leads out of the root.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

_DRIVE = re.compile(r"^[A-Za-z]:")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_CONTROL = re.compile(r"[\x01-\x1f\x7f]")
# Superset of everything lexical_problem refuses: a cheap vectorised pre-filter for big tables.
SUSPICIOUS = r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:|[/~])|[\x00-\x1f\x7f\\]|(?:^|/)\.\.(?:/|$)"


def lexical_problem(rel: str) -> str | None:
    """Why ``rel`` is not a safe relative path inside a root, or None when it is."""
    if rel == "":
        return "empty path"
    if "\x00" in rel:
        return "path contains a NUL byte"
    if _CONTROL.search(rel):
        return "path contains control characters"
    if _DRIVE.match(rel):
        return "path has a Windows drive letter (absolute): paths must be relative to the image root"
    if _SCHEME.match(rel):
        return "path looks like a URL (scheme:): paths must be relative to the image root"
    if rel.startswith(("/", "\\")):
        return "path is absolute: paths must be relative to the image root"
    parts = re.split(r"[\\/]", rel)
    if ".." in parts:
        return "path contains '..' and could escape the image root"
    if parts[0].startswith("~"):
        return "path starts with '~' (a home folder): paths must be relative to the image root"
    if "\\" in rel:
        return "path uses '\\' separators: write '/'"
    return None


def is_within(real: str, root_real: str) -> bool:
    """True when the resolved path ``real`` lies inside the resolved ``root_real``."""
    try:
        return os.path.commonpath([real, root_real]) == root_real
    except ValueError:  # different drives on Windows
        return False


class LinkChecker:
    """Finds symbolic links that lead out of a root, one ``lstat`` per path component.

    Results for folders are cached, so a manifest with 400k images in 60k folders costs about
    one system call per image; components that do not exist end the walk (nothing to follow).
    """

    def __init__(self, root: Path):
        self.root = str(root)
        self.root_real = os.path.realpath(root)
        self._dirs: dict[str, str] = {}  # folder -> "ok" | "missing" | "out"
        # lstat of the last component of the latest escapes() call (None: missing), so callers
        # can tell files apart (st_dev, st_ino) without a second system call per path.
        self.last_stat: os.stat_result | None = None

    def escapes(self, rel: str) -> bool:
        """True when following ``rel`` from the root passes a link that points outside it."""
        self.last_stat = None
        parts = rel.split("/")
        prefix = ""
        for i, part in enumerate(parts):
            if part in ("", "."):
                continue
            prefix = f"{prefix}/{part}" if prefix else part
            last = i == len(parts) - 1
            state = None if last else self._dirs.get(prefix)
            if state is None:
                state = self._state(prefix, keep=last)
                if not last:
                    self._dirs[prefix] = state
            if state == "out":
                return True
            if state == "missing":
                return False  # nothing further to follow
        return False

    def _state(self, prefix: str, keep: bool = False) -> str:
        full = os.path.join(self.root, prefix)
        try:
            st = os.lstat(full)
        except OSError:
            return "missing"
        if keep:
            self.last_stat = st
        mode = st.st_mode
        if stat.S_ISLNK(mode) and not is_within(os.path.realpath(full), self.root_real):
            return "out"
        return "ok"
