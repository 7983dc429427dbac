"""Time full StarGAN v2 training iterations (both D phases with R1, both G phases, EMA).

    python benchmarks/train_step.py --config paper-256 --device cuda --mode fast --json out.json
    python benchmarks/train_step.py --config tiny --device cpu --mode reference

    python benchmarks/train_step.py --config paper-256 --device cuda --agree 200 --json agree.json

Random images stand in for data (loading is off the critical path in training: see
data/cache.py), so this measures the step itself. On CUDA each iteration is timed with CUDA
events and nothing synchronises inside the loop (the host may run ahead, as in training); the
median is reported, beside the wall-clock mean of the timed span. Peak memory from
torch.cuda.max_memory_allocated. ``--agree N`` also compares reference and fast loss curves
over N steps from one seed (tolerance in xraystyle/training/agreement.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xraystyle.data.fetcher import BatchFetcher  # noqa: E402
from xraystyle.data.sampling import BalancedStepSampler  # noqa: E402
from xraystyle.paths import resolve_config  # noqa: E402
from xraystyle.training.accel import forward_nets, make_accel  # noqa: E402
from xraystyle.training.agreement import compare_trajectories, format_rows, stack_terms  # noqa: E402
from xraystyle.training.config import load_config  # noqa: E402
from xraystyle.training.state import build_state  # noqa: E402
from xraystyle.training.step import train_step  # noqa: E402


def _images(cfg, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Random images; domain k > 0 adds a bright lower band, so there is something to learn."""
    s, c = cfg.model.img_size, cfg.model.in_channels
    rng = np.random.default_rng(0)
    labels = np.arange(n) % len(cfg.domains)
    images = rng.random((n, c, s, s)) * 0.4 - 0.6
    images[labels > 0, :, s * 3 // 4:, :] += 0.8
    return images.astype(np.float16), labels


def measure(cfg, device: torch.device, mode: str, warmup: int, iters: int, *, n_batches: int = 4,
            keep_losses: bool = False, compile_mode: str | None = None, config_name: str = "") -> dict:
    """Time ``warmup + iters`` steps; the median over the timed ones (events on CUDA, no sync
    inside the loop, so the host can run ahead as it does in training)."""
    accel = make_accel(mode.removesuffix("+tf32"), device)
    if compile_mode or mode.endswith("+tf32"):
        accel = dataclasses.replace(accel, compile_mode=compile_mode, tf32=mode.endswith("+tf32"))
    accel.configure_backends()  # as the trainer does
    state = build_state(cfg, accel, seed=0)
    fwd = forward_nets(state.nets, accel)
    images, labels = _images(cfg)
    sampler = BalancedStepSampler(labels, len(cfg.domains), cfg.train.batch_size, 0)
    fetch = BatchFetcher(images, sampler, cfg.model.latent_dim, seed=0, augment=cfg.data.augment)
    cuda = device.type == "cuda"
    # Batches made up front, in pinned host memory, copied to the device each step without
    # blocking (as the trainer's prefetch thread does): the step is timed, not the loading.
    batches = [fetch(i).pin_memory() if cuda else fetch(i) for i in range(n_batches)]
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    marks, losses = [], []
    t_start = time.perf_counter()
    for i in range(warmup + iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        if compile_mode and "reduce-overhead" in compile_mode:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are free
        terms = train_step(state, fwd, batches[i % n_batches].to(device, non_blocking=True), cfg, accel)
        if keep_losses:
            losses.append(terms)
        if cuda:
            end.record()
            marks.append((start, end))
        else:
            marks.append((time.perf_counter() - t0) * 1000)
        if i < warmup:  # warm-up: compilation happens here; say how far it got (a killed run shows it)
            if cuda:
                torch.cuda.synchronize()
            print(f"{mode} warm-up step {i + 1}/{warmup}: {time.perf_counter() - t_start:.1f} s", flush=True)
            wall0 = time.perf_counter()
    if cuda:
        torch.cuda.synchronize()
        marks = [a.elapsed_time(b) for a, b in marks]
    wall = (time.perf_counter() - wall0) * 1000 / iters if warmup else None
    ms = statistics.median(marks[warmup:])
    row = {
        "mode": accel.name + ("+tf32" if accel.tf32 else "") + (f"+{compile_mode}" if compile_mode else ""),
        "config": config_name,
        "size": cfg.model.img_size, "batch": cfg.train.batch_size, "ms_per_iter": round(ms, 2),
        "ms_per_iter_wall": round(wall, 2) if wall else None,
        "images_per_s": round(cfg.train.batch_size * 1000 / ms, 2),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "card": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "iters_timed": iters,
        "date": time.strftime("%Y-%m-%d"),
    }
    if keep_losses:
        row["losses"] = stack_terms(losses)
    return row


class _FlopCount:
    """Counts matrix-product / convolution FLOPs with torch's own formulas (flop_registry).

    A dispatch mode rather than FlopCounterMode: the latter's module tracker rejects R1's
    autograd.grad with leaf inputs."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    counter.total += formula(*args, **(kwargs or {}), out_val=out)
                return out

        self.total, self.mode = 0, Mode()


def count_flops(cfg, device: torch.device) -> dict:
    """FLOPs of one full reference iteration (forward, backward and R1's double backward):
    the numerator of the arithmetic floor."""
    accel = make_accel("reference", device)
    state = build_state(cfg, accel, seed=0)
    images, labels = _images(cfg)
    sampler = BalancedStepSampler(labels, len(cfg.domains), cfg.train.batch_size, 0)
    batch = BatchFetcher(images, sampler, cfg.model.latent_dim, seed=0, augment=cfg.data.augment)(0).to(device)
    count = _FlopCount()
    with count.mode:
        train_step(state, forward_nets(state.nets, accel), batch, cfg, accel)
    return {"size": cfg.model.img_size, "batch": cfg.train.batch_size, "tflop_per_iter": round(count.total / 1e12, 3),
            "gflop_per_image": round(count.total / 1e9 / cfg.train.batch_size, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="paper-256")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", default="reference,fast",
                   help="comma-separated: reference, fast, fast+tf32 (TF32 for the fp32 R1 pass)")
    p.add_argument("--size", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--agree", type=int, metavar="STEPS",
                   help="run STEPS steps per mode on distinct batches from one seed, time the last "
                        "STEPS - warmup, and compare the loss curves (training/agreement.py)")
    p.add_argument("--compile-mode", help="torch.compile mode for fast, e.g. reduce-overhead (CUDA graphs) "
                                          "or max-autotune-no-cudagraphs")
    p.add_argument("--flops", action="store_true", help="count the FLOPs of one reference iteration and exit")
    p.add_argument("--json", type=Path)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    over = {}
    if a.size:
        over.update({"model.img_size": a.size, "data.preprocess.size": a.size})
    if a.batch:
        over["train.batch_size"] = a.batch
    cfg = load_config(resolve_config(a.config), over)
    if a.flops:
        flops = count_flops(cfg, torch.device(a.device))
        print(json.dumps(flops))
        if a.json:
            a.json.write_text(json.dumps(flops, indent=1))
        return [flops]
    modes = a.mode.split(",")
    if a.agree and (sorted(modes) != ["fast", "reference"] or a.agree <= a.warmup):
        p.error("--agree needs --mode reference,fast (either order) and more steps than --warmup")
    iters = a.agree - a.warmup if a.agree else a.iters
    command = " ".join(["python benchmarks/train_step.py", *(argv or sys.argv[1:])])
    rows = []
    for m in modes:
        rows.append(measure(cfg, torch.device(a.device), m, a.warmup, iters, n_batches=a.agree or 4,
                            keep_losses=bool(a.agree), compile_mode=a.compile_mode if m == "fast" else None,
                            config_name=a.config))
        if a.json:  # after each mode: a run cut short still leaves what it measured
            a.json.write_text(json.dumps({"rows": [{k: v for k, v in r.items() if k != "losses"} for r in rows],
                                          "command": command}, indent=1))
    print(f"{'mode':<12}{'size':>6}{'batch':>7}{'ms/iter':>10}{'wall ms':>9}{'img/s':>9}{'peak GiB':>10}  card")
    for r in rows:
        print(f"{r['mode']:<12}{r['size']:>6}{r['batch']:>7}{r['ms_per_iter']:>10}{str(r['ms_per_iter_wall']):>9}"
              f"{r['images_per_s']:>9}{str(r['peak_mem_gib']):>10}  {r['card']}")
    if len(rows) == 2:
        a0, a1 = rows
        print(f"{a1['mode']} runs at {a0['ms_per_iter'] / a1['ms_per_iter']:.2f}x the speed of {a0['mode']}")
    out: dict = {"rows": rows, "command": command}
    if a.agree:
        by_mode = {m: r.pop("losses") for m, r in zip(modes, rows)}
        agreement = compare_trajectories(by_mode["reference"], by_mode["fast"])
        print(f"\nloss curves, {a.agree} steps from seed 0 (tolerance: xraystyle/training/agreement.py)")
        print(format_rows(agreement))
        out["agreement"] = {"steps": a.agree, "ok": all(r["ok"] for r in agreement), "terms": agreement}
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return rows


if __name__ == "__main__":
    main()
