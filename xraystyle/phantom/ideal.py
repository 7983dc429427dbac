"""Ideal counterfactuals: a phantom case re-rendered from its truth row, as it is, with findings
added or removed, or under another acquisition (docs/phantom.md, "Ideal counterfactuals").

A cohort row is the manifest row (labels, ``phys_*``) joined with its ``phantom_truth.csv`` row
(cohort seed, case index, size, lung template, lung-mask paths and the exact renderer inputs
``param_*`` of each present finding). Anatomy, each finding's parameters and the noise field
come from separate streams of the case seed, so a re-render with other findings or physics is
the same patient with the same noise field: only what was asked for changes.

- :func:`read_truth` reads and checks a cohort's rows (:class:`TruthRow`);
  :func:`case_row` makes a row for any case seed without files.
- :func:`rerender` renders a row exactly (float image before quantisation), :func:`stored` the
  pixel array its file holds.
- :func:`ideal_counterfactual` renders the row with findings added (given attributes; the rest
  are the row's own draws for findings it has, else the finding's own stream draw for the case:
  the finding this patient would have had) and / or removed, under the row's physics, neutral
  physics or other physics (:func:`physics_variant`: reproducible draws from a separate stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .anatomy import draw_anatomy
from .findings import (
    FINDINGS,
    PARAM_COLUMNS,
    check_finding_params,
    draw_finding_params,
    merge_overrides,
    params_from_columns,
)
from .generator import (
    MAX_SIZE,
    MIN_SIZE,
    TRUTH_CASE_COLUMNS,
    PhantomSample,
    case_seed,
    case_streams,
    render_phantom,
)
from .physics import NEUTRAL_PHYSICS, draw_physics, quantize, resolve_physics
from .writer import dicom_pixels, png16_pixels

__all__ = ["TruthRow", "case_row", "ideal_counterfactual", "physics_variant", "read_truth", "rerender",
           "stored"]

TRUTH_FILE = "phantom_truth.csv"
MANIFEST_FILE = "manifest.csv"
# Physics variants: SeedSequence(cohort_seed, spawn_key=(PHYSICS_VARIANT_KEY, index, k)); case
# streams use spawn_key (0, index) and the split (1,), so variants never repeat a cohort draw.
PHYSICS_VARIANT_KEY = 2
_INT_PHYSICS = ("bit_depth", "monochrome1")


@dataclass(frozen=True)
class TruthRow:
    """Everything needed to re-render one phantom case.

    ``labels``: 1/0 for every name of ``FINDINGS`` (0 for findings the cohort does not have).
    ``params``: the exact renderer inputs of each present finding (effusion ``side`` /
    ``volume`` / ``meniscus`` / ``density``; nodule ``side`` / ``radius`` / ``density`` /
    ``position`` (u, v); cardiomegaly ``ctr``; pneumothorax ``side`` / ``rim`` / ``lucency``).
    ``physics``: the acquisition (manifest ``phys_*``). ``truth``: the other truth-table values
    as written (measured geometry: ``ctr``, ``effusion_area_px``, ``nodule_x``, ...; blank
    cells are absent). ``masks``: paths relative to ``root`` of the finding masks and of
    ``lung_right`` / ``lung_left``. ``root``: the cohort folder (None for :func:`case_row`),
    ``line``: the row's line in ``phantom_truth.csv`` (0 when not read from a file).
    """

    path: str
    cohort_seed: int
    case_index: int
    size: int
    labels: Mapping[str, int]
    params: Mapping[str, Mapping[str, Any]]
    physics: Mapping[str, Any]
    lung_template: str
    truth: Mapping[str, Any] = field(default_factory=dict)
    masks: Mapping[str, str] = field(default_factory=dict)
    root: Path | None = None
    line: int = 0
    fmt: str = "png"

    @property
    def present(self) -> tuple[str, ...]:
        """Present findings, in ``FINDINGS`` order."""
        return tuple(f for f in FINDINGS if self.labels.get(f))

    @property
    def seed(self) -> np.random.SeedSequence:
        """The case seed: ``case_seed(cohort_seed, case_index)``."""
        return case_seed(self.cohort_seed, self.case_index)

    @property
    def image_file(self) -> Path | None:
        return self.root / self.path if self.root is not None and self.path else None

    def mask_file(self, name: str) -> Path | None:
        """File of a finding mask (present findings) or of ``lung_right`` / ``lung_left``."""
        rel = self.masks.get(name)
        return self.root / rel if self.root is not None and rel else None

    @property
    def where(self) -> str:
        if self.root is None:
            return f"case {self.cohort_seed}/{self.case_index}"
        return f"{self.root / TRUTH_FILE} line {self.line} ({self.path})"


# ----------------------------------------------------------------------------- reading


def read_truth(cohort: str | Path) -> list[TruthRow]:
    """The rows of a phantom cohort, in manifest order: ``cohort`` is its folder, its
    ``manifest.csv`` or its ``phantom_truth.csv`` (both files are read, from one folder).

    Raises :class:`ConfigError` with one line naming the file and row for a missing file or
    column (a truth table from a generator before this module lacks ``cohort_seed`` ...:
    regenerate the cohort), an unknown finding (``mask_<name>`` / ``param_<name>_*``
    columns), a row of one file missing in the other, or a value out of range.
    """
    given = Path(cohort)
    root = given if given.is_dir() else given.parent
    man_file, truth_file = root / MANIFEST_FILE, root / TRUTH_FILE
    for f in (man_file, truth_file):
        if not f.is_file():
            raise ConfigError(f"{f}: no such file (a phantom cohort folder holds {MANIFEST_FILE} and {TRUTH_FILE})")
    man = _read_csv(man_file)
    truth = _read_csv(truth_file)

    findings = _cohort_findings(man_file, man, truth_file, truth)
    need_man = ["path", *findings, *(f"mask_{f}" for f in findings), *(f"phys_{k}" for k in NEUTRAL_PHYSICS)]
    need_truth = ["path", "lung_template", *TRUTH_CASE_COLUMNS, *(c for f in findings for c in PARAM_COLUMNS[f])]
    for f, table, need in ((man_file, man, need_man), (truth_file, truth, need_truth)):
        missing = [c for c in need if c not in table.columns]
        if missing:
            hint = " (written by an older generator? regenerate the cohort)" if f == truth_file else ""
            raise ConfigError(f"{f}: missing column(s) {', '.join(missing)}{hint}")

    truth_at: dict[str, int] = {}
    for i, p in enumerate(truth["path"]):
        if p in truth_at:
            raise ConfigError(f"{truth_file} line {i + 2}: path {p!r} listed twice")
        truth_at[p] = i
    if len(truth_at) != len(man):
        extra = sorted(set(truth_at) - set(man["path"]))
        if extra:
            raise ConfigError(f"{truth_file} line {truth_at[extra[0]] + 2}: {extra[0]!r} is not in {man_file.name}")
    geometry = [c for c in truth.columns if c not in ("path", "lung_template", *TRUTH_CASE_COLUMNS)
                and not c.startswith("param_")]
    rows = []
    for j in range(len(man)):
        m = man.iloc[j]
        i = truth_at.get(m["path"])
        if i is None:
            raise ConfigError(f"{man_file} line {j + 2}: {m['path']!r} has no row in {TRUTH_FILE}")
        t = truth.iloc[i]
        where = f"{truth_file} line {i + 2} ({m['path']})"
        try:
            rows.append(_row(root, i + 2, m, t, findings, geometry))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return rows


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: not a readable CSV ({msg})") from None


def _cohort_findings(man_file, man, truth_file, truth) -> tuple[str, ...]:
    for f, cols, prefix in ((man_file, man.columns, "mask_"), (truth_file, truth.columns, "param_")):
        for c in cols:
            if not c.startswith(prefix) or c in TRUTH_CASE_COLUMNS:
                continue
            name = next((n for n in FINDINGS if c == f"mask_{n}" or c.startswith(f"param_{n}_")), None)
            if name is None or (prefix == "param_" and c not in PARAM_COLUMNS[name]):
                raise ConfigError(f"{f}: column {c!r} names an unknown finding or parameter "
                                  f"(findings: {', '.join(FINDINGS)})")
    return tuple(n for n in FINDINGS if n in man.columns)


def _int(value: str, what: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        x = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        bounds = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(f"{what} must be {bounds}, got {x}")
    return x


def _value(text: str) -> Any:
    """A truth-table cell: blank -> None, int, float (exact: Python parses the written repr) or
    string."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _row(root: Path, line: int, m: pd.Series, t: pd.Series, findings: tuple[str, ...],
         geometry: list[str]) -> TruthRow:
    seed = _int(t["cohort_seed"], "cohort_seed", 0)
    index = _int(t["case_index"], "case_index", 0)
    size = _int(t["size"], "size", MIN_SIZE, MAX_SIZE)
    labels = {f: 0 for f in FINDINGS}
    params: dict[str, dict] = {}
    masks = {}
    for f in findings:
        labels[f] = _int(m[f], f"label {f}", 0, 1)
        given = {c: _value(t[c]) for c in PARAM_COLUMNS[f]}
        blank = [c for c, v in given.items() if v is None]
        if labels[f]:
            if blank:
                raise ConfigError(f"{f} is 1 but {', '.join(blank)} blank")
            try:
                params[f] = params_from_columns(f, given)
            except ConfigError as e:
                raise ConfigError(f"param_{f}_*: {e}") from None
            masks[f] = m[f"mask_{f}"]
        elif len(blank) < len(given):
            raise ConfigError(f"{f} is 0 but its param_{f}_* columns are filled")
    for side in ("right", "left"):
        if not t[f"mask_lung_{side}"]:
            raise ConfigError(f"mask_lung_{side} is blank")
        masks[f"lung_{side}"] = t[f"mask_lung_{side}"]
    physics: dict[str, Any] = {}
    for k in NEUTRAL_PHYSICS:
        text = m[f"phys_{k}"]
        if k in _INT_PHYSICS:
            physics[k] = _int(text, f"phys_{k}")
        else:
            try:
                physics[k] = float(text)
            except ValueError:
                raise ConfigError(f"phys_{k} must be a number, got {text!r}") from None
    physics = resolve_physics(physics)
    fmt = Path(m["path"]).suffix.lower().lstrip(".")
    if fmt not in ("png", "dcm"):
        raise ConfigError(f"image path {m['path']!r}: expected a .png or .dcm file")
    if not t["lung_template"]:
        raise ConfigError("lung_template is blank")
    truth = {c: v for c in geometry if (v := _value(t[c])) is not None}
    return TruthRow(path=m["path"], cohort_seed=seed, case_index=index, size=size, labels=labels,
                    params=params, physics=physics, lung_template=t["lung_template"], truth=truth,
                    masks=masks, root=root, line=line, fmt=fmt)


