"""Phantom cohort generation speed on one CPU core: images per second, end to end.

Each timed run is a full ``generate_phantom_cohort`` call (render, encode, write images and
masks, manifest) in a fresh temporary folder, pinned to one core where the OS allows it. The
lung template bank is warmed first (decoded once per machine and cached on disk); ``--cold``
adds one run that starts from an empty template cache to show that one-off cost.

    python benchmarks/phantom_speed.py                      # 64/128/256 px, png and dcm
    python benchmarks/phantom_speed.py --n 500 --sizes 256 --formats png --repeats 3

Prints a markdown table: images/s of the best and the median run (the best run is the least
disturbed by other jobs on a shared machine) and of process CPU time in the best run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xraystyle.phantom import lungs as phantom_lungs  # noqa: E402
from xraystyle.phantom.generator import generate_phantom_cohort  # noqa: E402


def _run(n: int, size: int, fmt: str, seed: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        generate_phantom_cohort(Path(tmp) / "c", n, size=size, seed=seed, fmt=fmt)
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="images per run")
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--formats", default="png,dcm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also time one run with an empty template cache")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    print(f"python {platform.python_version()}, {platform.machine()}, n={args.n}, repeats={args.repeats}")
    print()
    print("| size | format | images/s (best run) | images/s (median run) | CPU images/s | ms / image (best) |")
    print("|---|---|---|---|---|---|")
    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XRAYSTYLE_CACHE"] = cache
            phantom_lungs._disk_bank.cache_clear()
            phantom_lungs._decode.cache_clear()
            wall, cpu = _run(args.n, 256, "png", seed=12345)
            print(f"| 256, cold template cache | png | {args.n / wall:.1f} | - | {args.n / cpu:.1f} "
                  f"| {1000 * wall / args.n:.1f} |")
            del os.environ["XRAYSTYLE_CACHE"]
            phantom_lungs._disk_bank.cache_clear()
    phantom_lungs.warm_bank()
    _run(8, 64, "png", seed=0)  # imports and caches
    for size in (int(s) for s in args.sizes.split(",")):
        for fmt in args.formats.split(","):
            runs = sorted(_run(args.n, size, fmt, seed=r) for r in range(args.repeats))
            best, cpu = runs[0]
            median = statistics.median(r[0] for r in runs)
            print(f"| {size} | {fmt} | {args.n / best:.1f} | {args.n / median:.1f} | {args.n / cpu:.1f} "
                  f"| {1000 * best / args.n:.1f} |")


if __name__ == "__main__":
    main()
