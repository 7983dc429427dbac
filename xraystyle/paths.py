"""Where xraystyle keeps things: the cache folder and the packaged run configs."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"


def cache_dir() -> Path:
    """``$XRAYSTYLE_CACHE`` or ``~/.cache/xraystyle`` (phantom cohort, tensor caches)."""
    env = os.environ.get("XRAYSTYLE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xraystyle"


def resolve_config(spec: str | Path) -> Path:
    """A config path, or the name of a packaged config (``tiny``, ``demo``, ``xray-256``, ``paper-256``)."""
    path = Path(spec)
    if path.exists():
        return path
    packaged = CONFIG_DIR / f"{spec}.yaml"
    if packaged.exists() and "/" not in str(spec):
        return packaged
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"{spec}: no such config file or packaged config (packaged: {names})")
