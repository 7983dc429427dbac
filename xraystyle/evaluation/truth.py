"""Truth benchmark on the phantom: a generator's counterfactuals measured against the ideal
counterfactual of every source, with degenerate baselines scored by the same code and bootstrap
confidence intervals over sources (docs/evaluation.md, "Truth benchmark (library)").

- A *translator* (:class:`Translator`) turns a source into outputs in the model's [-1, 1] space:
  ``latent(src, target, k)`` (k random styles) and ``reference(src, refs, target)`` (one output
  per reference). :class:`ModelTranslator` wraps a trained model (the ``run``); the baselines
  ``identity``, ``constant-style``, ``exposure-shift``, ``noise`` and ``ideal`` are translators
  too, so every model goes through one code path.
- A *task* (:class:`Task`) is a source label set and a target: the single-domain pair
  ``normal->effusion`` adds the effusion, ``effusion->normal`` removes it. Finding-set tasks are
  more :class:`Task` values (the loop reads ``add`` / ``remove``).
- A *metric* is one small object with ``update(record)`` (one source's outputs and truth) and
  ``aggregate()`` (value, bootstrap 95 % interval over sources, n), in the spirit of MONAI's
  ``Cumulative`` metrics: a new metric is one class.

:func:`run_truth_benchmark` returns rows ``{"model", "task", "mode", "metric", "value",
"ci95": [lo, hi], "n"}`` (``value`` / ``ci95`` None where the metric is undefined).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import spearmanr, wasserstein_distance

from ..errors import XrayStyleError
from ..streams import Stream

log = logging.getLogger(__name__)

__all__ = ["METRICS", "TASKS", "Case", "ModelTranslator", "Task", "Translator", "baselines", "model_tasks",
           "run_truth_benchmark"]

N_BOOT = 1000
EFFUSION_SIDES = ("right", "left", "both")
# The phantom's effusion prior (findings.draw_finding_params): side right 0.40, left 0.35, both
# 0.25; volume U[0.15, 0.5].
SIDE_PRIOR = {"none": 0.0, "right": 0.40, "left": 0.35, "both": 0.25}
VOLUME_PRIOR = (0.15, 0.5)
RATIO_FLOOR = 1e-3  # phys_attr_ratio: (sd_phys + floor) / (sd_attr + floor): an output that never moves scores 1


# ----------------------------------------------------------------------------- cases and tasks


@dataclass
class Case:
    """One image handed to a translator: ``image`` (S, S) float32 in the model's space, the
    phantom row it re-renders from and, for references, the effusion attributes it shows
    (``attrs``: renderer parameters, None for a normal image)."""

    row: Any  # xraystyle.phantom.ideal.TruthRow
    image: np.ndarray
    attrs: dict | None = None
    index: int = 0  # the source's position in the benchmark (seeds the baselines' draws)


@dataclass(frozen=True)
class Task:
    """Sources with labels ``source`` (finding -> 0/1), translated to ``target`` (label text),
    which adds the findings ``add`` and removes ``remove``."""

    name: str
    source: Mapping[str, int]
    target: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "add" if self.add else "remove"

    def matches(self, row) -> bool:
        """Whether a phantom row is a source of this task."""
        return all(int(row.labels.get(f, 0)) == v for f, v in self.source.items())


TASKS = (Task("normal->effusion", {"effusion": 0}, "effusion", add=("effusion",)),
         Task("effusion->normal", {"effusion": 1}, "normal", remove=("effusion",)))


def model_tasks(labels) -> tuple[Task, ...]:
    """The tasks for a model's :class:`~xraystyle.models.labels.LabelSpace`. Single-domain: the
    pair normal <-> effusion. Multi-label: effusion added to and removed from the empty set and
    from each other finding of the model alone (``cardiomegaly->effusion+cardiomegaly``, sets in
    label order), so a finding set is one more source / target beside the pair."""
    from ..phantom.findings import FINDINGS

    names = list(labels.names)
    if "effusion" not in names:
        raise XrayStyleError(f"the truth benchmark scores effusion; the model's labels are {', '.join(names)}")
    if not labels.multi_label:
        if "normal" not in names:
            raise XrayStyleError("the truth benchmark translates normal <-> effusion; the model has no 'normal' domain")
        return TASKS
    unknown = [f for f in names if f not in FINDINGS]
    if unknown:
        raise XrayStyleError(f"the phantom does not draw {', '.join(unknown)}: the truth benchmark needs phantom findings")
    tasks = []
    for context in [()] + [(f,) for f in names if f != "effusion"]:
        without = {f: int(f in context) for f in names}
        text_without = labels.text(labels.edit(list(context)))
        text_with = labels.text(labels.edit([*context, "effusion"]))
        tasks.append(Task(f"{text_without}->{text_with}", without, text_with, add=("effusion",)))
        tasks.append(Task(f"{text_with}->{text_without}", {**without, "effusion": 1}, text_without,
                          remove=("effusion",)))
    return tuple(tasks)


@runtime_checkable
class Translator(Protocol):
    """What the benchmark needs of a model: outputs (n, S, S) in the model's [-1, 1] space."""

    def latent(self, src: Case, target: str, k: int) -> np.ndarray: ...

    def reference(self, src: Case, refs: Sequence[Case], target: str) -> np.ndarray: ...


