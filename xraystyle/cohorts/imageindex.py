"""Find a source's images under a researcher's image folder, whatever its exact layout.

Public cohorts are unpacked in many ways (NIH in images_001/images/ ... images_012/images/,
CheXpert with or without its top folder, VinDr or RSNA converted to PNG), so a source path
is matched against one walk of the folder: exact relative path, then the path without its
leading folders, then the unique file name, then the unique name with another image suffix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".nii.gz", ".dicom", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".mha")


def image_stem(name: str) -> str | None:
    """File name without an image suffix (case-insensitive); None for other files."""
    low = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


class ImageIndex:
    """All files below ``root`` (symbolic links to folders are not followed: their targets
    would lie outside the root, which manifests refuse)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.files: set[str] = set()
        self._by_name: dict[str, list[str]] = {}
        self._by_stem: dict[str, list[str]] = {}
        self.linked_folders = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            self.linked_folders += sum(os.path.islink(os.path.join(dirpath, d)) for d in dirnames)
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith("."):
                    continue
                rel = name if rel_dir == "." else Path(rel_dir, name).as_posix()
                self.files.add(rel)
                self._by_name.setdefault(name, []).append(rel)
                stem = image_stem(name)
                if stem is not None:
                    self._by_stem.setdefault(stem, []).append(rel)

    def find(self, native: str) -> str | None:
        """Path below the root of the image a source calls ``native``, or None."""
        if native in self.files:
            return native
        parts = native.split("/")
        for k in range(1, len(parts) - 1):
            tail = "/".join(parts[k:])
            if tail in self.files:
                return tail
        hits = self._by_name.get(parts[-1], [])
        if len(hits) == 1:
            return hits[0]
        stem = image_stem(parts[-1])
        hits = self._by_stem.get(stem, []) if stem is not None and not hits else []
        return hits[0] if len(hits) == 1 else None
