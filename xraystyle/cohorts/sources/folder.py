"""A folder of images sorted into one sub-folder per domain: ``ROOT/normal/*``, ``ROOT/effusion/*``.

Each first-level sub-folder must be ``normal`` or a finding of the vocabulary; images below it
(at any depth) are positive for that finding and negative for the other folders' findings;
``normal`` images are negative for all. Images are files with an image suffix (.png, .jpg,
.dcm, .nii.gz, ...) or no suffix at all (DICOM exports often have none); hidden files are
skipped. The patient (and study) is the file name without its suffix, so equally named files in
two folders share a patient and a split, unless ``--csv`` names a CSV with
columns ``path`` (relative to ROOT) and ``patient_id``, optionally ``study_id``, ``view``,
``sex``, ``age``: then every image must have a row there, so no patient can leak across splits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, ManifestError
from ..vocabulary import FINDINGS, NORMAL
from ._common import SourceOptions, id_strings, norm_view, read_tables, refuse

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic", ".nii", ".gz", ".mha",
                            ".mhd", ".nrrd", ".tif", ".tiff", ".bmp", ""})
LATERAL_VIEWS = frozenset({"LATERAL", "LL", "RL", "L"})
WHAT = "CSV with columns path and patient_id"


def read(opts: SourceOptions) -> pd.DataFrame:
    refuse(opts)
    if opts.images is None:
        raise ConfigError("source folder needs --images ROOT (one sub-folder per domain)")
    root = Path(opts.images)
    if not root.is_dir():
        raise ManifestError(root, "not a folder")
    domains = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    unknown = [d for d in domains if d != NORMAL and d not in FINDINGS]
    if unknown:
        raise ManifestError(root, f"sub-folder {unknown[0]!r} is neither {NORMAL!r} nor a finding of the "
                                  "vocabulary (see docs/manifest.md)")
    if not domains:
        raise ManifestError(root, "has no sub-folders (expected one per domain, e.g. normal/, effusion/)")

    rows = []
    for domain in domains:
        for dirpath, dirnames, filenames in os.walk(root / domain):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if name.lower().endswith(".gz") and not name.lower().endswith(".nii.gz"):
                    continue
                rel = Path(os.path.relpath(os.path.join(dirpath, name), root)).as_posix()
                rows.append((rel, domain))
    if not rows:
        raise ManifestError(root, "no image files in the domain sub-folders")

    out = pd.DataFrame(rows, columns=["path", "domain"])
    out["patient_id"] = out["path"].map(_stem)
    out["study_id"] = out["patient_id"]
    out["view"] = ""
    if opts.csv:
        _join_csv(out, opts.csv)
    out["frontal"] = ~out["view"].isin(LATERAL_VIEWS)
    for finding in [d for d in domains if d != NORMAL]:
        out[finding] = (out["domain"] == finding).astype(np.float64)
    return out.drop(columns="domain")


def _stem(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    return name[:-7] if name.lower().endswith(".nii.gz") else os.path.splitext(name)[0]


def _join_csv(out: pd.DataFrame, paths: list[Path]) -> None:
    """Patient ids (and optional study, view, sex, age) from a CSV keyed by path."""
    src = read_tables(paths, ("path", "patient_id"), WHAT, dtype=str, keep_default_na=False)
    src["path"] = src["path"].str.strip()
    dup = src["path"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ManifestError(paths[0], f"row {i + 1}: path listed twice")
    src = src.set_index("path")
    found = out["path"].isin(src.index)
    if not found.all():
        i = int(np.flatnonzero(~found.to_numpy())[0])
        raise ManifestError(paths[0], f"{int((~found).sum())} image(s) have no row, e.g. "
                                      f"{out['path'].iloc[i]!r}: every image needs its patient_id")
    rows = src.reindex(out["path"])
    out["patient_id"] = id_strings(rows["patient_id"]).to_numpy()
    if "study_id" in rows:
        out["study_id"] = id_strings(rows["study_id"]).to_numpy()
    if "view" in rows:
        out["view"] = norm_view(rows["view"]).to_numpy()
    if "sex" in rows:
        out["sex"] = rows["sex"].str.strip().to_numpy()
    if "age" in rows:
        out["age"] = pd.to_numeric(rows["age"], errors="coerce").to_numpy()

# Folder domains are exclusive: with --findings, images of folders not named are left out
# (rather than becoming negatives, which would put cardiomegaly images into "normal").
EXCLUSIVE_DOMAINS = True