# A translator may also have ``style_codes(images, target, probes) -> (N, D)``: its style code for
# each reference image (style_probe.py reads them); without it the probe rows are None.


# ----------------------------------------------------------------------------- images


def _lung_source(row) -> str:
    return "procedural" if row.lung_template == "procedural" else "auto"


def prepare(sample, preprocess) -> np.ndarray:
    """A rendered phantom sample as its cohort file's levels, preprocessed to the model's space."""
    from ..phantom.physics import quantize
    from ..transforms import preprocess_array

    levels = quantize(sample.image, int(sample.physics["bit_depth"])).astype(np.float32)
    return np.asarray(preprocess_array(levels, None, preprocess)["image"][0], dtype=np.float32)


def _mask(sample, name: str = "effusion") -> np.ndarray:
    m = sample.masks.get(name)
    return np.zeros(sample.image.shape, bool) if m is None else np.asarray(m, bool)


class _Renderer:
    """Ideal renders of the benchmark's rows in the model's space, cached."""

    def __init__(self, preprocess):
        self.preprocess = preprocess
        self._cache: dict = {}

    def render(self, row, add: Mapping | None = None, remove: Sequence[str] = (), physics="own"):
        from ..phantom.ideal import ideal_counterfactual

        key = (row.cohort_seed, row.case_index, repr(sorted((add or {}).items())), tuple(remove),
               repr(sorted(physics.items())) if isinstance(physics, Mapping) else physics)
        if key not in self._cache:
            s = ideal_counterfactual(row, add=add, remove=remove, physics=physics)
            self._cache[key] = (prepare(s, self.preprocess), _mask(s))
        return self._cache[key]


# ----------------------------------------------------------------------------- translators


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), Stream.TRUTH, *(int(k) for k in key)]))


class ModelTranslator:
    """A trained model (:class:`~xraystyle.trained.TrainedModel`): G(x, F(z, y)) and G(x, E(ref, y))
    with the model's fixed normal style. ``style="mean"`` is the ``constant-style`` baseline:
    one mean style per target for every source, z and reference (F over 1024 z, or F(0, y)
    where the model fixes the style)."""

    def __init__(self, model, seed: int = 0, style: str = "sampled"):
        import torch

        self.model, self.seed, self.style = model, int(seed), style
        self.size = int(model.size)
        self.preprocess = model.preprocess
        self._torch = torch
        self._mean: dict[str, Any] = {}
        self._calls = 0

    def constant_style(self) -> "ModelTranslator":
        return ModelTranslator(self.model, self.seed, style="mean")

    def _y(self, target: str, n: int):
        y = self.model.labels.parse(target).to(self.model.device)
        return y.repeat(n, *([1] * (y.ndim - 1)))

    def _x(self, image: np.ndarray, n: int):
        t = self._torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.model.device)
        return t[None, None].repeat(n, 1, 1, 1)

    def _mean_style(self, target: str):
        if target not in self._mean:
            torch, nets = self._torch, self.model.nets
            y = self._y(target, 1024)
            fixed = self.model.fixed(y)
            g = torch.Generator().manual_seed(self.seed)
            z = torch.randn(1024, self.model.latent_dim, generator=g).to(self.model.device)
            if fixed is not None and bool(fixed.all()):
                z = torch.zeros_like(z)
            with torch.no_grad():
                self._mean[target] = nets["F"](z, y).mean(0, keepdim=True)
        return self._mean[target]

    def _run(self, x, s) -> np.ndarray:
        with self._torch.no_grad():
            out = self.model.nets["G"](x, s).clamp(-1, 1)
        return out[:, 0].float().cpu().numpy()

    def latent(self, src: Case, target: str, k: int) -> np.ndarray:
        from ..models.translate import translate_latent

        x, y = self._x(src.image, k), self._y(target, k)
        if self.style == "mean":
            return self._run(x, self._mean_style(target).expand(k, -1))
        self._calls += 1
        g = self._torch.Generator().manual_seed(self.seed * 1_000_003 + self._calls)
        z = self._torch.randn(k, self.model.latent_dim, generator=g).to(self.model.device)
        with self._torch.no_grad():
            out = translate_latent(self.model.nets, x, y, z, self.model.fixed(y))
        return out[:, 0].float().cpu().numpy()

    def reference(self, src: Case, refs: Sequence[Case], target: str) -> np.ndarray:
        from ..models.translate import translate_reference

        n = len(refs)
        x, y = self._x(src.image, n), self._y(target, n)
        if self.style == "mean":
            return self._run(x, self._mean_style(target).expand(n, -1))
        r = self._torch.from_numpy(np.stack([c.image for c in refs]).astype(np.float32))[:, None]
        with self._torch.no_grad():
            out = translate_reference(self.model.nets, x, r.to(self.model.device), y, self.model.fixed(y))
        return out[:, 0].float().cpu().numpy()

    def style_codes(self, images: np.ndarray, target: str, probes=None) -> np.ndarray:
        """E(x_ref, y) for each image (the mean style for ``constant-style``)."""
        if self.style == "mean":
            return self._mean_style(target).float().cpu().numpy().repeat(len(images), 0)
        codes = []
        for i in range(0, len(images), 128):
            x = self._torch.from_numpy(np.ascontiguousarray(images[i:i + 128], np.float32))[:, None]
            with self._torch.no_grad():
                codes.append(self.model.nets["E"](x.to(self.model.device), self._y(target, len(x))).float().cpu())
        return self._torch.cat(codes).numpy()


