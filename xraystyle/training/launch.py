"""From a command's choices to a training run: the resolved RunConfig, then the device,
data-parallel setup, cohort and run folder around :func:`training_loop`. ``xraystyle train``
parses its options, calls these two, and reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..cohorts.vocabulary import NORMAL
from ..errors import ConfigError
from .config import RunConfig, load_config
from .trainer import TrainResult


def resolve_run_config(*, domains: list[str] | None = None, findings: list[str] | None = None,
                       finding_sets: bool = False, conditioning: str | None = None, config: str | None = None,
                       cohort_given: bool = False, overrides: dict | None = None,
                       say: Callable[[str], None] | None = None) -> RunConfig:
    """The run config: ``config`` (a YAML path or packaged name; default ``demo`` on the phantom,
    ``xray-256`` for a user's cohort) with the command's overrides. ``findings`` (or
    ``finding_sets``) asks for finding-set conditioning: set-additive unless the config or
    ``conditioning`` names a set conditioning. A packaged config given single-label domains
    without 'normal' leaves out its reference-side term (``say`` tells why)."""
    from ..config import load_yaml
    from ..models.conditioning import is_set_conditioning
    from ..paths import CONFIG_DIR, resolve_config

    if domains is not None and findings is not None:
        raise ConfigError("give --domains (single-label) or --findings (multi-label), not both")
    finding_sets = finding_sets or findings is not None
    names = findings if findings is not None else domains
    if names is None and not finding_sets:
        names = [NORMAL, "effusion"]
    values = dict(overrides or {})
    if names:
        values["domains"] = list(names)
    if conditioning is not None:
        values["model.conditioning"] = conditioning
    path = resolve_config(config if config is not None else ("xray-256" if cohort_given else "demo"))
    base = load_yaml(path)
    if finding_sets and conditioning is None:
        model = base.get("model")  # not a mapping: load_config below names the key
        given = model.get("conditioning", "single") if isinstance(model, dict) else "single"
        values["model.conditioning"] = given if is_set_conditioning(given) else "set-additive"
    if (not finding_sets and names and NORMAL not in names and path.resolve().parent == CONFIG_DIR.resolve()
            and (base.get("loss") or {}).get("lambda_laterality", 0) > 0 and "loss.lambda_laterality" not in values):
        # The side term compares adds to normal images with removals of their references, so it
        # needs a normal domain; E learning in the reference phase without it makes reference
        # guidance worse (issue #16, ninth round), so both go. A user's own config is refused.
        values.update({"loss.lambda_laterality": 0.0, "loss.e_ref": False, "loss.e_ref_code": False})
        if say is not None:
            say(f"{path.stem}: no 'normal' domain, so the reference-side term (loss.lambda_laterality) "
                "and E in the reference phase (loss.e_ref) are off for this run")
    return load_config(path, values)


@dataclass
class Launched:
    result: TrainResult
    run_dir: Path
    is_main: bool  # rank 0 (reports); other torchrun ranks stay quiet


def run_training(cfg: RunConfig, *, cohort: str | None = None, images: Path | None = None,
                 out: Path | None = None, resume: bool = False, device: str = "auto",
                 progress: bool = True) -> Launched:
    """Train ``cfg`` on ``cohort`` (a manifest or cohort YAML; default: the built-in phantom
    cohort at the model's size) into ``out`` (default ``runs/<label space name>``), on one
    process or as one torchrun rank."""
    from ..cohorts.manifest import load_manifest
    from ..paths import cache_dir
    from ..phantom.default import default_phantom_manifest
    from .accel import make_accel, resolve_device
    from .distributed import init_distributed, shutdown
    from .trainer import training_loop

    dev = resolve_device(device)
    info = init_distributed(dev)
    if dev.type == "cuda" and info.world > 1:
        import torch

        dev = torch.device("cuda", info.local_rank)
    root = cache_dir()
    if cohort is None:
        manifest_path = default_phantom_manifest(cfg.model.img_size, root)
    else:
        from ..cohorts import resolve_cohort

        manifest_path = resolve_cohort(cohort, images=images, cache_dir=root / "cohorts")
    run_dir = out if out is not None else Path("runs") / cfg.labels.run_name()
    try:
        result = training_loop(cfg, run_dir, load_manifest(manifest_path), cache_dir=root / "tensors",
                               accel=make_accel(cfg.train.mode, dev), resume=resume, info=info, progress=progress)
    finally:
        shutdown(info)
    return Launched(result, run_dir, info.is_main)
