"""Patient-level train/val/test split by hashing (seed, patient id).

Each patient gets a number in [0, 1) from sha256(f"{seed}:{patient_id}") (the id stripped and
NFC-normalised) and falls into the split whose cumulative fraction covers it. The assignment
of a patient never depends on the other patients, so adding patients (a new data release) does
not reshuffle the old ones, and the same seed gives the same split on every machine and Python
version (unlike ``hash()``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from .manifest import SPLITS, normalise_patient_id

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or a sequence) -> validated (train, val, test) fractions summing to 1."""
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError(f"split: {text!r} is not three comma-separated numbers, e.g. 0.8,0.1,0.1") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise ConfigError(f"split: expected three fractions (train, val, test), got {len(values)}")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"split: fractions must be finite and non-negative, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split: fractions must sum to 1, got {values} (sum {sum(values):g})")
    return values[0], values[1], values[2]


def patient_unit(patient_id: str, seed: int) -> float:
    """Deterministic number in [0, 1) for one patient."""
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(patient_ids: Iterable[str], seed: int = 0,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Split name ("train" / "val" / "test") per entry of ``patient_ids``; same id, same split.

    Ids are normalised first (surrounding blanks, Unicode NFC), as the manifest loader does, so
    ``"p1"`` and ``"p1 "`` are one patient and can never land in two splits."""
    train, val, _ = parse_fractions(fractions)
    ids = [normalise_patient_id(p) for p in patient_ids]
    units = {p: patient_unit(p, seed) for p in set(ids)}
    edges = (train, train + val)
    out = np.empty(len(ids), dtype=object)
    for i, p in enumerate(ids):
        u = units[p]
        out[i] = SPLITS[0] if u < edges[0] else SPLITS[1] if u < edges[1] else SPLITS[2]
    return out