class IdentityTranslator:
    """Output = source."""

    def latent(self, src, target, k):
        return np.repeat(src.image[None], k, axis=0)

    def reference(self, src, refs, target):
        return np.repeat(src.image[None], len(refs), axis=0)

    def style_codes(self, images, target, probes=None):
        from .style_probe import pooled_image_codes

        return pooled_image_codes(images)


class ExposureShiftTranslator:
    """A model whose style is the exposure. Latent: the source globally re-exposed
    (attributes.reexpose_output), a fresh draw per output; reference: the source's grey levels
    matched to the reference's mean and sd (its exposure, nothing of its finding)."""

    def __init__(self, seed: int = 0):
        self.seed, self._calls = int(seed), 0

    def _out(self, src, n):
        from ..phantom.attributes import reexpose_output

        self._calls += 1
        rng = _rng(self.seed, 1, src.index, self._calls)
        return np.stack([reexpose_output(src.image, rng) for _ in range(n)])

    def latent(self, src, target, k):
        return self._out(src, k)

    def reference(self, src, refs, target):
        x = src.image.astype(np.float64)
        z = (x - x.mean()) / (x.std() + 1e-6)
        return np.stack([np.clip(z * r.image.std() + r.image.mean(), -1, 1) for r in refs]).astype(np.float32)

    def style_codes(self, images, target, probes=None):
        from .style_probe import exposure_codes

        return exposure_codes(images)


class NoiseTranslator:
    """Pure noise (attributes.noise_output)."""

    def __init__(self, seed: int = 0):
        self.seed, self._calls = int(seed), 0

    def _out(self, src, n):
        from ..phantom.attributes import noise_output

        self._calls += 1
        rng = _rng(self.seed, 2, src.index, self._calls)
        return np.stack([noise_output(src.image.shape[-1], rng) for _ in range(n)])

    def latent(self, src, target, k):
        return self._out(src, k)

    def reference(self, src, refs, target):
        return self._out(src, len(refs))

    def style_codes(self, images, target, probes=None):
        from .style_probe import noise_codes

        return noise_codes(len(images), self.seed)


class IdealTranslator:
    """The ideal counterfactual under the source's own physics, preprocessed like the source.
    Latent: effusion side and volume drawn from the phantom's prior (meniscus and density the
    patient's own draw); reference: the reference's attributes. A target without a finding
    removes it. ``task_of(target)`` gives the findings to add / remove."""

    def __init__(self, renderer: _Renderer, tasks: Sequence[Task], seed: int = 0):
        self.renderer, self.seed, self._calls = renderer, int(seed), 0
        self._tasks = {t.target: t for t in tasks}

    def _render(self, src, target, attrs):
        task = self._tasks[target]
        if task.kind == "remove":
            return self.renderer.render(src.row, remove=task.remove)[0]
        return self.renderer.render(src.row, add={"effusion": attrs})[0]

    def latent(self, src, target, k):
        self._calls += 1
        rng = _rng(self.seed, 3, src.index, self._calls)
        out = []
        for _ in range(k):
            side = rng.choice(EFFUSION_SIDES, p=[SIDE_PRIOR[s] for s in EFFUSION_SIDES])
            volume = round(float(rng.uniform(*VOLUME_PRIOR)), 5)
            out.append(self._render(src, target, {"side": str(side), "volume": volume}))
        return np.stack(out)

    def reference(self, src, refs, target):
        return np.stack([self._render(src, target, r.attrs or {}) for r in refs])

    def style_codes(self, images, target, probes=None):
        """The true attributes of the probe renders (volume, side one-hot, meniscus, density)."""
        if probes is None or len(probes) != len(images):
            raise XrayStyleError("the ideal's style codes are the probe renders' attributes: pass the ProbeSet")
        return probes.attrs


