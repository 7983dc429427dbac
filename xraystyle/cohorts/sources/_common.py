"""Shared pieces of the source adapters.

Every adapter's ``read(opts)`` returns one row per image with the columns ``path`` (the image's
path in the source's own layout, relative and '/'-separated), ``patient_id``, ``study_id``,
``view`` (upper case, spaces as '_', blank when unknown), ``frontal`` (bool), optionally ``sex``
and ``age``, and finding columns from the vocabulary as float 1 / 0 / NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ...errors import ConfigError, ManifestError

UNCERTAIN_POLICIES = ("ignore", "positive", "negative")
FRONTAL_VIEWS = frozenset({"PA", "AP"})


@dataclass
class SourceOptions:
    """Inputs of an adapter: label CSV(s), an optional second metadata CSV, the image root."""

    source: str
    csv: list[Path] = field(default_factory=list)
    metadata: Path | None = None
    images: Path | None = None
    uncertain: str | None = None


def require_csv(opts: SourceOptions, what: str) -> list[Path]:
    if not opts.csv:
        raise ConfigError(f"source {opts.source} needs --csv ({what})")
    return opts.csv


def refuse(opts: SourceOptions, *, metadata: bool = True, uncertain: bool = True) -> None:
    """Reject options a source does not use, so a typo'd command never half-works."""
    if metadata and opts.metadata is not None:
        raise ConfigError(f"source {opts.source} takes no --metadata")
    if uncertain and opts.uncertain is not None:
        raise ConfigError(f"--uncertain applies to chexpert and mimic only, not {opts.source}")


def uncertain_policy(opts: SourceOptions) -> str:
    policy = opts.uncertain or "ignore"
    if policy not in UNCERTAIN_POLICIES:
        raise ConfigError(f"--uncertain {policy!r}: expected one of {', '.join(UNCERTAIN_POLICIES)}")
    return policy


def read_table(path: Path, required: Iterable[str], what: str, **kwargs) -> pd.DataFrame:
    """Read a source CSV (.csv, .csv.gz, .zip with one CSV); one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "file not found" if not path.exists() else "is not a file")
    try:
        df = pd.read_csv(path, low_memory=False, **kwargs)
    except pd.errors.EmptyDataError:
        raise ManifestError(path, "empty file") from None
    except UnicodeDecodeError:
        raise ManifestError(path, "not UTF-8 text (is it a CSV file?)") from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError) as exc:
        raise ManifestError(path, f"not a readable CSV ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(path, f"missing column(s) {', '.join(repr(m) for m in missing)}: "
                                  f"is this the {what}?")
    return df


def read_tables(paths: list[Path], required: Iterable[str], what: str, **kwargs) -> pd.DataFrame:
    """Several CSVs of the same layout (e.g. CheXpert train + valid), concatenated."""
    required = list(required)
    frames = [read_table(p, required, what, **kwargs) for p in paths]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def norm_view(values: pd.Series) -> pd.Series:
    """Upper case, trimmed, inner spaces as '_' (``"AP AXIAL"`` -> ``"AP_AXIAL"``); NaN -> ''."""
    s = values.astype("string").fillna("").str.strip().str.upper()
    return s.str.replace(r"\s+", "_", regex=True).astype(object)


def norm_sex(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """Source sex codes to M / F; anything else (unknown, other, blank) becomes blank."""
    return values.astype("string").fillna("").str.strip().map(lambda v: mapping.get(v, "")).astype(object)


def id_strings(values: pd.Series) -> pd.Series:
    """Identifier column as strings; integer-valued floats lose their '.0'."""
    if pd.api.types.is_float_dtype(values):
        return values.map(lambda v: "" if pd.isna(v) else str(int(v)) if float(v).is_integer() else str(v))
    return values.astype("string").fillna("").str.strip().astype(object)


def label_column(values: pd.Series, path: Path, column: str, policy: str) -> np.ndarray:
    """CheXpert-style 1 / 0 / -1 / blank column to 1 / 0 / NaN under an uncertainty policy."""
    if pd.api.types.is_numeric_dtype(values):  # the usual case: pandas parsed the floats
        num = values.astype(np.float64)
        bad = ~num.isin([1.0, 0.0, -1.0]) & num.notna()
    else:
        num = pd.to_numeric(values, errors="coerce")
        bad = num.isna() & values.notna() & (values.astype("string").str.strip() != "")
        bad |= ~num.isin([1.0, 0.0, -1.0]) & num.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ManifestError(path, f"row {i + 1}: {column!r} = {str(values.iloc[i])!r}: expected 1, 0, -1 or blank")
    out = num.to_numpy(dtype=np.float64).copy()
    uncertain = out == -1.0
    out[uncertain] = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}[policy]
    return out


def indicator(rows: np.ndarray, labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """``{label: float 0/1 array of length n}`` from (row, label) pairs, e.g. an exploded list."""
    codes, names = pd.factorize(labels)
    mat = np.zeros((n, len(names)), dtype=np.float64)
    mat[np.asarray(rows, dtype=np.int64), codes] = 1.0
    return {name: mat[:, j] for j, name in enumerate(names)}
