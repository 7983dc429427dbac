"""Inputs of synthesis: the images a user names (files, folders, manifests), loaded and
preprocessed exactly as the model saw images in training.

Sources are named by a hash of their pixels, never by their file name or DICOM tags (either can
hold a patient identifier); the path a user gave is kept on the object only for the caller's
opt-in index (``--keep-source-names``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..cohorts.vocabulary import NORMAL
from ..errors import InputError, XrayStyleError

# Files never tried as images when a folder is given: sidecars and notes that sit beside scans.
_NOT_IMAGES = frozenset({".csv", ".json", ".txt", ".md", ".yaml", ".yml", ".html", ".htm", ".pdf", ".xml",
                         ".log", ".py", ".zip", ".gz", ".tar"})
_MANIFEST_SUFFIXES = (".csv",)


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass
class SourceSpec:
    """One input image as the user named it. ``label`` (the path as given) is shown only when
    the user opts in; everything else refers to the input by ``position`` (1-based)."""

    path: Path
    label: str
    position: int
    domain: str | None = None  # from a manifest row, when the model's domains are known
    # A manifest row's labels for the model's findings (1 / 0 / NaN = unknown), for finding sets.
    findings: tuple[float, ...] | None = None


@dataclass
class SourceImage:
    """A radiograph ready for the model, with what is needed to map outputs back to its file."""

    image: torch.Tensor  # (1, S, S) float32 in [-1, 1]
    valid_mask: torch.Tensor  # (1, S, S) bool
    window: dict[str, float]  # robust window limits in reader units ("low", "high")
    geometry: dict[str, Any]  # resize-pad geometry (undo with transforms.undo_resize_pad)
    meta: dict[str, Any]  # XrayMeta.to_dict(): identifier-free by construction
    sha256: str  # of the decoded pixels (see pixel_sha256)
    spec: SourceSpec | None = None

    @property
    def short_hash(self) -> str:
        return self.sha256[:8]

    @property
    def domain(self) -> str | None:
        return self.spec.domain if self.spec is not None else None


@dataclass
class ReferenceImage:
    """A real image of the target domain whose style guides the translation."""

    image: torch.Tensor  # (1, S, S) in [-1, 1]
    domain: str
    sha256: str

    @property
    def short_hash(self) -> str:
        return self.sha256[:8]


def pixel_sha256(array: np.ndarray) -> str:
    """sha256 of decoded pixel values (float32, little-endian) and the shape.

    The pixels rather than the file: a DICOM file's bytes change with every re-anonymisation
    or re-encoding while the image stays the same, and the name must not depend on header tags.
    """
    a = np.ascontiguousarray(array, dtype="<f4")
    h = hashlib.sha256(f"{a.shape[0]}x{a.shape[1]}:".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def list_sources(src: str | os.PathLike, domains: Sequence[str] | None = None) -> list[SourceSpec]:
    """The images named by ``src``: a file, a folder (recursively, sorted, skipping hidden files
    and obvious non-images such as .csv/.json/.txt) or a manifest CSV (its rows' images, with
    each row's domain among ``domains`` when given; -1 rows get None)."""
    given = str(src)
    path = Path(src)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                       and p.suffix.lower() not in _NOT_IMAGES)
        if not files:
            raise InputError(path, "folder holds no image files")
        return [SourceSpec(p, os.path.join(given, str(p.relative_to(path))), i + 1) for i, p in enumerate(files)]
    if path.suffix.lower() in _MANIFEST_SUFFIXES and path.is_file():
        return manifest_sources(path, domains)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    return [SourceSpec(path, given, 1)]


def manifest_sources(path: str | os.PathLike, domains: Sequence[str] | None = None,
                     split: str | None = None, limit: int | None = None) -> list[SourceSpec]:
    """The rows of a manifest as sources (``split`` filters, ``limit`` keeps the first rows)."""
    from ..cohorts.manifest import load_manifest

    manifest = load_manifest(path).subset(split)
    if limit is not None:
        manifest.df = manifest.df.iloc[:limit]
    labels = _manifest_domains(manifest, domains)
    named = [d for d in (domains or []) if d != NORMAL]
    values = np.full((len(manifest.df), len(named)), np.nan)  # a finding without a column stays unknown
    for j, d in enumerate(named):
        if d in manifest.df.columns:
            values[:, j] = manifest.finding_matrix([d])[:, 0]
    out = []
    for i, (rel, label) in enumerate(zip(manifest.df["path"], labels)):
        domain = None if label < 0 or domains is None else domains[label]
        out.append(SourceSpec(manifest.resolve(rel), rel, i + 1, domain,
                              tuple(float(v) for v in values[i]) if named else None))
    if not out:
        raise InputError(path, "manifest has no rows" + (f" in split {split!r}" if split else ""))
    return out