def case_row(cohort_seed: int, index: int, size: int,
             findings: Mapping[str, bool | Mapping[str, Any]] | None = None,
             physics: str | Mapping[str, Any] | None = "drawn", fmt: str = "png") -> TruthRow:
    """A row for case ``index`` of seed ``cohort_seed`` without files: the patient image
    ``index`` of ``generate_phantom_cohort(..., seed=cohort_seed)`` would be. ``findings``
    maps names to True (the case's own draw) or to attributes to fix (as in
    :func:`ideal_counterfactual`'s ``add``); ``physics``: ``"drawn"`` (the case's own
    physics draw, as in a cohort), None (neutral) or a mapping over neutral physics. ``truth``
    stays empty (nothing is rendered)."""
    if not isinstance(cohort_seed, (int, np.integer)) or isinstance(cohort_seed, bool) or cohort_seed < 0:
        raise ConfigError(f"cohort_seed must be a non-negative integer, got {cohort_seed!r}")
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or index < 0:
        raise ConfigError(f"index must be a non-negative integer, got {index!r}")
    if fmt not in ("png", "dcm"):
        raise ConfigError(f"fmt must be 'png' or 'dcm', got {fmt!r}")
    size = _size(size)
    streams = case_streams(int(cohort_seed), int(index))
    template = draw_anatomy(streams["anatomy"]).lung_template.rsplit("/", 1)[-1]
    params = _with_findings(int(cohort_seed), int(index), {}, findings or {}, ())
    if isinstance(physics, str):
        if physics != "drawn":
            raise ConfigError(f"physics must be 'drawn', None or a mapping, got {physics!r}")
        phys = draw_physics(streams["physics"])
    else:
        phys = resolve_physics(physics)
    if fmt == "png":
        phys["monochrome1"] = 0
    labels = {f: int(f in params) for f in FINDINGS}
    return TruthRow(path="", cohort_seed=int(cohort_seed), case_index=int(index), size=size, labels=labels,
                    params=params, physics=resolve_physics(phys), lung_template=template, fmt=fmt)


