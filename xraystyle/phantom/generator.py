"""Procedural PA chest radiograph phantoms with exact ground truth: the toolkit's default data.

:func:`render_phantom` renders one case (anatomy, chosen findings, chosen physics);
:func:`generate_phantom_cohort` writes a whole cohort (images, masks, manifest, truth table).

Random streams, all derived from one seed with :class:`numpy.random.SeedSequence`:
anatomy, each finding's parameters, physics and the noise field are independent streams, so the
same seed with other physics re-renders the same patient, and switching a finding on or off
changes nothing else. In a cohort, image ``i`` uses ``SeedSequence(seed, spawn_key=(0, i))``:
the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .anatomy import AnatomyParams, draw_anatomy, render_anatomy
from .findings import (
    FINDINGS,
    PARAM_COLUMNS,
    TRUTH_COLUMNS,
    apply_findings,
    draw_finding_params,
    merge_overrides,
    params_to_columns,
)
from .lungs import warm_bank
from .physics import (
    NEUTRAL_PHYSICS,
    PHYSICS_RANGES,
    apply_physics,
    draw_physics,
    quantize,
    resolve_physics,
)
from .writer import write_dicom, write_mask, write_png16

__all__ = [
    "FINDINGS", "NEUTRAL_PHYSICS", "PHYSICS_RANGES", "PhantomSample", "case_seed", "draw_physics",
    "generate_phantom_cohort", "render_phantom",
]

DEFAULT_PREVALENCE = 0.3
MIN_SIZE, MAX_SIZE = 32, 1024
FORMATS = ("png", "dcm")
_WARM_BANK_FROM = 100  # cohorts at least this big decode the whole lung bank once, up front


@dataclass
class PhantomSample:
    """One rendered phantom.

    ``image``: float32 (size, size) in [0, 1], MONOCHROME2 (bright = attenuating), physics
    applied, before quantisation and encoding. ``attenuation``: the physics-free map
    (equal to ``image`` under neutral physics, up to clipping). ``lung_markings``: the vessel
    texture visible in it (hidden by fluid and pleural air). ``masks``: one bool array per
    finding, empty when absent. ``labels``: 1/0 per finding. ``truth``: recorded finding
    geometry (CTR always; side, volume, radius, ... for present findings). ``anatomy``:
    anatomy parameters. ``anatomy_masks``: lungs (patient's right / left), heart, body.
    """

    image: np.ndarray
    attenuation: np.ndarray
    lung_markings: np.ndarray
    masks: dict[str, np.ndarray]
    labels: dict[str, int]
    truth: dict[str, Any]
    anatomy: dict[str, Any]
    anatomy_masks: dict[str, np.ndarray]
    physics: dict[str, Any]
    finding_params: dict[str, dict] = field(default_factory=dict)


def _streams(seed_seq: np.random.SeedSequence) -> dict[str, np.random.Generator]:
    names = ("labels", "anatomy", "physics", "noise", *FINDINGS)
    return {n: np.random.default_rng(s) for n, s in zip(names, seed_seq.spawn(len(names)))}


def _seed_sequence(rng_or_seed: int | np.random.Generator | np.random.SeedSequence) -> np.random.SeedSequence:
    if isinstance(rng_or_seed, np.random.SeedSequence):
        # A copy: spawning advances a SeedSequence, and the same one must give the same patient.
        return np.random.SeedSequence(rng_or_seed.entropy, spawn_key=rng_or_seed.spawn_key,
                                      pool_size=rng_or_seed.pool_size)
    if isinstance(rng_or_seed, np.random.Generator):
        return np.random.SeedSequence(int(rng_or_seed.integers(0, 1 << 63)))
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool) and rng_or_seed >= 0:
        return np.random.SeedSequence(int(rng_or_seed))
    raise ConfigError(f"seed must be a non-negative integer or a numpy Generator, got {rng_or_seed!r}")


def _check_size(size: Any) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"size must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    return int(size)


def render_phantom(
    rng_or_seed: int | np.random.Generator | np.random.SeedSequence,
    size: int,
    findings_present: Mapping[str, bool | Mapping[str, Any]],
    physics: Mapping[str, Any] | None,
    *,
    lung_source: str = "auto",
) -> PhantomSample:
    """Render one phantom.

    ``rng_or_seed``: a non-negative int, a SeedSequence (copied, so the same object always
    gives the same patient; see :func:`case_seed`) or a Generator (one draw is taken from it).
    ``findings_present`` maps finding names to True/False, or to a dict of parameters to fix
    (implies present), e.g. ``{"effusion": {"side": "left", "volume": 0.3}, "nodule": True}``;
    missing names are absent. ``physics``: None for neutral physics (a clean image), or a dict
    overriding :data:`NEUTRAL_PHYSICS` keys (see :func:`draw_physics` for random ones).
    ``lung_source``: ``auto`` (real torchxrayvision masks when installed) or ``procedural``.
    """
    size = _check_size(size)
    if lung_source not in ("auto", "procedural"):
        raise ConfigError(f"lung_source must be 'auto' or 'procedural', got {lung_source!r}")
    streams = _streams(_seed_sequence(rng_or_seed))
    present = _present(findings_present)
    anatomy = draw_anatomy(streams["anatomy"], lung_source)
    params = {}
    for name in FINDINGS:
        drawn = draw_finding_params(name, streams[name])
        if name in present:
            params[name] = merge_overrides(name, drawn, present[name])
    return _render(anatomy, params, resolve_physics(physics), streams["noise"], size)


def _present(findings_present: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(findings_present, Mapping):
        kind = type(findings_present).__name__
        raise ConfigError(f"findings_present must be a mapping of finding names, got {kind}")
    out = {}
    for name, value in findings_present.items():
        if name not in FINDINGS:
            raise ConfigError(f"unknown finding {name!r}: expected one of {', '.join(FINDINGS)}")
        if isinstance(value, Mapping):
            out[name] = value
        elif value:
            out[name] = {}
    return out


def _render(anatomy: AnatomyParams, params: dict, physics: dict, noise_rng: np.random.Generator,
            size: int) -> PhantomSample:
    ctr = params["cardiomegaly"]["ctr"] if "cardiomegaly" in params else None
    layers = render_anatomy(anatomy, size, ctr=ctr)
    att, markings, masks, truth = apply_findings(layers, params)
    z = noise_rng.standard_normal((size, size), dtype=np.float32)
    image = apply_physics(att, physics, z)
    empty = np.zeros((size, size), bool)
    return PhantomSample(
        image=image,
        attenuation=att,
        lung_markings=markings,
        masks={name: masks.get(name, empty) for name in FINDINGS},
        labels={name: int(name in params) for name in FINDINGS},
        truth=truth,
        anatomy=asdict(anatomy),
        anatomy_masks={"lung_right": layers.lung_right, "lung_left": layers.lung_left,
                       "heart": layers.heart, "body": layers.body},
        physics=dict(physics),
        finding_params=params,
    )


# ----------------------------------------------------------------------------- cohorts


def _validate(n, size, seed, findings, fmt, prevalence, split, workers) -> tuple:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    size = _check_size(size)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(findings, str):
        findings = [f for f in findings.split(",") if f.strip()]
    findings = tuple(str(f).strip() for f in findings)
    unknown = [f for f in findings if f not in FINDINGS]
    if unknown:
        raise ConfigError(
            f"unknown finding(s) {', '.join(map(repr, unknown))}: expected some of {', '.join(FINDINGS)}"
        )
    if len(set(findings)) != len(findings):
        raise ConfigError(f"findings listed twice: {', '.join(findings)}")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    prev = {f: DEFAULT_PREVALENCE for f in findings}
    for key, value in (prevalence or {}).items():
        if key not in findings:
            raise ConfigError(
                f"prevalence given for {key!r}, which is not among the findings ({', '.join(findings)})"
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(f"prevalence of {key} must be a number in [0, 1], got {value!r}")
        prev[key] = float(value)
    try:
        split = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise ConfigError(f"split must be three fractions (train, val, test), got {split!r}") from None
    if len(split) != 3 or min(split) < 0 or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split must be three fractions >= 0 summing to 1, got {split!r}")
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    return int(n), size, int(seed), findings, prev, split, int(workers)


def _splits(n: int, seed: int, split: tuple[float, float, float]) -> list[str]:
    """Exact split sizes (rounded), assigned by a seeded permutation: one patient per image,
    so this is a patient-level split."""
    n_train = int(math.floor(split[0] * n + 0.5))
    n_val = min(int(math.floor(split[1] * n + 0.5)), n - n_train)
    labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return labels[rng.permutation(n)].tolist()


@dataclass(frozen=True)
class _Job:
    out_dir: str
    index: int
    width: int
    size: int
    seed: int
    findings: tuple[str, ...]
    prevalence: tuple[tuple[str, float], ...]
    fmt: str
    split: str


# Truth-table columns that locate a case and its lung masks (after the geometry columns, before
# the per-finding PARAM_COLUMNS): with the manifest's labels and phys_* values they re-render it.
TRUTH_CASE_COLUMNS = ("cohort_seed", "case_index", "size", "mask_lung_right", "mask_lung_left")


def case_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Seed of cohort image ``index``: ``render_phantom(case_seed(seed, i), size, labels,
    physics)`` with the manifest's labels and ``phys_*`` values re-renders that image exactly,
    and with other physics or findings renders the same patient differently."""
    return np.random.SeedSequence(seed, spawn_key=(0, index))


def case_streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """The random streams of cohort image ``index`` (independent of n and of the workers)."""
    return _streams(case_seed(seed, index))


def draw_labels(streams: dict[str, np.random.Generator], findings: Iterable[str],
                prevalence: Mapping[str, float]) -> set[str]:
    """Present findings of one case: one uniform per known finding, in a fixed order, so the
    labels of a finding do not depend on which other findings the cohort has."""
    draws = dict(zip(FINDINGS, streams["labels"].random(len(FINDINGS))))
    return {f for f in findings if draws[f] < prevalence[f]}


def _make_one(job: _Job) -> tuple[dict, dict]:
    """Render and write image ``job.index``; returns its manifest row and truth row."""
    streams = case_streams(job.seed, job.index)
    present = draw_labels(streams, job.findings, dict(job.prevalence))
    anatomy = draw_anatomy(streams["anatomy"])
    params = {}
    for name in FINDINGS:
        drawn = draw_finding_params(name, streams[name])
        if name in present:
            params[name] = drawn
    physics = draw_physics(streams["physics"])
    if job.fmt == "png":
        physics["monochrome1"] = 0  # PNG has no photometric tag: always stored MONOCHROME2
    sample = _render(anatomy, params, physics, streams["noise"], job.size)

    out = Path(job.out_dir)
    pid = f"phantom-{job.index:0{job.width}d}"
    rel = f"images/{pid}.{job.fmt}"
    stored = quantize(sample.image, physics["bit_depth"])
    if job.fmt == "png":
        write_png16(out / rel, stored, physics["bit_depth"])
    else:
        ident = {"index": f"{job.index:0{job.width}d}", "patient_id": pid, "study_id": f"{pid}-1",
                 "sex": anatomy.sex, "age": anatomy.age, "uid_seed": (job.seed, job.index)}
        write_dicom(out / rel, stored, physics, ident)
    row: dict[str, Any] = {"path": rel, "patient_id": pid, "study_id": f"{pid}-1", "view": "PA",
                           "split": job.split, "sex": anatomy.sex, "age": anatomy.age}
    for f in job.findings:
        row[f] = sample.labels[f]
    for f in job.findings:
        if sample.labels[f]:
            mrel = f"masks/{pid}_{f}.png"
            write_mask(out / mrel, sample.masks[f])
            row[f"mask_{f}"] = mrel
        else:
            row[f"mask_{f}"] = ""
    for key, value in physics.items():
        row[f"phys_{key}"] = value
    truth = {"path": rel, "lung_template": anatomy.lung_template.rsplit("/", 1)[-1], **sample.truth,
             "cohort_seed": job.seed, "case_index": job.index, "size": job.size}
    for side in ("right", "left"):  # the lung masks, whatever the findings (xraystyle.phantom.ideal)
        mrel = f"lungs/{pid}_{side}.png"
        write_mask(out / mrel, sample.anatomy_masks[f"lung_{side}"])
        truth[f"mask_lung_{side}"] = mrel
    for name, p in params.items():
        truth.update(params_to_columns(name, p))
    return row, truth


def generate_phantom_cohort(
    out_dir: str | Path,
    n: int,
    size: int = 256,
    seed: int = 0,
    findings: Iterable[str] = ("effusion", "nodule", "cardiomegaly", "pneumothorax"),
    fmt: str = "png",
    prevalence: dict[str, float] | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    workers: int = 1,
    *,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a phantom cohort under ``out_dir`` and return the manifest path.

    Layout: ``images/phantom-00042.png|dcm``, ``masks/phantom-00042_<finding>.png`` (8-bit,
    0/255, written only for present findings), ``manifest.csv`` (columns ``path, patient_id,
    study_id, view, split, sex, age``, one 1/0 column per finding, ``mask_<finding>`` (blank
    when absent), ``phys_<parameter>``), ``lungs/phantom-00042_right|left.png`` (the lung masks of
    every image, 8-bit 0/255) and ``phantom_truth.csv`` (per image: lung template, CTR, each present finding's
    geometry, then cohort seed, case index, size, lung-mask paths and each present finding's
    exact renderer inputs ``param_*``; read back by :func:`xraystyle.phantom.ideal.read_truth`). Labels are drawn independently per image with
    the given ``prevalence`` (default 0.3 each). ``progress`` is called with the number of
    images finished after each one. Files of an earlier, larger cohort in the same folder are
    left in place but are not in the new manifest.
    """
    n, size, seed, findings, prev, split, workers = _validate(
        n, size, seed, findings, fmt, prevalence, split, workers
    )
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "lungs").mkdir(parents=True, exist_ok=True)
    if n >= _WARM_BANK_FROM:
        warm_bank()
    width = max(5, len(str(n - 1)))
    splits = _splits(n, seed, split)
    prev_items = tuple(sorted(prev.items()))
    jobs = [_Job(str(out), i, width, size, seed, findings, prev_items, fmt, splits[i]) for i in range(n)]
    results = []
    if workers == 1:
        for i, job in enumerate(jobs):
            results.append(_make_one(job))
            if progress:
                progress(i + 1)
    else:
        # The platform's default start method (fork on Linux): unlike spawn it works from
        # notebooks, stdin and scripts without a __main__ guard; workers touch no threads.
        with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=get_context()) as pool:
            chunk = max(1, min(16, n // (4 * workers)))
            for i, result in enumerate(pool.map(_make_one, jobs, chunksize=chunk)):
                results.append(result)
                if progress:
                    progress(i + 1)
    manifest = pd.DataFrame([r for r, _ in results])
    truth = pd.DataFrame([t for _, t in results])
    order = ["path", "lung_template", "ctr", "heart_width_px", "thorax_width_px"]
    order += [c for f in findings for c in TRUTH_COLUMNS.get(f, ())]
    order += [*TRUTH_CASE_COLUMNS, *(c for f in findings for c in PARAM_COLUMNS[f])]
    truth = truth.reindex(columns=order)  # same columns whichever findings occur
    for col in truth.columns:  # integer columns with blanks would otherwise be written as 12.0
        values = [t[col] for _, t in results if col in t]
        if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            truth[col] = truth[col].astype("Int64")
    manifest_path = out / "manifest.csv"
    manifest.to_csv(manifest_path, index=False, lineterminator="\n")
    truth.to_csv(out / "phantom_truth.csv", index=False, lineterminator="\n")
    return manifest_path