def _manifest_domains(manifest, domains: Sequence[str] | None) -> np.ndarray:
    if domains is None:
        return np.full(len(manifest.df), -1)
    named = [d for d in domains if d != NORMAL]
    if not all(d in manifest.df.columns for d in named):  # no such labels: domains unknown
        return np.full(len(manifest.df), -1)
    return manifest.domain_labels(list(domains))


def load_source(spec: SourceSpec | str | os.PathLike, preprocess_cfg) -> SourceImage:
    """Read and preprocess one image exactly as the model saw images in training (eval pipeline).

    Raises the reader's ``InputError`` (whose message names the path: callers that must not
    show paths report ``exc.reason``).
    """
    from ..io import read_xray
    from ..transforms import preprocess_array

    if not isinstance(spec, SourceSpec):
        spec = SourceSpec(Path(spec), str(spec), 1)
    array, meta = read_xray(spec.path)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise InputError(spec.path, f"expected a 2-D image, got shape {array.shape}")
    sample = preprocess_array(array, meta.valid_mask, preprocess_cfg)
    return SourceImage(
        image=torch.as_tensor(sample["image"]).float(),
        valid_mask=torch.as_tensor(sample["valid_mask"]).bool(),
        window=dict(sample["window"]),
        geometry=dict(sample["geometry"]),
        meta=meta.to_dict(),
        sha256=pixel_sha256(array),
        spec=spec,
    )


def load_reference(path: str | os.PathLike, domain: str, model) -> ReferenceImage:
    """A reference image of ``domain`` (checked against the model). Errors say "reference
    image" rather than the path, which may carry an identifier."""
    domain = model.labels.text(model.labels.parse(domain))  # one spelling per set (b+a -> a+b)
    try:
        src = load_source(path, model.preprocess)
    except InputError as exc:
        raise XrayStyleError(f"reference image: {exc.reason}") from None
    return ReferenceImage(src.image, domain, src.sha256)


def reference_domain_from_manifest(reference: str | os.PathLike, manifest_path: str | os.PathLike,
                                   domains: Sequence[str]) -> str:
    """The domain of ``reference`` from the manifest row listing it (same file on disk)."""
    ref = Path(reference)
    if not ref.exists():
        raise XrayStyleError("reference image: no such file")
    for spec in manifest_sources(manifest_path, domains):
        if spec.path.exists() and os.path.samefile(spec.path, ref):
            if spec.domain is None:
                raise XrayStyleError(f"reference image: manifest row {spec.position} has no single domain "
                                     f"among {', '.join(domains)}")
            return spec.domain
    raise XrayStyleError("reference image: not listed in the --reference-manifest")


# ---------------------------------------------------------------------------------------------
# synthesis


@dataclass
class LoadLog:
    """What :func:`load_sources` skipped, each line naming the input by position only."""

    failures: list[str] = field(default_factory=list)  # unreadable: "input 3 of 5: reason"
    duplicates: list[str] = field(default_factory=list)  # "input 4 of 5: same pixels as input 1; skipped"
    loaded: int = 0


def load_sources(specs: Sequence[SourceSpec], preprocess_cfg, log: LoadLog,
                 where: Callable[[SourceSpec], str], *, progress: bool = False,
                 desc: str = "load") -> Iterator[SourceImage]:
    """Load ``specs`` one at a time (only the image being used is in memory), skipping
    unreadable inputs and exact pixel duplicates of an earlier input; both are recorded in
    ``log`` under ``where(spec)`` (a position, never a path unless the caller opts in)."""
    seen: dict[str, str] = {}
    bar = tqdm(total=len(specs), desc=desc, unit="image", file=sys.stderr, disable=not progress)
    try:
        for spec in specs:
            try:
                src = load_source(spec, preprocess_cfg)
            except InputError as exc:
                log.failures.append(f"{where(spec)}: {exc.reason}")
            else:
                if src.sha256 in seen:
                    log.duplicates.append(f"{where(spec)}: same pixels as {seen[src.sha256]}; skipped")
                else:
                    seen[src.sha256] = where(spec)
                    log.loaded += 1
                    yield src
            bar.update(1)
    finally:
        bar.close()
