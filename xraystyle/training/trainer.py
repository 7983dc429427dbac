"""The training loop: data -> state -> steps -> stats, samples, checkpoints.

``training_loop`` is the one readable function the CLI (and torchrun) calls. It owns no
model maths (see step.py and losses.py) and no file formats (see checkpoint.py); it wires
them together, watches for stop signals and non-finite losses, and writes the run folder:

    RUN_DIR/config.yaml      resolved config       RUN_DIR/stats.jsonl  one line per logged step
    RUN_DIR/samples/*.png    sample grids          RUN_DIR/checkpoints/ snapshots + index.json
    RUN_DIR/.lock            held (flock) by the one process training into the folder
"""

from __future__ import annotations

import json
import logging
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ..atomic import atomic_write
from ..config import from_dict, to_dict
from ..data.cache import build_tensor_cache
from ..data.fetcher import BatchFetcher, iterate_batches
from ..errors import CheckpointError, ConfigError, TrainingError
from ..runtime import training_threads
from ..streams import Stream
from .accel import Accel, forward_nets
from .checkpoint import load_latest, remove_scratch, rng_state, save_checkpoint, set_rng_state
from .config import RunConfig, config_diff
from .distributed import DistInfo, barrier, broadcast_flag, make_grad_sync
from .losses import lambda_ds_at
from .runlock import RunLock
from .samples import sample_grids, write_grids
from .state import TrainState, build_state
from .step import train_step

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption (schedules of the loop, not the maths).
RESUMABLE_KEYS = {"train.iters", "train.log_every", "train.sample_every", "train.ckpt_every",
                  "train.keep_ckpts", "train.mode", "data.workers", "data.max_bad_fraction",
                  "eval.every", "eval.classifier", "eval.split", "eval.limit", "eval.n_styles"}


@dataclass
class TrainData:
    images: np.ndarray  # tensor cache [N, 1, S, S]
    labels: np.ndarray  # domain index [N] or finding set [N, K] (NaN = unknown)
    usable: np.ndarray  # [N] bool: readable and labelled for this run
    manifest_hash: str


def prepare_data(cfg: RunConfig, manifest, cache_dir: Path, info: DistInfo, progress: bool) -> TrainData:
    """Select the split, label rows (domains or finding sets), and load/build the tensor cache."""
    if cfg.data.split != "all":
        manifest = manifest.subset(split=cfg.data.split)
    space = cfg.labels
    labels, usable = space.from_manifest(manifest)
    if info.is_main:
        cache = build_tensor_cache(manifest, cfg.data.preprocess, cache_dir, workers=cfg.data.workers,
                                   max_bad_fraction=cfg.data.max_bad_fraction, progress=progress)
    barrier(info)
    if not info.is_main:
        cache = build_tensor_cache(manifest, cfg.data.preprocess, cache_dir, progress=False,
                                   max_bad_fraction=cfg.data.max_bad_fraction)
    usable &= cache.ok
    counts = space.counts(labels, usable)
    empty = [d for d, c in zip(cfg.domains, counts) if c == 0]
    if empty:
        what = "positive" if space.noun == "finding" else "usable"
        raise TrainingError(f"{manifest.path}: no {what} {cfg.data.split} images for "
                            f"{space.noun}(s) {', '.join(empty)}")
    log.info("training images per label: %s", dict(zip(cfg.domains, counts.tolist())))
    return TrainData(cache.images, labels, usable, manifest.content_hash())


def make_sampler(cfg: RunConfig, data: TrainData):
    t = cfg.train
    return cfg.labels.sampler(data.labels, data.usable, t.batch_size, t.seed, t.target_policy,
                              cfg.data.holdout_combinations)


@dataclass
class TrainResult:
    checkpoint: Path | None  # last snapshot written by this call (rank 0), if any
    step: int
    signal: int | None  # the signal that stopped the run early, if any