# ----------------------------------------------------------------------------- rendering


def rerender(row: TruthRow, size: int | None = None) -> PhantomSample:
    """The row's image as rendered (float32 in [0, 1], MONOCHROME2, before quantisation), with
    its masks, labels, truth and lung masks (``anatomy_masks``). At the row's size (default)
    ``quantize(image, bit_depth)`` is what the file stores; another ``size`` renders the same
    case at that size."""
    return _render(row, row.params, row.physics, size)


def stored(row: TruthRow, *, encoded: bool = True) -> np.ndarray:
    """The pixel array of the row's file (uint16), re-rendered: a PNG's 16-bit values (stored
    levels scaled to 65535), a DICOM's ``pixel_array`` (inverted when MONOCHROME1). With
    ``encoded=False``: the stored levels, ``quantize(rerender(row).image, bit_depth)``
    (MONOCHROME2, 0 .. 2^bit_depth - 1)."""
    bits = int(row.physics["bit_depth"])
    levels = quantize(rerender(row).image, bits)
    if not encoded:
        return levels
    if row.fmt == "png":
        return png16_pixels(levels, bits)
    return dicom_pixels(levels, bits, bool(row.physics["monochrome1"]))


def ideal_counterfactual(
    row: TruthRow,
    add: Mapping[str, bool | Mapping[str, Any]] | None = None,
    remove: Iterable[str] | str = (),
    physics: str | Mapping[str, Any] | None = "own",
    size: int | None = None,
) -> PhantomSample:
    """The same patient with findings added and / or removed, and nothing else changed.

    ``add`` maps finding names to True or to attributes to fix (effusion ``side`` right / left /
    both, ``volume``, ``meniscus``, ``density``; nodule ``side``, ``radius``, ``density``,
    ``position`` (u, v) in the mid-zone box; cardiomegaly ``ctr``; pneumothorax ``side``,
    ``rim``, ``lucency``; ranges: ``findings.PARAM_RANGES``). Attributes not given are the row's
    own for a finding it has (so ``add={"effusion": {"volume": 0.4}}`` on an effusion row
    changes only the volume), else the finding's own stream draw for this case. ``remove``:
    names to drop (absent ones are ignored). ``physics``: ``"own"`` (the row's), None (neutral:
    the clean image), or a mapping over the row's own physics (a full ``physics_variant(row, k)``
    or ``draw_physics(rng)`` replaces it; ``{"noise": 0}`` changes only the noise). The noise
    field stays the case's own. Returns a :class:`PhantomSample` (image before quantisation,
    masks, labels, truth, lung masks in ``anatomy_masks``, ``finding_params`` used).
    """
    removed = (remove,) if isinstance(remove, str) else tuple(remove)
    if isinstance(physics, str):
        if physics != "own":
            raise ConfigError(f"physics must be 'own', None or a mapping, got {physics!r}")
        phys = dict(row.physics)
    elif physics is None:
        phys = None
    elif isinstance(physics, Mapping):
        phys = {**row.physics, **physics}
    else:
        raise ConfigError(f"physics must be 'own', None or a mapping, got {type(physics).__name__}")
    params = _with_findings(row.cohort_seed, row.case_index, row.params, add or {}, removed)
    return _render(row, params, phys, size)