def baselines(renderer: _Renderer, tasks: Sequence[Task], seed: int,
              model_translator: ModelTranslator | None) -> dict[str, Translator]:
    out: dict[str, Translator] = {"identity": IdentityTranslator()}
    if model_translator is not None and hasattr(model_translator, "constant_style"):
        out["constant-style"] = model_translator.constant_style()
    out["exposure-shift"] = ExposureShiftTranslator(seed)
    out["noise"] = NoiseTranslator(seed)
    out["ideal"] = IdealTranslator(renderer, tasks, seed)
    return out


# ----------------------------------------------------------------------------- one source's record


@dataclass
class Record:
    """One source, task, mode and translator: outputs, their attributes, the ideals they are
    compared with and the finding region (model space)."""

    task: Task
    mode: str
    src: Case
    baseline: Any  # PatientBaseline
    outputs: np.ndarray  # (n, S, S)
    attributes: list  # Attributes per output
    ideals: np.ndarray  # (n, S, S): the ideal each output is compared with
    regions: np.ndarray  # (n, S, S) bool: finding region (dilated union of source and ideal masks)
    ideal_removed: bool | None = None  # remove tasks: the oracle reads the ideal removal as removed
    ref_volumes: np.ndarray | None = None  # reference add: the references' true volumes
    ref_sides: list[str] | None = None
    phys_outputs: np.ndarray | None = None  # (M, S, S): one reference under M physics draws
    phys_exposure: np.ndarray | None = None  # (M,) the reference draws' exposure
    extra: dict = field(default_factory=dict)

    @cached_property
    def ssim_maps(self) -> np.ndarray:
        from skimage.metrics import structural_similarity

        return np.stack([structural_similarity(o, i, data_range=2.0, full=True)[1]
                         for o, i in zip(self.outputs.astype(np.float64), self.ideals.astype(np.float64))])

    @cached_property
    def l1_maps(self) -> np.ndarray:
        return np.abs(self.outputs - self.ideals)

    @cached_property
    def phys_changes(self) -> np.ndarray:
        """(M,) each physics output's global exposure change (``exposure_change``)."""
        return np.array([exposure_change(o, self.src.image, self.baseline.reference) for o in self.phys_outputs])


# ----------------------------------------------------------------------------- metrics


class Metric(ABC):
    """A cumulative metric: ``update(record)`` stores one source's item (or nothing where the
    metric is undefined for it), ``aggregate()`` gives value, bootstrap 95 % interval over
    sources (``N_BOOT`` resamples, fixed seed) and n (sources). Subclasses define ``name``,
    ``kinds`` (add / remove), ``modes`` and ``item``; ``statistic`` (default: mean) turns
    items into the value."""

    name = ""
    kinds: tuple[str, ...] = ("add", "remove")
    modes: tuple[str, ...] = ("latent", "reference")
    better = "lower"  # or "higher": which way is better (for readers and tests)

    def __init__(self, seed: int = 0, n_boot: int = N_BOOT):
        self.seed, self.n_boot = seed, n_boot
        self.items: list = []

    @classmethod
    def applies(cls, task: Task, mode: str) -> bool:
        return task.kind in cls.kinds and mode in cls.modes

    @abstractmethod
    def item(self, r: Record):
        """This metric's value for one source (None where it is undefined for that source)."""

    def statistic(self, items: list) -> float:
        return float(np.mean(items))

    def update(self, r: Record) -> None:
        v = self.item(r)
        if v is not None and (not isinstance(v, float) or math.isfinite(v)):
            self.items.append(v)

    def aggregate(self) -> dict:
        n = len(self.items)
        if n == 0:
            return {"value": None, "ci95": [None, None], "n": 0}
        value = self.statistic(self.items)
        rng = np.random.default_rng(self.seed)
        boots = [self.statistic([self.items[i] for i in rng.integers(0, n, n)]) for _ in range(self.n_boot)]
        boots = np.asarray([b for b in boots if math.isfinite(b)])
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots.size else (math.nan, math.nan))
        return {"value": _num(value), "ci95": [_num(lo), _num(hi)], "n": n}


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _region_mean(maps: np.ndarray, regions: np.ndarray, inside: bool | None) -> float | None:
    vals = []
    for m, reg in zip(maps, regions):
        sel = np.ones(reg.shape, bool) if inside is None else (reg if inside else ~reg)
        if sel.any():
            vals.append(float(m[sel].mean()))
    return float(np.mean(vals)) if vals else None


