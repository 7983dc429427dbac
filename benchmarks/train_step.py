"""Time full StarGAN v2 training iterations (both D phases with R1, both G phases, EMA).

    python benchmarks/train_step.py --config paper-256 --device cuda --mode fast --json out.json
    python benchmarks/train_step.py --config tiny --device cpu --mode reference

Random images stand in for data (loading is off the critical path in training: see
data/cache.py), so this measures the step itself. On CUDA the median of the timed iterations
comes from CUDA events; peak memory from torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
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
from xraystyle.training.accel import compiled, make_accel  # noqa: E402
from xraystyle.training.config import load_config  # noqa: E402
from xraystyle.training.state import build_state  # noqa: E402
from xraystyle.training.step import train_step  # noqa: E402


def measure(cfg, device: torch.device, mode: str, warmup: int, iters: int) -> dict:
    accel = make_accel(mode, device)
    state = build_state(cfg, accel, seed=0)
    fwd = torch.nn.ModuleDict({k: compiled(state.nets[k], accel) for k in ("G", "F", "E")})
    fwd["D"] = state.nets["D"]
    s = cfg.model.img_size
    images = (np.random.default_rng(0).random((64, cfg.model.in_channels, s, s)) * 2 - 1).astype(np.float16)
    sampler = BalancedStepSampler(np.arange(64) % len(cfg.domains), len(cfg.domains), cfg.train.batch_size, 0)
    fetch = BatchFetcher(images, sampler, cfg.model.latent_dim, seed=0, augment=cfg.data.augment)
    batches = [fetch(i).to(device) for i in range(4)]  # data prepared up front: time the step only
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        train_step(state, fwd, batches[i % len(batches)], cfg, accel)
        if cuda:
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            ms = (time.perf_counter() - t0) * 1000
        if i >= warmup:
            times.append(ms)
    ms = statistics.median(times)
    return {
        "mode": accel.name, "size": s, "batch": cfg.train.batch_size, "ms_per_iter": round(ms, 2),
        "images_per_s": round(cfg.train.batch_size * 1000 / ms, 2),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "card": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "iters_timed": iters,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="paper-256")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", default="reference,fast", help="reference, fast, or both comma-separated")
    p.add_argument("--size", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
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
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # "reference" is the fp32 arithmetic as written
        torch.backends.cudnn.allow_tf32 = False
    rows = [measure(cfg, torch.device(a.device), m, a.warmup, a.iters) for m in a.mode.split(",")]
    print(f"{'mode':<10}{'size':>6}{'batch':>7}{'ms/iter':>10}{'img/s':>9}{'peak GiB':>10}  card")
    for r in rows:
        print(f"{r['mode']:<10}{r['size']:>6}{r['batch']:>7}{r['ms_per_iter']:>10}{r['images_per_s']:>9}"
              f"{str(r['peak_mem_gib']):>10}  {r['card']}")
    if len(rows) == 2:
        print(f"speed-up fast/reference: {rows[0]['ms_per_iter'] / rows[1]['ms_per_iter']:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