class StopSignal:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint and exits cleanly at the next step."""

    def __init__(self):
        self.received: int | None = None

    @contextmanager
    def installed(self):
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, _frame):
            self.received = signum

        try:
            for s in old:
                signal.signal(s, handler)
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _restore(state: TrainState, cfg: RunConfig, run_dir: Path, manifest_hash: str) -> dict[str, Any]:
    """Load the latest verified snapshot into ``state`` (and the global RNGs); returns its payload."""
    found = load_latest(run_dir)
    if found is None:
        raise CheckpointError(run_dir, "--resume given but the run folder has no readable checkpoint")
    payload, path = found
    # Fill keys that a checkpoint from an older version lacks with their defaults before diffing.
    try:
        saved = to_dict(from_dict(RunConfig, payload["config"]))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(path, f"checkpoint holds no usable config ({str(exc).splitlines()[0][:120]})") from None
    diff = [k for k in config_diff(saved, to_dict(cfg)) if k not in RESUMABLE_KEYS]
    if diff:
        raise ConfigError(f"{path}: cannot resume with a different config; differing keys: {', '.join(diff)}")
    if payload.get("manifest_hash") != manifest_hash:
        raise CheckpointError(path, "the cohort manifest changed since this checkpoint was written")
    try:
        state.load_state_dict(payload["state"])
        set_rng_state(payload["rng"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(path, f"checkpoint holds no usable training state "
                                    f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    log.info("resumed from %s at step %d", path.name, state.step)
    return payload


def _trim_stats(run_dir: Path, step: int) -> None:
    """Keep the stats.jsonl records of steps <= ``step`` (where training continues), so that steps
    logged after the last checkpoint of a killed run are not logged twice. Malformed lines (a line
    cut by the kill, say) are dropped too. Rewritten atomically, only when something changes."""
    path, tmp = run_dir / "stats.jsonl", run_dir / ".stats.jsonl.tmp"
    try:
        tmp.unlink(missing_ok=True)  # left by a run killed in here
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read the stats log ({exc.strerror or exc})") from None
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        s = record.get("step") if isinstance(record, dict) else None
        if isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= step:
            keep.append(line + "\n")
    if len(keep) == len(lines):
        return
    try:
        atomic_write(path, "".join(keep).encode("utf-8"), tmp=tmp)
    except OSError as exc:
        raise TrainingError(f"{path}: cannot rewrite the stats log ({exc.strerror or exc})") from None
    log.info("stats.jsonl: dropped %d record(s) after step %d or malformed", len(lines) - len(keep), step)


def _fixed_sample_inputs(data: TrainData, cfg: RunConfig, device: torch.device):
    """The same sources, targets, references and latent codes for every grid of a run."""
    rng = np.random.default_rng([cfg.train.seed, Stream.SAMPLE_GRID])
    usable = np.flatnonzero(data.usable)
    src = np.sort(rng.choice(usable, size=min(cfg.train.n_samples, len(usable)), replace=False))
    targets = cfg.labels.grid_targets()
    refs = []
    for y in targets:
        match = (data.labels[usable] == y).reshape(len(usable), -1).all(1)  # exact label, all known
        rows = usable[match]
        refs.append(None if not len(rows) else
                    torch.from_numpy(np.asarray(data.images[[rng.choice(rows)]])).float().to(device))
    x_src = torch.from_numpy(np.asarray(data.images[src])).float().to(device)
    g = torch.Generator().manual_seed(cfg.train.seed)
    z = torch.randn(len(targets), cfg.model.latent_dim, generator=g).to(device)
    return x_src, [torch.from_numpy(y).to(device) for y in targets], refs, z


def _periodic_eval(cfg: RunConfig, manifest, state: TrainState, cache_dir: Path):
    """A function scoring the current EMA networks (flat scalars for stats.jsonl)."""
    from ..evaluation import evaluate_model, load_classifier

    classifier = load_classifier(cfg.eval.classifier, device=next(state.ema.parameters()).device)

    def evaluate() -> dict[str, float]:
        return evaluate_model(state.ema, manifest, classifier, cfg=cfg, split=cfg.eval.split,
                              n_styles=cfg.eval.n_styles, limit=cfg.eval.limit, seed=cfg.train.seed,
                              cache_dir=cache_dir.parent)

    return evaluate


def training_loop(cfg: RunConfig, run_dir: Path, manifest, *, cache_dir: Path, accel: Accel,
                  resume: bool = False, info: DistInfo = DistInfo(), progress: bool = True) -> "TrainResult":
    """Train to ``cfg.train.iters`` total steps (or until SIGINT/SIGTERM).

    The main rank holds the run folder's lock (runlock.py) from before its first write to the end:
    a second run on the same folder is refused instead of interleaving files with this one."""
    run_dir = Path(run_dir)
    if not info.is_main:
        return _train(cfg, run_dir, manifest, cache_dir=cache_dir, accel=accel, resume=resume, info=info,
                      progress=progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        return _train(cfg, run_dir, manifest, cache_dir=cache_dir, accel=accel, resume=resume, info=info,
                      progress=progress)


def _train(cfg: RunConfig, run_dir: Path, manifest, *, cache_dir: Path, accel: Accel, resume: bool,
           info: DistInfo, progress: bool) -> "TrainResult":
    if info.is_main:  # holding the lock
        remove_scratch(run_dir / "checkpoints")
        if not resume and any((run_dir / "checkpoints").glob("step_*.pt")):
            raise ConfigError(f"{run_dir}: run folder already has checkpoints; pass --resume or another --out")
    data = prepare_data(cfg, manifest, cache_dir, info, progress and info.is_main)
    accel.configure_backends()

    state = build_state(cfg, accel, seed=cfg.train.seed)
    saved = _restore(state, cfg, run_dir, data.manifest_hash) if resume else {}
    if accel.device.type == "cpu":
        threads = training_threads(saved.get("cpu_threads"))
        if threads is not None:
            torch.set_num_threads(threads)
            log.info("training with %d CPU thread(s)%s", threads, " (as the run was started)" if saved else "")
    if info.is_main:
        _trim_stats(run_dir, state.step)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    fwd = forward_nets(state.nets, accel)
    fetch = BatchFetcher(data.images, make_sampler(cfg, data), cfg.model.latent_dim, cfg.train.seed,
                         augment=cfg.data.augment, rank=info.rank, world=info.world)
    grad_sync = make_grad_sync(info)
    samples = _fixed_sample_inputs(data, cfg, accel.device) if info.is_main else None
    evaluate = _periodic_eval(cfg, manifest, state, cache_dir) if info.is_main and cfg.eval.every else None

    t = cfg.train
    start, stop = state.step, t.iters
    last_ckpt: Path | None = None
    pending: list[dict[str, torch.Tensor]] = []
    pending_steps: list[int] = []  # the step index each entry of ``pending`` was computed at
    stopper = StopSignal()
    bar = tqdm(total=stop, initial=start, desc="train", unit="it", disable=not (progress and info.is_main),
               dynamic_ncols=True)
    t_log, step_log = time.perf_counter(), start

    def checkpoint() -> Path | None:
        if not info.is_main:
            return None
        payload: dict[str, Any] = {
            "state": state.state_dict(), "config": to_dict(cfg), "step": state.step,
            "rng": rng_state(), "manifest_hash": data.manifest_hash,
            "model_args": cfg.model_args.to_dict(),  # what synthesis rebuilds from (models/args.py)
            "cpu_threads": torch.get_num_threads(),  # a resumed CLI run keeps it (runtime.training_threads)
        }
        return save_checkpoint(run_dir, state.step, payload, keep=t.keep_ckpts)

    def check_finite() -> dict[str, float]:
        """Read pending loss terms on the host (the only sync point) and stop on NaN/inf."""
        if not pending:
            return {}
        keys = list(pending[-1])
        values = torch.stack([torch.stack([p[k].float() for k in keys]) for p in pending]).cpu()
        pending.clear()
        if not torch.isfinite(values).all():
            bad = [k for i, k in enumerate(keys) if not torch.isfinite(values[:, i]).all()]
            where = f"; last good checkpoint: {last_ckpt}" if last_ckpt else ""
            raise TrainingError(f"non-finite loss ({', '.join(bad)}) before step {state.step}{where}")
        # Means over the interval; R1 terms over the steps that applied R1 (lazy R1 skips some).
        applied = torch.tensor([s % cfg.loss.r1_interval == 0 for s in pending_steps], dtype=torch.bool)
        pending_steps.clear()
        out: dict[str, float | None] = {}
        for i, k in enumerate(keys):
            column = values[applied, i] if k.endswith("_r1") else values[:, i]
            out[k] = column.mean().item() if len(column) else None
        return out

    with stopper.installed():
        for _step, batch in iterate_batches(fetch, start, stop, accel.device, prefetch=accel.prefetch):
            pending_steps.append(state.step)
            pending.append(train_step(state, fwd, batch, cfg, accel, grad_sync, info.rank, info.world))
            done = state.step
            last = done == stop
            if done % t.log_every == 0 or last:
                terms = check_finite()
                now = time.perf_counter()
                rate = (done - step_log) / max(now - t_log, 1e-9)
                t_log, step_log = now, done
                if info.is_main:
                    record = {"step": done, **{k: None if v is None else round(v, 6) for k, v in terms.items()},
                              "lambda_ds": lambda_ds_at(cfg.loss, done - 1), "it_per_s": round(rate, 4)}
                    with open(run_dir / "stats.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    bar.set_postfix({"D": f"{terms['D/latent_real'] + terms['D/latent_fake']:.3f}",
                                     "G_adv": f"{terms['G/latent_adv']:.3f}",
                                     "cyc": f"{terms['G/latent_cyc']:.3f}"}, refresh=False)
            if info.is_main and (done % t.sample_every == 0 or last):
                grids = sample_grids(state.ema, *samples, fixed_rows=cfg.fixed_style_rows)
                write_grids(run_dir / "samples", done, *grids)
            if evaluate is not None and done % cfg.eval.every == 0:
                with open(run_dir / "stats.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": done, **evaluate()}) + "\n")
            # Ranks agree on stopping at log steps only: one host sync per log interval, not per step.
            agree = info.world == 1 or done % t.log_every == 0 or last
            stop_now = agree and broadcast_flag(stopper.received is not None, info, accel.device)
            if done % t.ckpt_every == 0 or last or stop_now:
                check_finite()
                last_ckpt = checkpoint() or last_ckpt
            bar.update(1)
            if stop_now:
                log.warning("stop signal received: checkpoint written at step %d", done)
                break
    bar.close()
    return TrainResult(last_ckpt, state.step, stopper.received)