class CfL1(Metric):
    name, better, where = "cf_l1_vs_ideal", "lower", None

    def item(self, r):
        return _region_mean(r.l1_maps, r.regions, self.where)


class CfL1Inside(CfL1):
    name, where = "cf_l1_vs_ideal_inside", True


class CfL1Outside(CfL1):
    name, where = "cf_l1_vs_ideal_outside", False


class CfSsim(Metric):
    name, better, where = "cf_ssim_vs_ideal", "higher", None

    def item(self, r):
        return _region_mean(r.ssim_maps, r.regions, self.where)


class CfSsimInside(CfSsim):
    name, where = "cf_ssim_vs_ideal_inside", True


class CfSsimOutside(CfSsim):
    name, where = "cf_ssim_vs_ideal_outside", False


class AddValidity(Metric):
    """Share of outputs the oracle reads as this patient (``valid``) with fluid."""

    name, better, kinds = "add_validity", "higher", ("add",)

    def item(self, r):
        return float(np.mean([a.valid and a.side != "none" for a in r.attributes]))


class RemoveValidity(Metric):
    """Share of outputs read as this patient without fluid, over the share of sources whose
    ideal removal render reads so (a ratio of sums over the resampled sources)."""

    name, better, kinds = "remove_validity", "higher", ("remove",)

    def item(self, r):
        return (float(np.mean([a.valid and a.side == "none" for a in r.attributes])), float(bool(r.ideal_removed)))

    def statistic(self, items):
        den = sum(d for _, d in items)
        return sum(v for v, _ in items) / den if den else math.nan


