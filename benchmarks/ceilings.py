"""The device's two ceilings (device/METHOD.md): copy bandwidth and bf16 / fp32 matrix rate.

    python benchmarks/ceilings.py --json ceilings.json

A large device-to-device copy (bytes read + written per second) and large matrix products
through cuBLAS, timed with CUDA events after warm-up, median of 20. With the step's FLOP count
(``benchmarks/train_step.py --flops``) they give the arithmetic floor of one iteration.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from pathlib import Path

import torch


def _time(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1000)
    return statistics.median(times)


def measure() -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    src = torch.rand(2**28, device="cuda", generator=g)  # 1 GiB of fp32, random (not zeros)
    dst = torch.empty_like(src)
    copy_s = _time(functools.partial(dst.copy_, src))
    out = {"card": torch.cuda.get_device_name(), "torch": torch.__version__,
           "copy_gb_per_s": round(2 * src.numel() * 4 / copy_s / 1e9, 1)}
    del src, dst
    n = 8192
    for name, dtype, tf32 in (("bf16", torch.bfloat16, False), ("fp32", torch.float32, False),
                              ("tf32", torch.float32, True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype, generator=g)
        b = torch.randn(n, n, device="cuda", dtype=dtype, generator=g)
        s = _time(functools.partial(torch.matmul, a, b))
        out[f"{name}_matmul_tflops"] = round(2 * n**3 / s / 1e12, 1)
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("ceilings.py: needs CUDA")
    out = measure()
    print("  ".join(f"{k} {v}" for k, v in out.items()))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