def physics_variant(row: TruthRow, k: int) -> dict[str, Any]:
    """Physics draw ``k`` (>= 0) for the row's case, from its own stream
    ``SeedSequence(cohort_seed, spawn_key=(2, case_index, k))``: reproducible, independent of
    the row's own draw, of the other cases and of the other ``k`` (``monochrome1`` 0 for PNG
    rows)."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
        raise ConfigError(f"physics variant k must be a non-negative integer, got {k!r}")
    seq = np.random.SeedSequence(row.cohort_seed, spawn_key=(PHYSICS_VARIANT_KEY, row.case_index, int(k)))
    phys = draw_physics(np.random.default_rng(seq))
    if row.fmt == "png":
        phys["monochrome1"] = 0
    return phys


def _with_findings(seed: int, index: int, own: Mapping[str, Mapping[str, Any]],
                   add: Mapping[str, Any], remove: tuple[str, ...]) -> dict[str, dict]:
    if not isinstance(add, Mapping):
        raise ConfigError(f"add must be a mapping of finding names, got {type(add).__name__}")
    for name in (*add, *remove):
        if name not in FINDINGS:
            raise ConfigError(f"unknown finding {name!r}: expected one of {', '.join(FINDINGS)}")
    both = sorted(set(add) & set(remove))
    if both:
        raise ConfigError(f"{', '.join(both)} both added and removed")
    params = {name: dict(p) for name, p in own.items() if name not in remove}
    streams = None
    for name, value in add.items():
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"add[{name!r}] must be True or a mapping of attributes, got {value!r} "
                              "(use remove= to drop a finding)")
        base = params.get(name)
        if base is None:  # the finding this patient would have had: its own stream's draw
            if streams is None:
                streams = case_streams(seed, index)
            base = draw_finding_params(name, streams[name])
        params[name] = check_finding_params(name, merge_overrides(name, base, value))
    return {name: params[name] for name in FINDINGS if name in params}


def _size(size: Any) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"size must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    return int(size)


def _render(row: TruthRow, params: Mapping[str, Mapping[str, Any]], physics: Mapping[str, Any] | None,
            size: int | None) -> PhantomSample:
    size = row.size if size is None else _size(size)
    # A procedural-lung row (made without torchxrayvision) re-renders procedurally even where
    # the real templates are installed: the anatomy stream's draws are the same either way.
    source = "procedural" if row.lung_template == "procedural" else "auto"
    sample = render_phantom(row.seed, size, {n: dict(p) for n, p in params.items()}, physics, lung_source=source)
    drawn = sample.anatomy["lung_template"].rsplit("/", 1)[-1]
    if drawn != row.lung_template:
        raise ConfigError(f"{row.where}: lung template {row.lung_template!r} is not the one drawn here "
                          f"({drawn!r}): the row was made with other torchxrayvision lung masks, so it "
                          "cannot be re-rendered exactly on this machine")
    return sample
