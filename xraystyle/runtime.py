"""CPU thread policy: how many threads torch uses, and how idle OpenMP threads wait.

libgomp (PyTorch's OpenMP runtime on Linux) lets a thread that reaches a barrier spin for about
300,000 iterations (milliseconds) before it sleeps. Beside another busy process one of torch's
threads is regularly descheduled and its siblings spin on the cores it needs: the CPU demo step
went from 0.45 s to 9 s (20x, benchmarks/README.md "CPU under load"). No fixed policy fixes that
without slowing the idle machine (sleeping at once, OMP_WAIT_POLICY=PASSIVE, made the idle step
1.7x slower on a 2-vCPU VM), so:

- ``import xraystyle`` sets a short spin (GOMP_SPINCOUNT=10000, ~0.1 ms): idle speed kept, load
  that appears during a run costs 4x instead of 20x. libgomp reads it once, when it is loaded
  (the first ``import torch``), hence ``xraystyle/__init__.py`` before any module imports torch;
  other OpenMP runtimes ignore it.
- the CLI sets OMP_NUM_THREADS to this process's share of the usable CPUs (torchrun ranks);
- a training run started from the CLI then trains with the CPUs other processes leave free
  (:func:`training_threads`): one thread beside a busy process on two cores runs at 1.3x the idle
  step. A resumed run keeps its count (saved in the checkpoint) so that resumption stays exact.

The user's own settings (OMP_NUM_THREADS, OMP_WAIT_POLICY, GOMP_SPINCOUNT, torch.set_num_threads
in library code) always win. Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import MutableMapping

# What `import xraystyle` sets when the user set neither variable (see benchmarks/README.md,
# "CPU under load", for the variants measured).
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "10000"}
# Any of these set by the user means they chose how threads wait: add nothing.
_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def set_openmp_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put OPENMP_DEFAULTS into ``environ`` (default ``os.environ``) unless the user chose a wait
    policy; returns what was set. Takes effect only if torch is not imported yet."""
    env = os.environ if environ is None else environ
    if any(env.get(key) for key in _WAIT_KEYS):
        return {}
    env.update(OPENMP_DEFAULTS)
    return dict(OPENMP_DEFAULTS)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _positive_int(text: str | None) -> int | None:
    try:
        value = int((text or "").split(",")[0])  # OMP_NUM_THREADS may be a nesting list "4,2"
    except ValueError:
        return None
    return value if value >= 1 else None


def local_world_size(environ: MutableMapping[str, str] | None = None) -> int:
    """Processes on this node: torchrun's LOCAL_WORLD_SIZE, else 1."""
    env = os.environ if environ is None else environ
    return _positive_int(env.get("LOCAL_WORLD_SIZE")) or 1


def cpu_threads(environ: MutableMapping[str, str] | None = None) -> int:
    """The user's OMP_NUM_THREADS when set (a positive integer), else the usable CPUs shared
    among this node's processes: ``usable_cpus() // LOCAL_WORLD_SIZE``, at least 1."""
    env = os.environ if environ is None else environ
    return _positive_int(env.get("OMP_NUM_THREADS")) or max(1, usable_cpus() // local_world_size(env))


def apply_thread_policy(environ: MutableMapping[str, str] | None = None) -> int | None:
    """Set OMP_NUM_THREADS to ``cpu_threads()`` if the user did not and torch is not loaded yet
    (torch and MKL read it at import). Returns the count set, None when nothing was changed."""
    env = os.environ if environ is None else environ
    if _positive_int(env.get("OMP_NUM_THREADS")) is not None or "torch" in sys.modules:
        return None
    threads = cpu_threads(env)
    env["OMP_NUM_THREADS"] = str(threads)
    env[AUTO_THREADS_ENV] = "1"  # the count is ours to adapt (training_threads), not the user's
    return threads


# Set by apply_thread_policy when it chose OMP_NUM_THREADS: a count the user did not choose.
AUTO_THREADS_ENV = "XRAYSTYLE_AUTO_THREADS"
# A checkpoint's saved count above this (or not an integer) is ignored, not passed to torch.
_MAX_SAVED_THREADS = 1024


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of ``cpus`` from /proc/stat; None without /proc (not Linux)."""
    busy = total = 0
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                name, *fields = line.split()
                if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
                    continue
                ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total) if total else None


def _own_ticks() -> int | None:
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (all threads of this process)
    except (OSError, ValueError, IndexError):
        return None


def busy_cpus_elsewhere(seconds: float = 0.3) -> float | None:
    """How many of this process's usable CPUs other processes keep busy, sampled over
    ``seconds`` from /proc/stat (this process's own time subtracted); None where unknown."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    before, own_before = _cpu_times(cpus), _own_ticks()
    time.sleep(seconds)
    after, own_after = _cpu_times(cpus), _own_ticks()
    if None in (before, after, own_before, own_after) or after[1] <= before[1]:
        return None
    busy = (after[0] - before[0]) - (own_after - own_before)
    return max(0.0, busy / (after[1] - before[1]) * len(cpus))


def training_threads(saved: int | None = None) -> int | None:
    """The CPU thread count for a training run, or None to leave torch's as it is (the user or
    a library caller chose it: OMP_NUM_THREADS, torch.set_num_threads).

    When the CLI chose the count: a resumed run keeps the count it was started with (``saved``,
    from the checkpoint), because the thread count changes the float reductions and resumption
    is exact; a new run takes the usable CPUs minus those other processes keep busy now. With
    one other busy process on two cores, one thread runs at idle speed where two threads wait
    on each other at every parallel region (benchmarks/README.md, "CPU under load")."""
    if os.environ.get(AUTO_THREADS_ENV) != "1":
        return None
    # ``saved`` comes from a checkpoint file (data on disk): only a plausible integer is trusted.
    if isinstance(saved, int) and not isinstance(saved, bool) and 1 <= saved <= _MAX_SAVED_THREADS:
        return int(saved)
    base = cpu_threads()
    if local_world_size() > 1:  # sibling ranks starting beside us would read as load
        return base
    busy = busy_cpus_elsewhere()
    if busy is None:
        return base
    return max(1, min(base, round(usable_cpus() - busy)))
