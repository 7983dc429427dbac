"""Cohort manifest: one CSV row per image, validated on load.

Schema (docs/manifest.md has the full text):

- required columns ``path, patient_id, study_id, view, split``; ``path`` is relative to the
  manifest's image root, ``split`` is train / val / test; ``study_id`` and ``view`` may be blank;
- optional ``sex`` (M / F / blank) and ``age`` (years, a number or blank);
- one column per finding, named from :data:`FINDINGS`, holding 1 / 0 / blank (blank = unknown);
- extra columns named ``phys_*`` (numbers), ``mask_*`` (relative paths like ``path``) or
  ``meta_*`` (free text). Every other column is refused, so a misspelt finding never slips by.

Image root: the manifest's folder, unless the file starts with a ``# root: DIR`` line (absolute,
or relative to the manifest's folder). Paths may not leave that root, lexically or through
symbolic links. Errors name the row (1 = first data row), never a patient identifier.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import logging
import os
import posixpath
import re
import stat
import threading
import unicodedata
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..csvsafe import TRIGGERS, neutralise, restore
from ..errors import ManifestError
from .paths import SUSPICIOUS, LinkChecker, is_within, lexical_problem
from .vocabulary import FINDINGS, NORMAL

log = logging.getLogger(__name__)

REQUIRED = ("path", "patient_id", "study_id", "view", "split")
OPTIONAL = ("sex", "age")
SPLITS = ("train", "val", "test")
SEXES = ("M", "F")
PREFIXES = ("phys_", "mask_", "meta_")
ROOT_KEY = "root"

_EXTRA_NAME = re.compile(r"^(phys|mask|meta)_[a-z0-9_]+$")
_FINDING_VALUES = {"1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0, "": np.nan}


class Manifest:
    """A validated manifest. ``df`` keeps the file's row numbers as its index (0-based)."""

    def __init__(self, path: Path, root: Path, df: pd.DataFrame):
        self.path = Path(path)
        self.root = Path(root)
        self.df = df
        self._root_real = os.path.realpath(self.root)

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        return f"Manifest({str(self.path)!r}, rows={len(self.df)}, findings={self.findings})"

    @property
    def findings(self) -> list[str]:
        """Finding columns present, in vocabulary order."""
        return [f for f in FINDINGS if f in self.df.columns]

    def resolve(self, rel: str) -> Path:
        """Absolute path of a manifest path; refuses anything that leaves the image root."""
        problem = lexical_problem(rel)
        if problem:
            raise ManifestError(self.path, problem)
        full = self.root / rel
        if not is_within(os.path.realpath(full), self._root_real):
            raise ManifestError(self.path, "path escapes the image root through a symbolic link")
        return full

    def subset(self, split: str | None = None) -> "Manifest":
        """The rows of one split (all rows when ``split`` is None), as a new Manifest."""
        if split is None:
            return Manifest(self.path, self.root, self.df.copy())
        if split not in SPLITS:
            raise ManifestError(self.path, f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        return Manifest(self.path, self.root, self.df[self.df["split"] == split].copy())

    def finding_matrix(self, findings: Iterable[str]) -> np.ndarray:
        """(rows, findings) float array: 1 positive, 0 negative, NaN unknown."""
        findings = list(findings)
        self._require_findings(findings)
        return self.df[findings].to_numpy(dtype=np.float64)

    def domain_labels(self, domains: list[str], unknown: str = "negative") -> np.ndarray:
        """Single-label domain index per row; -1 marks rows to exclude.

        ``"normal"`` is the row where none of the other named findings is positive. A row
        positive for two named findings is ambiguous (-1). Without ``"normal"`` in ``domains``,
        a row positive for none of them is excluded too. ``unknown="negative"`` treats blank as
        not positive (the default); ``unknown="exclude"`` excludes rows blank for any named
        finding.
        """
        if len(set(domains)) != len(domains) or not domains:
            raise ManifestError(self.path, f"domains must be distinct and non-empty, got {domains}")
        if unknown not in ("negative", "exclude"):
            raise ManifestError(self.path, f"unknown={unknown!r}: expected 'negative' or 'exclude'")
        named = [d for d in domains if d != NORMAL]
        self._require_findings(named, what="domain")
        values = self.df[named].to_numpy(dtype=np.float64) if named else np.zeros((len(self.df), 0))
        positive = values == 1.0
        n_pos = positive.sum(axis=1)
        labels = np.full(len(self.df), -1, dtype=np.int64)
        for j, name in enumerate(named):
            labels[positive[:, j] & (n_pos == 1)] = domains.index(name)
        if NORMAL in domains:
            labels[n_pos == 0] = domains.index(NORMAL)
        if unknown == "exclude":
            labels[np.isnan(values).any(axis=1)] = -1
        ambiguous = int((n_pos > 1).sum())
        if ambiguous:
            log.info("%s: %d row(s) positive for more than one of %s: excluded (label -1)",
                     self.path, ambiguous, named)
        return labels

    def content_hash(self) -> str:
        """sha256 of the normalised content (canonical columns, rows sorted by path).

        Independent of the image root and of row order, so moving the images or re-sorting
        the file keeps the hash; any change of a value changes it.
        """
        frame = _to_strings(self.df)
        frame = frame.sort_values("path", kind="stable")
        buf = io.StringIO()
        frame.to_csv(buf, index=False, lineterminator="\n")
        return hashlib.sha256(buf.getvalue().encode("utf-8")).hexdigest()

    def _require_findings(self, names: list[str], what: str = "finding") -> None:
        missing = [n for n in names if n not in self.df.columns or n not in FINDINGS]
        if missing:
            raise ManifestError(
                self.path,
                f"unknown {what} {', '.join(repr(m) for m in missing)} "
                f"(available: {', '.join(self.findings) or 'none'}"
                f"{', ' + NORMAL if what == 'domain' else ''})",
            )


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest CSV; any problem raises ManifestError(path, reason)."""
    path = Path(path)
    root, skip = _read_preamble(path)
    try:
        raw = pd.read_csv(path, skiprows=skip, dtype=str, keep_default_na=False, na_filter=False,
                          encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ManifestError(path, "no header row (empty CSV)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise ManifestError(path, f"not a readable CSV ({exc})") from None
    df = _validate(_restore_cells(raw), path, root)
    return Manifest(path, root, df)


def normalise_patient_id(value: str) -> str:
    """One spelling per patient: ``"p1 "`` and ``"p1"`` (or an accent composed or not) are one
    patient for splits and for the patient-in-two-splits check."""
    return unicodedata.normalize("NFC", str(value).strip())


def _normalise_patient_ids(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip().str.normalize("NFC").astype(object)


def write_manifest(df: pd.DataFrame, path: str | Path, root: str | Path | None = None) -> Manifest:
    """Validate ``df`` and write it as a manifest (atomically); returns the loaded Manifest.

    ``root``: the image root written as a ``# root:`` line (absolute, or relative to the
    manifest's folder); None keeps the manifest's own folder as the root. Findings may be given
    as 1 / 0 / NaN numbers or as strings.
    """
    path = Path(path)
    if root is not None and re.search(r"[\x00-\x1f]", str(root)):
        raise ManifestError(path, "image root contains control characters")
    root_path = _root_of(path, None if root is None else str(root))
    frame = _to_strings(df.reset_index(drop=True))
    typed = _validate(frame, path, root_path)
    frame["patient_id"] = typed["patient_id"].to_numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A scratch file renamed into place: readers never see half a manifest. Plain open() (not
    # mkstemp, which creates 0600 files) so the manifest gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            if root is not None:
                fh.write(f"# {ROOT_KEY}: {root}\n")
            disk = _neutralise_cells(frame)
            # Python < 3.12 leaves a cell holding a bare CR unquoted when lines end in LF, and
            # every reader then splits the row there: quote all cells in that (rare) case.
            has_cr = any(disk[c].str.contains("\r", regex=False).any() for c in disk.columns)
            disk.to_csv(fh, index=False, lineterminator="\n",
                        quoting=csv.QUOTE_ALL if has_cr else csv.QUOTE_MINIMAL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Manifest(path, root_path, typed)


# ---------------------------------------------------------------------------------------------
# parsing and validation


def _read_preamble(path: Path) -> tuple[Path, int]:
    """Image root and number of leading ``#`` lines; checks the header row for duplicates."""
    if path.is_dir():
        raise ManifestError(path, "is a folder, expected a manifest CSV file")
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ManifestError(path, "file not found") from None
    except OSError as exc:
        raise ManifestError(path, f"cannot read ({exc.strerror or exc})") from None
    root_text = None
    skip = 0
    try:
        with fh:
            for line in fh:
                if not line.startswith("#"):
                    header = next(csv.reader([line]), [])
                    break
                skip += 1
                key, _, value = line[1:].partition(":")
                if key.strip() == ROOT_KEY:
                    if root_text is not None:
                        raise ManifestError(path, f"more than one '# {ROOT_KEY}:' line")
                    root_text = value.strip()
                    if not root_text:
                        raise ManifestError(path, f"empty '# {ROOT_KEY}:' line")
            else:
                raise ManifestError(path, "no header row (empty CSV)")
    except UnicodeDecodeError:
        raise ManifestError(path, "not UTF-8 text (is it a CSV file?)") from None
    if "\x00" in line:
        raise ManifestError(path, "contains NUL bytes (binary file, not a CSV)")
    seen = set()
    for name in header:
        if name in seen:
            raise ManifestError(path, f"duplicate column {name!r}")
        seen.add(name)
    return _root_of(path, root_text), skip


def _root_of(path: Path, root_text: str | None) -> Path:
    folder = Path(os.path.abspath(path)).parent
    if root_text is None:
        return folder
    if "\x00" in root_text:
        raise ManifestError(path, f"'# {ROOT_KEY}:' line contains a NUL byte")
    root = Path(root_text).expanduser()
    return root if root.is_absolute() else Path(os.path.normpath(folder / root))


def _unknown_column(path: Path, name: str) -> ManifestError:
    close = difflib.get_close_matches(name.lower(), list(FINDINGS) + list(REQUIRED + OPTIONAL), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ManifestError(
        path,
        f"unknown column {name!r}{hint}: columns must be {', '.join(REQUIRED + OPTIONAL)}, "
        "a finding of the vocabulary (see docs/manifest.md), or named phys_*, mask_*, meta_*",
    )


def _row(i: int) -> str:
    return f"row {i + 1}"


def _validate(raw: pd.DataFrame, path: Path, root: Path) -> pd.DataFrame:
    """Check an all-string frame; return the typed frame (findings/age/phys_* as float)."""
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise ManifestError(path, f"missing required column(s): {', '.join(missing)}")
    for name in raw.columns:
        if name in REQUIRED or name in OPTIONAL or name in FINDINGS:
            continue
        if not _EXTRA_NAME.match(name):
            raise _unknown_column(path, name)
    if len(raw) == 0:
        raise ManifestError(path, "has a header but no rows")
    df = raw.copy()
    df.index = pd.RangeIndex(len(df))
    df["patient_id"] = _normalise_patient_ids(df["patient_id"])

    for col in ("path", "patient_id", "split"):
        empty = np.flatnonzero(df[col].to_numpy() == "")
        if len(empty):
            raise ManifestError(path, f"{_row(empty[0])}: empty {col}")
    path_cols = ["path"] + [c for c in df.columns if c.startswith("mask_")]
    for col in path_cols:
        values = df[col]
        suspect = values.str.contains(SUSPICIOUS, regex=True).to_numpy(dtype=bool, copy=True)
        if col == "path":
            suspect |= (values == "").to_numpy()
        for i in np.flatnonzero(suspect):
            problem = lexical_problem(values.iloc[i])
            if problem:
                raise ManifestError(path, f"{_row(i)}: {col}: {problem}")
        # No image is named like a formula; such a cell is an injection attempt (see csvsafe).
        formula = np.flatnonzero(values.str.startswith("=").to_numpy(dtype=bool))
        if len(formula):
            raise ManifestError(path, f"{_row(formula[0])}: {col}: path looks like a spreadsheet "
                                      "formula (starts with '=')")

    norm = df["path"].map(posixpath.normpath)
    dup = norm.duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        first = norm.iloc[rows[0]]
        other = next(r for r in rows[1:] if norm.iloc[r] == first)
        raise ManifestError(path, f"duplicate path at {_row(rows[0])} and {_row(other)} "
                                  f"({int(norm[dup].duplicated().sum())} duplicate(s) in all)")

    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ManifestError(path, f"{_row(i)}: split {_short(df['split'].iloc[i])} is not one of "
                                  f"{', '.join(SPLITS)}")

    for col in [c for c in df.columns if c in FINDINGS]:
        mapped = df[col].map(_FINDING_VALUES)
        bad = mapped.isna() & (df[col] != "")
        if bad.any():  # tolerate blanks around a value before calling it invalid
            df[col] = df[col].str.strip()
            mapped = df[col].map(_FINDING_VALUES)
            bad = mapped.isna() & (df[col] != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ManifestError(path, f"{_row(i)}: {col} = {_short(df[col].iloc[i])}: findings "
                                      "hold 1 (positive), 0 (negative) or blank (unknown)")
        df[col] = mapped.astype(np.float64)

    if "sex" in df.columns:
        bad = ~df["sex"].isin(SEXES + ("",))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ManifestError(path, f"{_row(i)}: sex {_short(df['sex'].iloc[i])} is not M, F or blank")
    numeric = (["age"] if "age" in df.columns else []) + [c for c in df.columns if c.startswith("phys_")]
    for col in numeric:
        values = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
        bad = values.isna() & (df[col] != "")
        if col == "age":
            bad |= values < 0
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            what = "a non-negative number" if col == "age" else "a number"
            raise ManifestError(path, f"{_row(i)}: {col} = {_short(df[col].iloc[i])} is not {what} or blank")
        df[col] = values.astype(np.float64)

    splits_per_patient = df.groupby("patient_id", sort=False)["split"].nunique()
    leaking = splits_per_patient[splits_per_patient > 1]
    if len(leaking):
        # Name a row, never the patient id itself: ids are identifiers in real data.
        first_split = df.groupby("patient_id", sort=False)["split"].transform("first")
        offending = (df["split"] != first_split) & df["patient_id"].isin(leaking.index)
        i = int(np.flatnonzero(offending.to_numpy())[0])
        raise ManifestError(path, f"{len(leaking)} patient(s) appear in more than one split "
                                  f"(e.g. {_row(i)}): splits must be assigned per patient")

    links = LinkChecker(root)
    files: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) -> first row naming that file
    for col in path_cols:
        for i, rel in enumerate(df[col].tolist()):
            if rel and links.escapes(rel):
                raise ManifestError(path, f"{_row(i)}: {col}: path escapes the image root through "
                                          "a symbolic link")
            if col == "path":
                # Two names of one file (in-root link, hard link) would put one image in two
                # rows, possibly two splits. Compared only where the file exists.
                ident = _file_identity(root, rel, links.last_stat)
                if ident is not None and files.setdefault(ident, i) != i:
                    raise ManifestError(path, f"{_row(files[ident])} and {_row(i)} are the same file "
                                              "(a link or a second name): each image may appear once")
    return df


def _file_identity(root: Path, rel: str, st: os.stat_result | None) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file ``rel`` names, from its lstat; a link (already known to stay
    inside the root) costs one more stat, a regular file none."""
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError:  # dangling link: nothing to compare
            return None
    if not stat.S_ISREG(st.st_mode) or st.st_ino == 0:  # st_ino 0: file system without inodes
        return None
    return st.st_dev, st.st_ino


def _first_chars(values: pd.Series) -> np.ndarray:
    # The first character of every cell in one C loop: cheap enough for 200k-row manifests.
    return values.to_numpy(dtype=object).astype("U1")


def _restore_cells(raw: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`_neutralise_cells` (a leading quote before a formula) in a read frame."""
    for col in raw.columns:
        values = raw[col]
        quoted = _first_chars(values) == "'"
        if quoted.any():
            raw[col] = values.where(~quoted, values[quoted].map(restore))
    return raw


def _neutralise_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as written to disk: text a spreadsheet would evaluate gets a leading quote."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        risky = np.isin(_first_chars(values), list(TRIGGERS) + ["'"])
        if risky.any():
            out[col] = values.where(~risky, values[risky].map(neutralise))
    return out


def _short(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:21] + "...")


def _canonical_columns(columns: Iterable[str]) -> list[str]:
    cols = list(columns)
    head = [c for c in REQUIRED + OPTIONAL if c in cols]
    findings = [f for f in FINDINGS if f in cols]
    rest = sorted(c for c in cols if c not in head and c not in findings)
    return head + findings + rest


def _cell(value) -> str:
    """On-disk text of one value: NaN/None blank, integral numbers without '.0'."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _column_strings(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return np.where(values.to_numpy(dtype=bool), "1", "0").astype(object)
    if pd.api.types.is_numeric_dtype(values):
        num = values.to_numpy(dtype=np.float64)
        out = np.full(len(num), "", dtype=object)
        finite = np.isfinite(num)
        integral = finite & (num == np.round(num)) & (np.abs(num) < 2**53)
        out[integral] = num[integral].astype(np.int64).astype(str)
        rest = finite & ~integral
        out[rest] = [repr(float(v)) for v in num[rest]]
        out[np.isinf(num)] = [repr(float(v)) for v in num[np.isinf(num)]]
        return out
    return np.array([_cell(v) if not isinstance(v, str) else v for v in values.tolist()], dtype=object)


def _to_strings(df: pd.DataFrame) -> pd.DataFrame:
    """All-string frame in canonical column order: the on-disk form of a manifest."""
    cols = _canonical_columns(df.columns)
    return pd.DataFrame({c: _column_strings(df[c]) for c in cols}, index=df.index)
