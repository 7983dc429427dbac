"""Latent- and reference-guided translation with (EMA) networks, and batch synthesis over files.

Images are [-1, 1] tensors [B, C, H, W]; ``y_trg`` is whatever the conditioning takes
(domain indices for single-domain models).

:func:`synthesize` is the library behind ``xraystyle synth``, the reports and evaluation: it
takes loaded :class:`SourceImage` objects and yields one :class:`SynthResult` per output. Sources
are named by a hash of their pixels, never by their file name or DICOM tags (either can hold a
patient identifier); the path a user gave is kept on the object only for the caller's opt-in
index (``--keep-source-names``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InputError, XrayStyleError
from .models.style import style_code

# Files never tried as images when a folder is given: sidecars and notes that sit beside scans.
_NOT_IMAGES = frozenset({".csv", ".json", ".txt", ".md", ".yaml", ".yml", ".html", ".htm", ".pdf", ".xml",
                         ".log", ".py", ".zip", ".gz", ".tar"})
_MANIFEST_SUFFIXES = (".csv",)


@torch.no_grad()
def translate_latent(nets: Mapping[str, nn.Module], x_src: torch.Tensor, y_trg: torch.Tensor,
                     z_trg: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """G(x_src, F(z_trg, y_trg)); rows in ``fixed`` use the deterministic style (models/style.py)."""
    return nets["G"](x_src, style_code(nets, y_trg, z=z_trg, fixed=fixed)).clamp(-1, 1)


@torch.no_grad()
def translate_reference(nets: Mapping[str, nn.Module], x_src: torch.Tensor, x_ref: torch.Tensor,
                        y_trg: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """G(x_src, E(x_ref, y_trg)); rows in ``fixed`` use the deterministic style (models/style.py)."""
    return nets["G"](x_src, style_code(nets, y_trg, x_ref=x_ref, fixed=fixed)).clamp(-1, 1)


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
    from .cohorts.manifest import load_manifest

    manifest = load_manifest(path).subset(split)
    if limit is not None:
        manifest.df = manifest.df.iloc[:limit]
    labels = _manifest_domains(manifest, domains)
    named = [d for d in (domains or []) if d != "normal"]
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
    named = [d for d in domains if d != "normal"]
    if not all(d in manifest.df.columns for d in named):  # no such labels: domains unknown
        return np.full(len(manifest.df), -1)
    return manifest.domain_labels(list(domains))


def load_source(spec: SourceSpec | str | os.PathLike, preprocess_cfg) -> SourceImage:
    """Read and preprocess one image exactly as the model saw images in training (eval pipeline).

    Raises the reader's ``InputError`` (whose message names the path: callers that must not
    show paths report ``exc.reason``).
    """
    from .io import read_xray
    from .transforms import preprocess_array

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
    label = model.target_label(domain)
    if model.multi_label:  # one spelling per set ("nodule+effusion" -> "effusion+nodule")
        domain = model.set_text(label)
    try:
        src = load_source(path, model.cfg.data.preprocess)
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
class SynthResult:
    """One synthetic image: ``image`` (1, S, S) in [-1, 1] on the CPU."""

    source: SourceImage
    target: str
    mode: str  # "latent" | "reference"
    style_index: int  # k of the k-th latent style; the reference's position for reference mode
    image: torch.Tensor
    seed: int | None  # latent mode only
    reference_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """File stem free of identifiers: source pixel hash, target, style."""
        style = f"z{self.style_index}" if self.mode == "latent" else f"ref-{self.reference_sha256[:8]}"
        return f"src-{self.source.short_hash}_to-{self.target}_{style}"


def style_latents(seed: int, n_styles: int, latent_dim: int) -> torch.Tensor:
    """(n_styles, latent_dim) normal latents; row k depends only on (seed, k), so the k-th
    style is the same whatever ``n_styles`` and whichever source it is applied to."""
    if n_styles < 1:
        raise XrayStyleError(f"--n-styles must be at least 1, got {n_styles}")
    rows = [np.random.default_rng([int(seed), k]).standard_normal(latent_dim) for k in range(n_styles)]
    return torch.as_tensor(np.stack(rows), dtype=torch.float32)


def _labels(label: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """``label`` (a batch of one: domain index [1] or finding set [1, K]) repeated ``n`` times."""
    return label.to(device).expand(n, *label.shape[1:])


def _batches(items: Iterable[SourceImage], size: int) -> Iterator[list[SourceImage]]:
    batch: list[SourceImage] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def synthesize(model, sources: Iterable[SourceImage], *, target: str | None = None,
               reference: ReferenceImage | None = None, n_styles: int = 1, seed: int = 0,
               batch_size: int = 8) -> Iterator[SynthResult]:
    """Translate every source to ``target`` with ``n_styles`` latent styles, or with the style
    of ``reference`` (whose domain is the target; ``target``, if given, must agree).

    Yields results source by source (styles in order). Deterministic for a fixed ``seed``:
    latents come from :func:`style_latents` (the same k-th style for every source) and the
    networks are in eval mode with per-image normalisation, so an image's output does not depend
    on the other sources; a different ``batch_size`` changes only float rounding in the
    convolutions (a few 16-bit grey levels at most).
    """
    if batch_size < 1:
        raise XrayStyleError(f"--batch-size must be at least 1, got {batch_size}")
    if reference is not None:
        if target is not None and target != reference.domain:
            raise XrayStyleError(f"target {target!r} differs from the reference's domain {reference.domain!r}")
        target = reference.domain
    if target is None:
        raise XrayStyleError("give a target domain or a reference image")
    label = model.target_label(target)  # domain name, or a finding set "a+b" for multi-label models
    device = model.device
    z = None if reference is not None else style_latents(seed, n_styles, model.cfg.model.latent_dim).to(device)
    for batch in _batches(sources, batch_size):
        x = torch.stack([s.image for s in batch]).to(device)
        y = _labels(label, len(batch), device)
        fixed = model.cfg.fixed_style_rows(y)
        if reference is not None:
            x_ref = reference.image[None].to(device).expand(len(batch), -1, -1, -1)
            outs = [translate_reference(model.nets, x, x_ref, y, fixed).float().cpu()]
        else:
            outs = [translate_latent(model.nets, x, y, z[k:k + 1].expand(len(batch), -1), fixed).float().cpu()
                    for k in range(n_styles)]
        for i, src in enumerate(batch):
            for k, out in enumerate(outs):
                if reference is not None:
                    yield SynthResult(src, target, "reference", 0, out[i], None, reference.sha256)
                else:
                    yield SynthResult(src, target, "latent", k, out[i], seed)