def _spearman(a, b) -> float:
    """Spearman's rho; 0 where either side is constant (no rank information)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


class RefVolumeSpearman(Metric):
    """Within-source Spearman of the references' true volume with the outputs' measured volume."""

    name, better, kinds, modes = "ref_volume_spearman", "higher", ("add",), ("reference",)

    def item(self, r):
        return _spearman(r.ref_volumes, [a.fluid_volume for a in r.attributes])


class RefSideAccuracy(Metric):
    name, better, kinds, modes = "ref_side_accuracy", "higher", ("add",), ("reference",)

    def item(self, r):
        return float(np.mean([a.side == s for a, s in zip(r.attributes, r.ref_sides)]))


def exposure_change(out: np.ndarray, source: np.ndarray, reference: np.ndarray) -> float:
    """An output's global exposure change: its mean change from the source over the ``reference``
    pixels (the patient baseline's: no finding touches them)."""
    return float((out[reference] - source[reference]).mean())


class PhysTransferSpearman(Metric):
    """Within-source Spearman of one reference's exposure (M physics draws) with the output's
    global exposure change (mean change over pixels no finding touches); the value is the
    absolute mean over sources. Ideal 0; an output that follows the reference's exposure 1. Signed
    per source, so that an output wobbling at random across the draws (a nearly invariant
    style) averages to 0 instead of scoring the |rho| of noise (~0.45 at M = 4)."""

    name, better, modes = "phys_transfer_spearman", "lower", ("reference",)

    def item(self, r):
        return _spearman(r.phys_exposure, r.phys_changes)

    def statistic(self, items):
        return abs(float(np.mean(items)))


class PhysTransferRange(Metric):
    """How far the output's global exposure change (as ``phys_transfer_spearman``) moves across
    the M physics draws of one reference: max - min, in the model's [-1, 1] units (an 8-bit
    display's grey level is 2 / 255 = 0.0078); mean over sources. The Spearman above says whether
    the output follows the reference's exposure, whatever the size; this says by how much."""

    name, better, modes = "phys_transfer_range", "lower", ("reference",)

    def item(self, r):
        return float(np.ptp(r.phys_changes))


class PhysAttrRatio(Metric):
    """Output variation (mean per-pixel sd) across M physics draws of one reference, over its
    variation across references with different attributes, each plus RATIO_FLOOR; ideal 0, an
    output that never moves 1."""

    name, better, kinds, modes = "phys_attr_ratio", "lower", ("add",), ("reference",)

    def item(self, r):
        phys = float(r.phys_outputs.std(axis=0).mean())
        attr = float(r.outputs.std(axis=0).mean())
        return (phys + RATIO_FLOOR) / (attr + RATIO_FLOOR)


class LatentVolumeW1(Metric):
    """Wasserstein-1 between the latent outputs' measured volumes (0 where no fluid or not this
    patient) and the phantom's volume prior U[0.15, 0.5] (pooled over the resampled sources)."""

    name, better, kinds, modes = "latent_volume_w1", "lower", ("add",), ("latent",)
    _prior = np.linspace(*VOLUME_PRIOR, 201)

    def item(self, r):
        return [a.fluid_volume if a.valid else 0.0 for a in r.attributes]

    def statistic(self, items):
        return float(wasserstein_distance(np.concatenate(items), self._prior))


class LatentSideTV(Metric):
    """Total-variation distance between the latent outputs' measured side distribution (none /
    right / left / both; not this patient counts as none) and the phantom's side prior."""

    name, better, kinds, modes = "latent_side_tv", "lower", ("add",), ("latent",)

    def item(self, r):
        return [a.side if a.valid else "none" for a in r.attributes]

    def statistic(self, items):
        sides = [s for it in items for s in it]
        return 0.5 * sum(abs(sides.count(k) / len(sides) - p) for k, p in SIDE_PRIOR.items())


METRICS: tuple[type[Metric], ...] = (
    CfL1, CfL1Inside, CfL1Outside, CfSsim, CfSsimInside, CfSsimOutside, AddValidity, RemoveValidity,
    RefVolumeSpearman, RefSideAccuracy, PhysTransferSpearman, PhysTransferRange, PhysAttrRatio, LatentVolumeW1,
    LatentSideTV,
)


# ----------------------------------------------------------------------------- the benchmark


def _reference_attrs(n: int) -> list[dict]:
    """Stratified side x volume: sides cycle right / left / both, volumes spread over the prior."""
    lo, hi = VOLUME_PRIOR
    return [{"side": EFFUSION_SIDES[j % 3], "volume": round(lo + (hi - lo) * (j + 0.5) / n, 5)} for j in range(n)]


def _check_int(name: str, v, lo: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise XrayStyleError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _load_rows(rows, size: int) -> list:
    from ..phantom.ideal import TruthRow, read_truth

    if not isinstance(rows, (str, Path)) and isinstance(getattr(rows, "path", None), Path):
        rows = rows.path  # a loaded Manifest
    if isinstance(rows, (str, Path)):
        rows = read_truth(rows)
    try:
        rows = list(rows)
    except TypeError:
        raise XrayStyleError(f"rows: expected phantom truth rows or a phantom cohort, got {type(rows).__name__}") from None
    if not rows or not all(isinstance(r, TruthRow) for r in rows):
        raise XrayStyleError("rows: expected phantom truth rows (read_truth of a phantom cohort) or a cohort folder / "
                             "manifest; got " + ("nothing" if not rows else type(rows[0]).__name__))
    bad = [r for r in rows if r.size != size]
    if bad:
        raise XrayStyleError(f"{bad[0].where}: the cohort is {bad[0].size} px but the benchmark runs at {size} px: "
                             "use a phantom cohort made at the run's image size")
    return rows


def run_truth_benchmark(model_or_translator, rows, *, size: int, n_sources: int, n_styles: int, seed: int,
                        oracle, progress: bool | Callable[[str], None] = False, n_physics: int = 4,
                        tasks: Sequence[Task] | None = None, n_boot: int = N_BOOT,
                        probe_patients: int = 9) -> list[dict]:
    """Score ``model_or_translator`` (a TrainedModel, or any :class:`Translator`: the ``run``)
    and the baselines on the phantom ``rows`` (TruthRows or a phantom cohort path) at ``size``
    px: ``n_sources`` sources per task, ``n_styles`` latent styles / stratified references per
    source, ``n_physics`` physics draws of one reference; the attribute ``oracle`` must be
    calibrated at ``size``. A translator that is not a model gets no ``constant-style``
    baseline unless it has ``constant_style()``. ``tasks``: default :func:`model_tasks` of the
    model (TASKS for a translator). The style probes render ``probe_patients`` x 60 fresh images
    (style_probe.py; 0: no probes)."""
    from ..phantom.attributes import AttributeOracle, patient_baseline
    from ..phantom.ideal import physics_variant
    from ..transforms import PreprocessConfig

    size = _check_int("size", size, 16)
    n_sources = _check_int("n_sources", n_sources, 2)
    n_styles = _check_int("n_styles", n_styles, 2)
    n_physics = _check_int("n_physics", n_physics, 2)
    seed = _check_int("seed", seed, 0)
    probe_patients = _check_int("probe_patients", probe_patients, 0)
    if 0 < probe_patients < 3:
        raise XrayStyleError(f"probe_patients must be 0 or at least 3 (folds split by patient), got {probe_patients}")
    if not isinstance(oracle, AttributeOracle):
        raise XrayStyleError(f"oracle: expected an AttributeOracle (calibrate_attribute_oracle), got {type(oracle).__name__}")
    if oracle.size != size:
        raise XrayStyleError(f"the attribute oracle was calibrated at {oracle.size} px but the benchmark runs at {size} px")
    rows = _load_rows(rows, size)
    say = progress if callable(progress) else (log.info if progress else (lambda _msg: None))

    if isinstance(model_or_translator, Translator):
        run = model_or_translator
    elif hasattr(model_or_translator, "nets") and hasattr(model_or_translator, "labels"):
        run = ModelTranslator(model_or_translator, seed)
        tasks = model_tasks(model_or_translator.labels) if tasks is None else tasks
    else:
        raise XrayStyleError(f"expected a trained model or a translator, got {type(model_or_translator).__name__}")
    run_size = getattr(run, "size", size)
    if run_size != size:
        raise XrayStyleError(f"the model works at {run_size} px but the benchmark runs at {size} px")
    preprocess = getattr(run, "preprocess", None) or PreprocessConfig(size=size)
    default = PreprocessConfig(size=size)
    window = (preprocess.lower_percentile, preprocess.upper_percentile)
    if window != (default.lower_percentile, default.upper_percentile):
        # the oracle and the patient baselines are calibrated on the default robust window
        raise XrayStyleError(f"the run windows images at percentiles {window[0]:g}-{window[1]:g}; the attribute oracle "
                             f"is calibrated at {default.lower_percentile:g}-{default.upper_percentile:g} only")
    tasks = TASKS if tasks is None else tuple(tasks)
    renderer = _Renderer(preprocess)
    translators = {"run": run, **baselines(renderer, tasks, seed, run)}
    order = np.random.default_rng(np.random.SeedSequence([seed, Stream.TRUTH, 4])).permutation(len(rows))
    rows = [rows[i] for i in order]

    out: list[dict] = []
    for task in tasks:
        sources = [r for r in rows if task.matches(r)][:n_sources]
        if len(sources) < 2:
            raise XrayStyleError(f"task {task.name}: the cohort has {len(sources)} matching source(s); need at least 2")
        used = {(r.cohort_seed, r.case_index) for r in sources}
        pool = [r for r in rows if (r.cohort_seed, r.case_index) not in used] or rows
        for mode in ("latent", "reference"):
            metrics = {name: [m(seed) for m in METRICS if m.applies(task, mode)] for name in translators}
            for m_list in metrics.values():
                for m in m_list:
                    m.n_boot = n_boot
            for j, row in enumerate(sources):
                src_img, src_mask = renderer.render(row)
                src = Case(row, src_img, index=j)
                base = patient_baseline(row.seed, size, row.physics, lung_source=_lung_source(row))
                removed = None
                if task.kind == "remove":
                    ideal_rm = renderer.render(row, remove=task.remove)[0]
                    a = oracle.measure(ideal_rm, base)
                    removed = bool(a.valid and a.side == "none")
                refs, phys_refs, exposure = _references(task, mode, row, j, pool, n_styles, n_physics, renderer,
                                                        physics_variant)
                for name, tr in translators.items():
                    if mode == "latent":
                        outputs = np.asarray(tr.latent(src, task.target, n_styles), np.float32)
                    else:
                        outputs = np.asarray(tr.reference(src, refs, task.target), np.float32)
                    _check_outputs(name, outputs, len(refs) if mode == "reference" else n_styles, size)
                    attrs = [oracle.measure(o, base) for o in outputs]
                    ideals, regions = _ideals(task, mode, row, refs, attrs, src_mask, renderer, size)
                    rec = Record(task, mode, src, base, outputs, attrs, ideals, regions, removed)
                    if mode == "reference":
                        if task.kind == "add":
                            rec.ref_volumes = np.array([c.attrs["volume"] for c in refs])
                            rec.ref_sides = [c.attrs["side"] for c in refs]
                        rec.phys_outputs = np.asarray(tr.reference(src, phys_refs, task.target), np.float32)
                        _check_outputs(name, rec.phys_outputs, n_physics, size)
                        rec.phys_exposure = exposure
                    for m in metrics[name]:
                        m.update(rec)
                say(f"{task.name} {mode}: source {j + 1}/{len(sources)}")
            for name, m_list in metrics.items():
                for m in m_list:
                    out.append({"model": name, "task": task.name, "mode": mode, "metric": m.name, **m.aggregate()})
    probed = next((t for t in tasks if t.kind == "add" and "effusion" in t.add), None)
    if probe_patients and probed is not None:
        out += _probe(translators, probed, size, preprocess, seed, probe_patients, n_boot, say)
    return out


def _probe(translators: Mapping[str, Translator], task: Task, size: int, preprocess, seed: int, patients: int,
           n_boot: int, say) -> list[dict]:
    from .style_probe import probe_rows, probe_set

    probes = probe_set(size, preprocess, seed, n_patients=patients)
    say(f"style probes: {len(probes)} renders")
    out = []
    for name, tr in translators.items():
        codes = tr.style_codes(probes.images, task.target, probes) if hasattr(tr, "style_codes") else None
        out += probe_rows(codes, probes, model=name, task=task.name, seed=seed, n_boot=n_boot)
    return out


def _references(task: Task, mode: str, row, j: int, pool: list, n_styles: int, n_physics: int,
                renderer: _Renderer, physics_variant) -> tuple[list[Case], list[Case], np.ndarray | None]:
    """Reference mode: one reference patient per source (another patient of the cohort). Add:
    ``n_styles`` renders with stratified side x volume (own physics) and ``n_physics`` renders of
    one mid-prior effusion (left, volume 0.325) under physics variants. Remove: ``n_styles`` patients without the finding,
    the first also under ``n_physics`` variants."""
    if mode == "latent":
        return [], [], None
    ref_rows = [pool[(j * n_styles + i) % len(pool)] for i in range(n_styles)]
    first = ref_rows[0]
    variants = [physics_variant(first, k) for k in range(n_physics)]
    if task.kind == "add":
        refs = []
        for attrs in _reference_attrs(n_styles):
            img, _ = renderer.render(first, add={"effusion": attrs})
            refs.append(Case(first, img, _full_effusion(first, attrs)))
        own = {"side": "left", "volume": round(sum(VOLUME_PRIOR) / 2, 5)}
        phys = [Case(replace(first, physics=p), renderer.render(first, add={"effusion": own}, physics=p)[0],
                     _full_effusion(first, own)) for p in variants]
    else:
        refs = [Case(r, renderer.render(r, remove=task.remove)[0]) for r in ref_rows]
        phys = [Case(replace(first, physics=p), renderer.render(first, remove=task.remove, physics=p)[0])
                for p in variants]
    return refs, phys, np.array([float(p["exposure"]) for p in variants])


def _full_effusion(row, attrs: dict) -> dict:
    from ..phantom.ideal import ideal_counterfactual

    return dict(ideal_counterfactual(row, add={"effusion": attrs}, physics=None).finding_params["effusion"])


def _ideals(task: Task, mode: str, row, refs: list[Case], attrs: list, src_mask: np.ndarray,
            renderer: _Renderer, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ideal each output is compared with and its finding region. Remove: the source without
    the finding. Add, reference mode: the source with the reference's effusion attributes (side,
    volume, meniscus, density); latent mode: with the side and volume the oracle measures on
    the output (the patient's own draw where it reads no fluid or not this patient)."""
    grow = max(2, size // 32)
    ideals, regions = [], []
    for i, a in enumerate(attrs):
        if task.kind == "remove":
            img, mask = renderer.render(row, remove=task.remove)
        elif mode == "reference":
            img, mask = renderer.render(row, add={"effusion": refs[i].attrs})
        elif a.valid and a.side != "none":
            vol = round(min(max(a.fluid_volume, 0.01), 1.0), 2)
            img, mask = renderer.render(row, add={"effusion": {"side": a.side, "volume": vol}})
        else:
            img, mask = renderer.render(row, add={"effusion": True})
        ideals.append(img)
        regions.append(ndi.binary_dilation(mask | src_mask, iterations=grow))
    return np.stack(ideals), np.stack(regions)


def _check_outputs(name: str, outputs: np.ndarray, n: int, size: int) -> None:
    if outputs.shape != (n, size, size):
        raise XrayStyleError(f"{name}: expected outputs of shape ({n}, {size}, {size}), got {outputs.shape}")
    if not np.isfinite(outputs).all():
        raise XrayStyleError(f"{name}: {int((~np.isfinite(outputs)).sum())} non-finite output pixel(s)")
