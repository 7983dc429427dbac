"""The built-in default cohort: a phantom cohort generated once into the cache folder
(with :func:`xraystyle.cohorts.generate.generate_once`), keyed by its parameters and by
:func:`generator_version`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..cohorts.generate import generate_once

# Enough images per domain for a CPU demo; findings drawn independently, so about 40% of the
# images are "normal" for normal-vs-effusion and the rest split over the findings.
DEFAULT_PHANTOM = {"n": 800, "seed": 0, "findings": ["effusion", "nodule", "cardiomegaly", "pneumothorax"],
                   "prevalence": {"effusion": 0.4, "nodule": 0.25, "cardiomegaly": 0.25, "pneumothorax": 0.15},
                   "fmt": "png"}

# Modules of this package that do not decide a cohort's files: editing them keeps cached cohorts.
# Every other module here is the simulator (generator, anatomy, lungs, findings, physics, writer).
# Modules that read or judge phantoms but decide no pixel of a cohort: editing them keeps the cache.
_NOT_SIMULATOR = frozenset({"__init__.py", "default.py", "oracle.py", "ideal.py", "attributes.py"})


def generator_version() -> str:
    """Hash of what decides the phantom's pixels besides its parameters: the simulator's source
    files and the lung-mask templates it uses when torchxrayvision's zip is installed (size and
    date; procedural lungs otherwise). A cohort cached by another version is never reused."""
    from . import lungs

    sources = sorted(f for f in Path(__file__).parent.glob("*.py") if f.name not in _NOT_SIMULATOR)
    if not sources:  # a build without sources: the package version is the next best thing
        from .. import __version__

        return f"v{__version__}"
    h = hashlib.sha256()
    for f in sources:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    zip_path = lungs._zip_path()
    if zip_path is not None:
        st = zip_path.stat()
        h.update(f"lungs:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def default_phantom_manifest(size: int, cache_root: Path, **overrides) -> Path:
    """Manifest of the default phantom cohort at ``size`` px, generating it on first use."""
    from .generator import generate_phantom_cohort

    params = {**DEFAULT_PHANTOM, **overrides, "size": size}
    key_fields = {**params, "generator": generator_version()}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:12]
    out = Path(cache_root) / "phantom" / f"{size}px-{key}"
    manifest = out / "manifest.csv"
    if manifest.exists():  # folders of older versions have no COMPLETE file but were renamed whole
        return manifest
    return generate_once(out, lambda tmp: generate_phantom_cohort(
        tmp, n=params["n"], size=size, seed=params["seed"], findings=tuple(params["findings"]),
        fmt=params["fmt"], prevalence=params["prevalence"]))
