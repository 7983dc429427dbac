"""CPU training step idle and under load, per OpenMP wait policy / thread count variant.

    python benchmarks/cpu_load.py --json cpu_load.json
    python benchmarks/cpu_load.py --variants torch-default,xraystyle --iters 4 --warmup 1

Each variant runs ``benchmarks/train_step.py --config demo --device cpu --mode reference`` in a
fresh child process whose environment is set before the child imports torch (libgomp reads
OMP_WAIT_POLICY / GOMP_SPINCOUNT / OMP_NUM_THREADS once, when torch loads it): once on the idle
machine, once while one competing busy process (a pure-Python ``while True: pass``) runs.
Reported: the median ms per step of each run, loaded / idle, and each variant / torch-default
(idle and loaded), all from the same invocation. The variable names set by this script are
removed from the inherited environment first, so only the variant decides them.

``xraystyle`` is what a user gets: the child imports xraystyle before torch (its wait policy),
applies the CLI's thread policy and the count training chooses for the load it finds when it
starts (xraystyle/runtime.py), then runs train_step.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STEP = ROOT / "benchmarks" / "train_step.py"
CONTROLLED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE",
              "XRAYSTYLE_AUTO_THREADS")

# name -> environment (None: the xraystyle import path decides)
VARIANTS: dict[str, dict[str, str] | None] = {
    "torch-default": {},  # libgomp spins ~300k iterations at a barrier before sleeping
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # sleep at once
    "spin-3k": {"GOMP_SPINCOUNT": "3000"},
    "spin-10k": {"GOMP_SPINCOUNT": "10000"},  # xraystyle's default (runtime.OPENMP_DEFAULTS)
    "spin-30k": {"GOMP_SPINCOUNT": "30000"},
    "threads-1": {"OMP_NUM_THREADS": "1"},  # default spinning, but no sibling to wait for
    "xraystyle": None,
}

_XRAYSTYLE_CHILD = (
    "import runpy, sys\n"
    "import xraystyle\n"  # before torch: its OpenMP defaults
    "from xraystyle.runtime import apply_thread_policy, training_threads\n"
    "apply_thread_policy()\n"  # what the CLI does in a fresh process
    "import torch\n"
    "n = training_threads()\n"  # what training_loop then does on the CPU: the count for the load now
    "torch.set_num_threads(n) if n else None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def _run(name: str, args: list[str], busy: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update(VARIANTS[name] or {})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [str(TRAIN_STEP), *args, "--json", str(out)]
        cmd = [sys.executable, *(["-c", _XRAYSTYLE_CHILD] if VARIANTS[name] is None else []), *cmd]
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        if proc.returncode != 0:
            sys.exit(f"cpu_load: {name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        row = json.loads(out.read_text())["rows"][0]
    return {"ms": row["ms_per_iter"], "threads": row["threads"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--config", default="demo")
    p.add_argument("--iters", type=int, default=5, help="timed steps per run (the median is kept)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="idle + loaded runs per variant (median of medians)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    if "torch-default" not in names:
        names.insert(0, "torch-default")  # the ratios' denominator
    args = ["--config", a.config, "--device", "cpu", "--mode", "reference",
            "--iters", str(a.iters), "--warmup", str(a.warmup)]
    machine = {"cpus_usable": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
               "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
               "loadavg_before": [round(x, 2) for x in os.getloadavg()], "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"cpu_load: {machine['cpus_usable']} usable CPUs, load average {machine['loadavg_before']} before "
          f"the first run; each run: train_step.py {' '.join(args)}", flush=True)
    raw: dict[str, dict[str, list]] = {n: {"idle": [], "loaded": []} for n in names}
    threads: dict[str, int] = {}
    for r in range(a.repeats):  # variants interleaved, so drift in the machine's load hits all alike
        for n in names:
            for phase in ("idle", "loaded"):
                res = _run(n, args, busy=phase == "loaded")
                raw[n][phase].append(res["ms"])
                threads[n] = res["threads"]
                print(f"  [{r + 1}/{a.repeats}] {n:<14} {phase:<7} {res['ms']:>9.0f} ms/step "
                      f"({res['threads']} threads)", flush=True)
    rows = []
    for n in names:
        idle, loaded = statistics.median(raw[n]["idle"]), statistics.median(raw[n]["loaded"])
        rows.append({"variant": n, "env": VARIANTS[n] if VARIANTS[n] is not None else "import xraystyle + CLI policy",
                     "threads": threads[n], "idle_ms": round(idle, 1), "loaded_ms": round(loaded, 1),
                     "loaded_over_idle": round(loaded / idle, 2)})
    base = rows[0]
    for row in rows:
        row["idle_vs_default"] = round(row["idle_ms"] / base["idle_ms"], 3)
        row["loaded_vs_default"] = round(row["loaded_ms"] / base["loaded_ms"], 3)
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    command = " ".join(["python benchmarks/cpu_load.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\nconfig {a.config}, median ms per training step; loaded = one competing busy process; "
          f"ratios against torch-default (no OpenMP variables set)\n")
    print("| variant | environment | threads | idle ms | loaded ms | loaded / idle | idle vs default | loaded vs default |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        env = row["env"] if isinstance(row["env"], str) else (" ".join(f"{k}={v}" for k, v in row["env"].items())
                                                             or "(none)")
        print(f"| {row['variant']} | {env} | {row['threads']} | {row['idle_ms']:.0f} | {row['loaded_ms']:.0f} | "
              f"{row['loaded_over_idle']:.2f} | {row['idle_vs_default']:.2f} | {row['loaded_vs_default']:.2f} |")
    print(f"\nload average before {machine['loadavg_before']}, after {machine['loadavg_after']} (the busy "
          "process adds ~1 while it runs; a 1-minute value well above 0 before the first run means other jobs "
          "shared the machine: noisy numbers)")
    result = {"command": command, "machine": machine, "runs": raw, "rows": rows}
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
