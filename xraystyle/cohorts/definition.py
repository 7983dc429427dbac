"""Cohort definitions (cohorts/*.yaml) and :func:`resolve_cohort`, the trainer's ``--cohort``.

A definition names a source and the choices that turn its metadata into a manifest::

    name: nih-effusion
    source: nih
    csv: Data_Entry_2017_v2020.csv     # looked up under the image folder, then next to the YAML
    findings: [effusion]
    views: [PA]
    split: [0.8, 0.1, 0.1]
    split_seed: 0

``source: phantom`` definitions pass their other keys to
``xraystyle.phantom.generate_phantom_cohort(out_dir, **keys)``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ..config import from_dict, load_yaml, to_dict
from ..errors import ConfigError
from .build import MISSING_POLICIES, build_manifest, parse_list
from .generate import generate_once
from .manifest import load_manifest
from .sources import UNCERTAIN_POLICIES, get_source
from .splits import parse_fractions

log = logging.getLogger(__name__)

# Bump when adapters change what they write, so cached manifests are rebuilt.
MANIFEST_FORMAT = 1
PHANTOM = "phantom"
_DESCRIPTIVE = ("name", "description")


@dataclass
class CohortDefinition:
    """A real-source cohort definition; unknown keys are refused by ``from_dict``."""

    source: str
    name: Optional[str] = None
    description: Optional[str] = None
    csv: Union[list, str, None] = None
    metadata: Optional[str] = None
    images: Optional[str] = None
    findings: Union[list, str, None] = None
    views: Union[list, str, None] = None
    uncertain: Optional[Literal["ignore", "positive", "negative"]] = None
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = 0
    missing: Literal["drop", "keep", "error"] = "drop"

    def __post_init__(self) -> None:
        get_source(self.source)
        parse_fractions(self.split)
        for key in ("csv", "findings", "views"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str) and not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{key}: expected a string or a list of strings, got {value!r}")
        if self.uncertain is not None and self.uncertain not in UNCERTAIN_POLICIES:
            raise ConfigError(f"uncertain: {self.uncertain!r} is not one of {', '.join(UNCERTAIN_POLICIES)}")
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(f"missing: {self.missing!r} is not one of {', '.join(MISSING_POLICIES)}")


def read_definition(path: str | Path) -> dict[str, Any]:
    """The YAML mapping of a cohort definition, with its ``source`` checked."""
    data = load_yaml(path)
    source = data.get("source")
    if not isinstance(source, str):
        raise ConfigError(f"{path}: a cohort definition needs 'source: <{'|'.join(['nih', 'chexpert', '...', PHANTOM])}>'")
    return data


def parse_definition(path: str | Path, data: dict[str, Any]) -> CohortDefinition:
    try:
        return from_dict(CohortDefinition, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def find_source_file(name: str, images: Path | None, definition_path: Path) -> Path:
    """A CSV named in a definition: absolute as is; else under the image folder, else next to
    the YAML file."""
    p = Path(name).expanduser()
    if p.is_absolute():
        return p
    candidates = ([images / p] if images else []) + [definition_path.parent / p]
    for c in candidates:
        if c.exists():
            return c
    where = " or ".join(str(c.parent) for c in candidates)
    raise ConfigError(f"{definition_path}: source file {name!r} not found in {where} (give --csv / --images)")


def definition_build_args(path: Path, d: CohortDefinition, images: Path | None) -> dict[str, Any]:
    """Keyword arguments of :func:`build_manifest` for a parsed definition."""
    images = images if images is not None else (Path(d.images).expanduser() if d.images else None)
    csv = [find_source_file(c, images, path) for c in (parse_list(d.csv) or [])]
    meta = find_source_file(d.metadata, images, path) if d.metadata else None
    return dict(csv=csv, metadata=meta, images=images, findings=d.findings, views=d.views,
                uncertain=d.uncertain, split=d.split, split_seed=d.split_seed, missing=d.missing)


def default_cache_dir() -> Path:
    base = os.environ.get("XRAYSTYLE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xraystyle")
    return Path(base) / "cohorts"


def resolve_cohort(spec: str | Path, images: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Path of a validated manifest for ``spec``.

    A ``.csv`` is validated and returned as is. A ``.yaml`` definition is built into
    ``cache_dir`` (default ``$XRAYSTYLE_CACHE/cohorts`` or ``~/.cache/xraystyle/cohorts``) under
    a key hashing the definition, the image folder and the size + mtime of its source CSVs, and
    reused while that key holds. ``source: phantom`` generates the phantom cohort there.
    """
    spec = Path(spec)
    suffix = spec.suffix.lower()
    if suffix == ".csv":
        load_manifest(spec)
        return spec
    if suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{spec}: expected a manifest .csv or a cohort definition .yaml")
    data = read_definition(spec)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    label = _safe_name(str(data.get("name") or spec.stem))
    if data["source"] == PHANTOM:
        return _resolve_phantom(spec, data, cache_dir, label)

    d = parse_definition(spec, data)
    args = definition_build_args(spec, d, Path(images) if images is not None else None)
    if args["images"] is None:
        raise ConfigError(f"{spec}: cohort {label} needs its image folder (images: in the YAML or --images)")
    stamp = {"format": MANIFEST_FORMAT, "definition": to_dict(d), "images": os.path.abspath(args["images"]),
             "files": [_file_stamp(p) for p in args["csv"] + ([args["metadata"]] if args["metadata"] else [])]}
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = cache_dir / f"{label}-{key}.csv"
    if out.exists():
        log.info("%s: using cached manifest %s", spec, out)
        load_manifest(out)
        return out
    build_manifest(d.source, out, **args)
    return out


def _resolve_phantom(spec: Path, data: dict[str, Any], cache_dir: Path, label: str) -> Path:
    # Imported here: the phantom generator is its own module and may pull in heavier deps.
    from ..phantom.generator import generate_phantom_cohort

    kwargs = {k: v for k, v in data.items() if k not in _DESCRIPTIVE + ("source",)}
    try:
        inspect.signature(generate_phantom_cohort).bind(Path("."), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{spec}: phantom cohort: {exc}") from None
    stamp = {"format": MANIFEST_FORMAT, "phantom": kwargs}
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()[:16]
    # Serialised and renamed into place by generate_once: two runs resolving this YAML at once
    # generate it once, and neither ever deletes the folder the other is reading.
    manifest = generate_once(cache_dir / f"{label}-{key}", lambda tmp: generate_phantom_cohort(tmp, **kwargs))
    load_manifest(manifest)
    return manifest


def _file_stamp(path: Path) -> list:
    st = Path(path).stat()
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "cohort"
